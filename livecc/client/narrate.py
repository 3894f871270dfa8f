"""Narrate a video file on a server: the file is read here at the model's frame size (exactly as a
local run reads it when torch is installed), frames go up, events come down into the same files a
local run writes (engine/output/narrate.py NarrationFiles)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.capture.frames import Frame
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


def client_resizer(height: int, width: int, max_pixels: int, min_pixels: int):
    """The engine's resize where torch is installed (a PNG run then sends exactly a local run's frames);
    without torch, frames go up at the file's size and the server resizes them the same way."""
    try:
        from engine.model.preprocess import frame_resizer
    except ImportError:
        return None
    return frame_resizer(height, width, max_pixels, min_pixels)


class FrameSender:
    """Sends the buffer's frames in order on its own thread; once the buffer is closed and sent,
    `input_video_buffer.end` (`end_stream`) and `done`. `on_sent(frame)` follows each frame sent;
    `shrink(image)` makes a frame's image the size that goes up (the model's)."""

    def __init__(self, remote: RemoteSession, buffer, fmt: str, end_stream: bool = True,
                 on_sent: Callable[[Frame], None] | None = None, shrink: Callable | None = None):
        self.remote, self.buffer, self.fmt = remote, buffer, fmt
        self.end_stream, self.on_sent, self.shrink = end_stream, on_sent, shrink
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
            frames = [f for f in self.buffer.snapshot() if last is None or f.timestamp > last]
            for frame in frames:
                self._send(frame)
                last = frame.timestamp
            if frames:
                self.buffer.discard_before(last + 1e-6)  # sent: room for the source's next frames
            elif self.buffer.closed:
                if self.end_stream:
                    self.remote.end()
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
        self.buffer.clear()  # frees a source blocked on a full buffer, so it can take the seek
        if reposition is not None:
            reposition(seconds)
        return True


def remote_narrate(remote: RemoteSession, video: str | Path, info, files, fmt: str = "jpeg",
                   realtime: bool = False) -> Iterator[Event]:
    """Like engine.output.narrate.narrate_file, with the session on the server."""
    from engine.output.narrate import file_capture

    capture = CaptureSettings.of(remote.settings)
    source, buffer = file_capture(video, info, capture, resizer=client_resizer, realtime=realtime)
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
