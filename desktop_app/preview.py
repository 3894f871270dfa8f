"""The video view's own tap on the capture stream.

The engine consumes frames from the `RingBuffer` at 2 fps and discards what it has used, so
the view cannot read the buffer's contents to show the source at its own frame rate. A
`PreviewBuffer` is the engine's `GridBuffer` (only frames on an 8 fps grid enter the ring) that
also keeps the newest frame in a slot with a sequence number: the source writes once, the engine
and the view each read at their own pace.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2

from engine import Frame, GridBuffer


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


class PreviewBuffer(GridBuffer):
    def __init__(self, capacity: int = 32, keep_fps: float | None = 8.0):
        super().__init__(capacity, keep_fps)
        self._slot_lock = threading.Lock()
        self._newest: Frame | None = None
        self._seq = 0

    def put(self, frame: Frame, block: bool = False, timeout: float | None = None) -> bool:
        with self._slot_lock:  # shown at once, even if the engine's side must wait for room
            self._newest = frame
            self._seq += 1
        return super().put(frame, block=block, timeout=timeout)

    def preview(self) -> tuple[int, Frame | None]:
        """(sequence number, newest frame); the number changes whenever a frame arrives."""
        with self._slot_lock:
            return self._seq, self._newest
