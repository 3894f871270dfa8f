"""The video view's own tap on the capture stream.

The engine consumes frames from the `RingBuffer` at 2 fps and discards what it has used, so
the view cannot read the buffer's contents to show the source at its own frame rate. A
`PreviewBuffer` is a RingBuffer that also keeps the newest frame in a slot with a sequence
number: the source writes once, the engine and the view each read at their own pace.

The engine samples 2 fps, so only frames on a finer grid (`keep_fps`, default 8) enter the ring
itself: a 1080p 30 fps camera then costs 4 s of frames in 32 slots, not 128. The frame kept for a
grid tick is the one on screen at it (the engine's rule, engine/capture/sampler.py `on_screen`).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import cv2

from engine import Frame, RingBuffer
from engine.capture import Ticks


def first_frame(path: str | Path) -> Frame | None:
    """The file's first picture (shown before the model is there); None when it has none."""
    return frame_at(path, 0.0)


def frame_at(path: str | Path, seconds: float) -> Frame | None:
    """The file's picture at `seconds`, read on its own (the run playing the file is not touched)."""
    cap = cv2.VideoCapture(str(path))
    try:
        if seconds > 0:
            cap.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000.0)
        ok, bgr = cap.read()
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), seconds) if ok and bgr is not None else None
    finally:
        cap.release()


class PreviewBuffer(RingBuffer):
    def __init__(self, capacity: int = 32, keep_fps: float | None = 8.0):
        super().__init__(capacity)
        self._slot_lock = threading.Lock()
        self._newest: Frame | None = None
        self._seq = 0
        self._ticks = Ticks(keep_fps) if keep_fps else None
        self._held: Frame | None = None  # a live frame, until the next one says how long it was on screen

    def put(self, frame: Frame, block: bool = False, timeout: float | None = None) -> bool:
        with self._slot_lock:  # shown at once, even if the engine's side must wait for room
            self._newest = frame
            self._seq += 1
            kept = self._on_grid(frame) if self._ticks is not None else frame
        return True if kept is None else super().put(kept, block=block, timeout=timeout)

    def _on_grid(self, frame: Frame) -> Frame | None:
        """The frame to keep for the next grid tick, if this one settles it. A file's frame knows its
        duration: kept when its end reaches the tick. A live frame's end is the next frame's start:
        the previous frame is kept, with that duration, once a frame after the tick arrives."""
        if frame.duration > 0:
            return self._keep_until(frame, frame.timestamp + frame.duration)
        held, self._held = self._held, frame
        if held is None or frame.timestamp < self._ticks.next - self._ticks.eps:
            return None  # replaced before the tick: never on screen at one
        return self._keep_until(replace(held, duration=frame.timestamp - held.timestamp), frame.timestamp)

    def _keep_until(self, frame: Frame, end: float) -> Frame | None:
        return frame if self._ticks.keeps(end) else None  # else gone before the tick: the engine never picks it

    def clear(self) -> None:
        """A seek: the keep grid restarts, since the next frames may be earlier than the last."""
        with self._slot_lock:
            self._held = None
            if self._ticks is not None:
                self._ticks.restart(0.0)
        super().clear()

    def preview(self) -> tuple[int, Frame | None]:
        """(sequence number, newest frame); the number changes whenever a frame arrives."""
        with self._slot_lock:
            return self._seq, self._newest
