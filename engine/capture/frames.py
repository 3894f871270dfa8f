"""Timestamped frames and the bounded, thread-safe buffer that carries them from a capture
thread to the engine thread."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One RGB uint8 image (H, W, 3) and its time in seconds from the start of the session.
    `duration`: how long it stays on screen, when the source knows (a file); 0 = unknown (live)."""

    image: np.ndarray
    timestamp: float
    duration: float = 0.0

    def __post_init__(self):
        if self.image.dtype != np.uint8 or self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"Frame needs an (H, W, 3) uint8 RGB image, got {self.image.shape} {self.image.dtype}")


class RingBuffer:
    """Bounded frame buffer: at most `capacity` frames and, when `max_bytes` is set, at most that
    many bytes of images (but always room for `min_frames`, so a chunk can form). A full buffer
    drops its oldest frame and counts the drop, unless the producer asks to block (file narration:
    every frame must be seen).

    `close()` marks the end of the stream; consumers see it through `closed` and `wait()`.
    """

    def __init__(self, capacity: int = 64, max_bytes: int | None = None, min_frames: int = 1):
        if capacity < 1 or min_frames < 1 or min_frames > capacity:
            raise ValueError("RingBuffer needs 1 <= min_frames <= capacity")
        self.capacity, self.max_bytes, self.min_frames = capacity, max_bytes, min_frames
        self._bytes = 0
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._dropped = 0
        self._pushed = 0
        self._closed = False
        self._error: BaseException | None = None
        self._wakeups = 0
        self._listeners: list = []  # called on every change a consumer may wait for (the engine core's wake-up)

    def listen(self, callback) -> None:
        """Call `callback()` (cheap, non-blocking: it runs under the buffer's lock) whenever a frame
        arrives, the buffer closes or a consumer is woken: a consumer of many buffers waits on one event."""
        with self._cond:
            self._listeners.append(callback)

    def _notify(self) -> None:
        self._cond.notify_all()
        for callback in self._listeners:
            callback()

    # -- producer side -------------------------------------------------------------------
    def put(self, frame: Frame, block: bool = False, timeout: float | None = None) -> bool:
        """Append a frame. With block=True wait for room (returns False on timeout or close)."""
        size = frame.image.nbytes
        with self._cond:
            if block:
                ok = self._cond.wait_for(lambda: not self._full(size) or self._closed, timeout)
                if not ok or self._closed:
                    return False
            while self._full(size):
                self._pop()
                self._dropped += 1
            self._frames.append(frame)
            self._bytes += size
            self._pushed += 1
            self._notify()
            return True

    def _full(self, incoming: int) -> bool:
        n = len(self._frames)
        if n >= self.capacity:
            return True
        return self.max_bytes is not None and n >= self.min_frames and self._bytes + incoming > self.max_bytes

    def _pop(self) -> Frame:
        frame = self._frames.popleft()
        self._bytes -= frame.image.nbytes
        return frame

    @property
    def nbytes(self) -> int:
        """Bytes of image data held now."""
        with self._cond:
            return self._bytes

    def close(self, error: BaseException | None = None) -> None:
        """End of stream (optionally because of `error`, which consumers can re-raise)."""
        with self._cond:
            self._closed = True
            if error is not None and self._error is None:
                self._error = error
            self._notify()

    # -- consumer side -------------------------------------------------------------------
    def wait(self, timeout: float | None = None, newer_than: float | None = None) -> bool:
        """Block until a frame newer than `newer_than` exists (or any frame), the buffer closes,
        or `timeout` passes. Returns True when there is something to act on."""

        with self._cond:
            start = self._wakeups

        def ready() -> bool:
            if self._closed or self._wakeups != start:
                return True
            if not self._frames:
                return False
            return newer_than is None or self._frames[-1].timestamp > newer_than

        with self._cond:
            return self._cond.wait_for(ready, timeout)

    def snapshot(self) -> list[Frame]:
        """The frames currently held, oldest first (a copy of the list, not of the images)."""
        with self._cond:
            return list(self._frames)

    def latest(self) -> Frame | None:
        with self._cond:
            return self._frames[-1] if self._frames else None

    def discard_before(self, timestamp: float) -> int:
        """Drop frames older than `timestamp` (already consumed); returns how many."""
        with self._cond:
            n = 0
            while self._frames and self._frames[0].timestamp < timestamp:
                self._pop()
                n += 1
            if n:
                self._cond.notify_all()
            return n

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()
            self._bytes = 0
            self._cond.notify_all()

    def wake(self) -> None:
        """Wake any waiting consumer (used to deliver commands promptly)."""
        with self._cond:
            self._wakeups += 1
            self._notify()

    @property
    def dropped(self) -> int:
        with self._cond:
            return self._dropped

    @property
    def pushed(self) -> int:
        with self._cond:
            return self._pushed

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    @property
    def error(self) -> BaseException | None:
        with self._cond:
            return self._error

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


class GridBuffer(RingBuffer):
    """A RingBuffer that keeps only the frames on a `keep_fps` grid: for each tick, the frame on
    screen at it (the engine's rule, engine/capture/sampler.py `on_screen`). The engine samples
    2 fps, so a 1080p 30 fps camera costs 4 s of frames in 32 slots at 8 fps, not 128."""

    def __init__(self, capacity: int = 32, keep_fps: float | None = 8.0, **ring_options):
        from .sampler import Ticks  # the sampler's module imports this one

        super().__init__(capacity, **ring_options)
        self._grid_lock = threading.Lock()
        self._ticks = Ticks(keep_fps) if keep_fps else None
        self._held: Frame | None = None  # a live frame, until the next one says how long it was on screen

    def put(self, frame: Frame, block: bool = False, timeout: float | None = None) -> bool:
        with self._grid_lock:
            kept = self._on_grid(frame) if self._ticks is not None else frame
        return True if kept is None else super().put(kept, block=block, timeout=timeout)

    def _on_grid(self, frame: Frame) -> Frame | None:
        """The frame to keep for the next grid tick, if this one settles it. A file's frame knows its
        duration: kept when its end reaches the tick. A live frame's end is the next frame's start:
        the previous frame is kept, with that duration, once a frame after the tick arrives."""
        if frame.duration > 0:
            return frame if self._ticks.keeps(frame.timestamp + frame.duration) else None
        held, self._held = self._held, frame
        if held is None or frame.timestamp < self._ticks.next - self._ticks.eps:
            return None  # replaced before the tick: never on screen at one
        return replace(held, duration=frame.timestamp - held.timestamp) if self._ticks.keeps(frame.timestamp) else None

    def clear(self) -> None:
        """A seek: the keep grid restarts, since the next frames may be earlier than the last."""
        with self._grid_lock:
            self._held = None
            if self._ticks is not None:
                self._ticks.restart(0.0)
        super().clear()
