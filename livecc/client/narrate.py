"""Narrate a video file on a server: the file is read here at the model's frame size (exactly as a
local run reads it when torch is installed), frames go up, events come down into the same files a
local run writes (engine/output/narrate.py NarrationFiles)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from engine.capture.frames import Frame
from engine.capture.sampler import Ticks
from engine.model.sizes import capture_size
from engine.session.events import Event, StreamEnded

from livecc import protocol as wire

from .session import RemoteSession


@dataclass(frozen=True)
class CaptureSettings:
    """What the file source needs of the session's settings (the server reports them)."""

    fps: float
    max_pixels: int
    min_pixels: int
    first_chunk_frames: int
    chunk_frames: int

    @classmethod
    def of(cls, settings: dict) -> CaptureSettings:
        return cls(*(settings[name] for name in ("fps", "max_pixels", "min_pixels", "first_chunk_frames",
                                                  "chunk_frames")))


def client_resizer(height: int, width: int, max_pixels: int, min_pixels: int, lossless: bool = False):
    """The engine's resize where torch is installed (a PNG run then sends exactly a local run's frames).
    Without torch: JPEG frames go up at the model's size, resized by OpenCV (JPEG is lossy anyway);
    lossless frames at their own size, for the server to resize them exactly as a local run."""
    try:
        from engine.model.preprocess import frame_resizer
    except ImportError:
        return None if lossless else opencv_resizer(height, width, max_pixels, min_pixels)
    return frame_resizer(height, width, max_pixels, min_pixels)


def opencv_resizer(height: int, width: int, max_pixels: int, min_pixels: int):
    """A resize to the model's size (the engine's arithmetic, torch-free) by OpenCV, or None when the
    engine would not resize a (height, width) frame at capture."""
    size = capture_size(height, width, max_pixels, min_pixels)
    if size is None:
        return None

    def resize(image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != (height, width):
            return image  # a stream that changes size mid-way: the server resizes it
        return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)

    return resize


def resizer_for(fmt: str) -> Callable:
    """`client_resizer` for frames sent as `fmt`."""
    return partial(client_resizer, lossless=fmt == "png")


class FrameSender:
    """Sends the buffer's frames in order on its own thread; once the buffer is closed and sent,
    `input_video_buffer.end` (`end_stream`; `keep_open`: the session then stays for questions) and
    `done`. `on_sent(frame)` follows each frame sent; `shrink(image)` makes a frame's image the size
    that goes up (the model's); with `fps`, only the frames the session samples at that rate go up
    (the one on screen at each tick, from the start or a seek's position)."""

    def __init__(self, remote: RemoteSession, buffer, fmt: str, end_stream: bool = True,
                 on_sent: Callable[[Frame], None] | None = None, shrink: Callable | None = None,
                 fps: float | None = None, keep_open: bool = False):
        self.remote, self.buffer, self.fmt = remote, buffer, fmt
        self.end_stream, self.keep_open, self.on_sent, self.shrink = end_stream, keep_open, on_sent, shrink
        self.ticks = Ticks(fps) if fps else None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._seek_lock = threading.Lock()
        self._seek: tuple[float, Callable[[float], object] | None] | None = None
        self.thread = threading.Thread(target=self._run, name="livecc-frame-sender", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.buffer.wake()

    def seek(self, seconds: float, reposition: Callable[[float], object] | None = None) -> None:
        """Continue from `seconds` (a player's seek). Done on the sender's thread between two frames:
        the server hears of it first, then `reposition(seconds)` moves the source, so no frame of the
        old position follows the message."""
        with self._seek_lock:
            self._seek = (seconds, reposition)
        self.buffer.wake()

    def _run(self) -> None:
        try:
            self._send_all()
        except Exception as exc:  # the socket closed under us: the reader reports why
            self.error = exc
        finally:
            self.done.set()

    def _send_all(self) -> None:
        last = None
        while not self._stop.is_set():
            if self._apply_seek():
                last = None  # the new position's frames may be older than the last one sent
            closed = self.buffer.closed  # before the frames: a buffer closed by then holds its last ones
            frames = [f for f in self.buffer.snapshot() if last is None or f.timestamp > last]
            for frame in frames:
                if self.ticks is None or self.ticks.keeps(frame.timestamp + frame.duration):
                    self._send(frame)
                last = frame.timestamp
            if frames:
                self.buffer.discard_before(last + 1e-6)  # sent or not sampled: room for the source's next frames
            elif closed:
                if self.end_stream:
                    self.remote.end(self.keep_open)
                return
            else:
                self.buffer.wait(timeout=1.0, newer_than=last)

    def _send(self, frame: Frame) -> None:
        image = frame.image if self.shrink is None else self.shrink(frame.image)
        self.remote.send(wire.frame_message(image, frame.timestamp, frame.duration, self.fmt))
        if self.on_sent is not None:
            self.on_sent(frame)

    def _apply_seek(self) -> bool:
        with self._seek_lock:
            seek, self._seek = self._seek, None
        if seek is None:
            return False
        seconds, reposition = seek
        self.remote.seek(seconds)
        if self.ticks is not None:
            self.ticks.restart(seconds)  # the session samples from the new position
        self.buffer.clear()  # frees a source blocked on a full buffer, so it can take the seek
        if reposition is not None:
            reposition(seconds)
        return True


def remote_narrate(remote: RemoteSession, video: str | Path, info, files, fmt: str = "jpeg",
                   realtime: bool = False) -> Iterator[Event]:
    """Like engine.output.narrate.narrate_file, with the session on the server."""
    from engine.output.narrate import file_capture

    capture = CaptureSettings.of(remote.settings)
    source, buffer = file_capture(video, info, capture, resizer=resizer_for(fmt), realtime=realtime)
    sender = FrameSender(remote, buffer, fmt)
    try:
        source.start(buffer)
        sender.start()
        for event in remote.events():
            files.on_event(event)
            yield event
            if isinstance(event, StreamEnded):
                break
        if buffer.error is not None:
            raise buffer.error  # the file broke off: every frame before it was narrated
    finally:
        sender.stop()
        source.stop()
        remote.close()
