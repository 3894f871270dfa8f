"""Frame sampling: the frames due at a fixed rate (2 fps), grouped into chunks for the model."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .frames import Frame, RingBuffer

_TIME_EPS = 1e-6  # livecc-utils' tolerance when matching a target to a frame's end


@dataclass
class Chunk:
    """Frames of one chunk and the video times they cover."""

    index: int
    start: float
    end: float
    frames: list[Frame]


def on_screen(frames: list[Frame], t: float) -> Frame:
    """The frame on screen at `t`. A file's frame (its duration known) is the first whose end reaches
    `t`, as LiveCC's livecc-utils matches targets against frame end times; a live frame shows from its
    capture until the next one is captured, so one captured at `t` is the one on screen at `t`. The
    newest frame is still on screen."""
    for frame, after in zip(frames, frames[1:]):
        if frame.duration > 0 and t <= frame.timestamp + frame.duration + _TIME_EPS:
            return frame
        if frame.duration <= 0 and t < after.timestamp - _TIME_EPS:
            return frame
    return frames[-1]


class Ticks:
    """Keeps, of frames that arrive in time order, the one on screen at each tick of a 1/fps grid
    from `origin`: the first frame whose end (its start plus its time on screen) reaches the next
    tick, as `on_screen` chooses; the next tick is then the first past that end. Without `fps`,
    every frame from `next` on is kept."""

    def __init__(self, fps: float | None, origin: float = 0.0, eps: float = _TIME_EPS):
        self.fps, self.eps = fps, eps
        self.restart(origin)

    def restart(self, at: float, origin: float | None = None) -> None:
        """The next tick is `at` (a start or a seek); the grid runs from `origin`, by default `at`."""
        self.next = at
        self.origin = at if origin is None else origin

    def keeps(self, end: float) -> bool:
        """Whether the frame that ends at `end` is on screen at a tick (and then moves past it)."""
        if end < self.next - self.eps:
            return False
        if self.fps:
            self.next = self.origin + (math.floor((end - self.origin + self.eps) * self.fps) + 1) / self.fps
        return True


class FrameSampler:
    """Takes frames from the ring buffer at a fixed rate and groups them into chunks."""

    def __init__(self, fps: float, first_frames: int, chunk_frames: int):
        self.period = 1.0 / fps
        self.first_frames, self.chunk_frames = first_frames, chunk_frames
        self.next_time = 0.0
        self.chunks = 0
        self.skipped = 0
        self.first = True

    def restart(self) -> None:
        """Next chunk is a first chunk again (after reset), continuing from the current time."""
        self.first = True

    def _targets(self, n: int) -> list[float]:
        return [self.next_time + k * self.period for k in range(n)]

    def _skip_ahead(self, latest: float, n: int) -> None:
        """Live sources: jump to the newest frames; the Time= text keeps the true times."""
        new_start = math.floor((latest - (n - 1) * self.period) / self.period + 1e-6) * self.period
        if new_start > self.next_time:
            self.skipped += max(1, round((new_start - self.next_time) / (self.chunk_frames * self.period)))
            self.next_time = new_start

    def take(self, buffer: RingBuffer, live: bool, max_backlog_s: float) -> Chunk | None:
        # `closed` before the frames: a buffer closed by then holds its last frames. Read after, it
        # could close with frames the snapshot missed, and the end-of-file tail rule would cut a
        # chunk short mid-file (CI hit it under load).
        closed = buffer.closed
        frames = buffer.snapshot()
        if not frames:
            return None
        n = self.first_frames if self.first else self.chunk_frames
        latest = frames[-1].timestamp
        if live and latest - self.next_time > max_backlog_s + n * self.period:
            self._skip_ahead(latest, n)
        targets = self._targets(n)
        if latest + frames[-1].duration + 1e-3 < targets[-1]:  # not yet on screen at the last target
            if not closed:
                return None
            covered = [t for t in targets if t <= latest + self.period / 2]
            targets = covered[: len(covered) // 2 * 2]  # a short tail: keep an even count
            if not targets:
                return None
        picks = [on_screen(frames, t) for t in targets]
        chunk = Chunk(self.chunks, targets[0], targets[-1] + self.period, picks)
        self.next_time = targets[-1] + self.period
        self.chunks += 1
        self.first = False
        buffer.discard_before(picks[-1].timestamp)
        return chunk
