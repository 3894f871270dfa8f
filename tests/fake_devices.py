"""Stand-ins for a camera and a screen (tests/test_sources.py, tests/test_cli_live.py): they deliver
frames as the real ones do, from generated pictures, on a machine with neither; and a buffer whose
source finishes at the worst moment (`Racing`)."""

from __future__ import annotations

import time

import cv2
import numpy as np

from engine.capture.frames import RingBuffer
from videos import synthetic_frame


class Racing(RingBuffer):
    """A buffer whose source puts `rest` and closes it just after the consumer's first snapshot:
    between a consumer's look at the frames and its look at `closed`."""

    def __init__(self, rest, capacity: int = 256):
        super().__init__(capacity)
        self.rest = rest

    def snapshot(self):
        frames = super().snapshot()
        if self.rest:  # the source finishes meanwhile
            for frame in self.rest:
                self.put(frame)
            self.rest = []
            self.close()
        return frames


class FakeCamera:
    """A cv2.VideoCapture of a camera: moving shapes at `fps`, each read waiting for the camera's next
    frame as a real one does; reads after `works_for` fail (the camera was unplugged)."""

    def __init__(self, fps: float = 10.0, works_for: int = 10**9, width: int = 160, height: int = 112):
        self.fps, self.works_for, self.size = fps, works_for, (width, height)
        self.reads, self.released = 0, False
        self._t0 = time.monotonic()

    def isOpened(self) -> bool:
        return True

    def set(self, prop, value) -> bool:
        return True

    def read(self):
        self.reads += 1
        time.sleep(max(0.0, self._t0 + self.reads / self.fps - time.monotonic()))  # the camera's own clock
        if self.reads > self.works_for:
            return False, None
        return True, cv2.cvtColor(synthetic_frame(self.reads / self.fps, *self.size), cv2.COLOR_RGB2BGR)

    def release(self) -> None:
        self.released = True


class FakeScreen:
    """An mss stand-in: two monitors side by side; every grab is a BGRA image with B=1, G=2,
    R=3 whose size is the requested box; grabs after `works_for` raise ScreenShotError."""

    def __init__(self, works_for: int = 10**9):
        self.monitors = [
            {"left": 0, "top": 0, "width": 400, "height": 200},
            {"left": 0, "top": 0, "width": 200, "height": 200},
            {"left": 200, "top": 0, "width": 200, "height": 100},
        ]
        self.boxes: list[dict] = []
        self.works_for = works_for

    def grab(self, box: dict) -> np.ndarray:
        import mss

        self.boxes.append(dict(box))
        if len(self.boxes) > self.works_for:
            raise mss.ScreenShotError("XGetImage() failed")
        image = np.empty((box["height"], box["width"], 4), np.uint8)
        image[...] = (1, 2, 3, 255)
        return image

    def close(self) -> None:
        pass
