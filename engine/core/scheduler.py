"""What runs in the next engine step, and whether one more live stream fits (vLLM's scheduler, for
video sessions).

Decode steps go first: every decoding session gets its token in every step. Prefill fills the
rest of the step's token budget, whole pieces in deadline order (a chunk's deadline is its capture
time + 1 s; a question's is now). Piece boundaries depend only on the session's own prefill, never
on what else is in the step, so a session's arithmetic does not change with the batch.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import torch

from engine.errors import LiveCCError
from engine.session.steps import Prefill

from .batched import Piece
from .kv import Slab

PIECE_TOKENS = 2048  # a prefill piece at most: bounds the MLP's transient memory (a compaction re-prefills ~8k)
STEP_TOKENS = 8192  # tokens one step computes at most, decode rows included
CAPTURE_TO_CAPTION_S = 1.0  # a chunk's deadline after its capture
ADMIT_LOAD = 0.85  # busy fraction above which a new live stream would push the others past real time
LOAD_WINDOW_S = 10.0


def guarded(run):
    """What `run()` returns, or the exception it raised: a batched call's failure is raised in each
    session that had a part in it, which decides."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - handed to the sessions
        return exc


def hand(lanes: list, results) -> None:
    """Hand each lane its row of a batched call's `results`, or, when they are its exception, that
    exception to every lane."""
    for k, lane in enumerate(lanes):
        if isinstance(results, BaseException):
            lane.resolve(error=results)
        else:
            lane.resolve(results[k])


class BusyError(LiveCCError):
    """One more live stream would make the running ones fall behind real time."""

    code = "busy"


class EngineStopped(LiveCCError):
    """The core's engine thread failed: no session can run on it any more."""

    code = "engine"


@dataclass
class PrefillJob:
    """A session's Prefill request, cut into pieces of at most PIECE_TOKENS tokens."""

    slab: Slab
    request: Prefill
    deadline: float
    video_token: int
    done_tokens: int = 0
    done_video: int = 0

    @property
    def finished(self) -> bool:
        return self.done_tokens >= self.request.ids.numel()

    def next_size(self) -> int:
        return min(PIECE_TOKENS, self.request.ids.numel() - self.done_tokens)

    def take(self) -> Piece:
        """The next piece, with the visual embeddings of the video tokens it holds."""
        lo, hi = self.done_tokens, self.done_tokens + self.next_size()
        req = self.request
        embeds = None
        n_video = req.id_list[lo:hi].count(self.video_token) if req.id_list is not None else None
        if req.embeds is not None:
            if n_video is None:
                n_video = int((req.ids[lo:hi] == self.video_token).sum())  # a read back: a sync
            embeds = req.embeds[self.done_video:self.done_video + n_video]
            self.done_video += n_video
        self.done_tokens = hi
        return Piece(self.slab, req.ids[lo:hi], req.positions[:, lo:hi], embeds, n_video)


def plan_prefill(jobs: list[PrefillJob], budget: int) -> list[tuple[PrefillJob, Piece]]:
    """Whole pieces, earliest deadline first, while they fit in `budget` tokens (at least one)."""
    chosen: list[tuple[PrefillJob, Piece]] = []
    for job in sorted(jobs, key=lambda j: j.deadline):
        if chosen and job.next_size() > budget:
            continue
        budget -= job.next_size()
        chosen.append((job, job.take()))
    return chosen


@dataclass
class Load:
    """The engine's measured busy time, for admission: what each live stream costs now."""

    window_s: float = LOAD_WINDOW_S
    _busy: deque = field(default_factory=deque)  # (end time, seconds busy) of recent steps
    started: float = field(default_factory=time.monotonic)
    total_s: float = 0.0  # busy since the start (benchmarks: the busy fraction of a whole run)

    def add(self, seconds: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.total_s += seconds
        self._busy.append((now, seconds))
        while self._busy and self._busy[0][0] < now - self.window_s:
            self._busy.popleft()

    def fraction(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        span = min(self.window_s, now - self.started)
        return sum(s for _, s in self._busy) / span if span > 0 else 0.0

    def admits(self, live_streams: int, now: float | None = None) -> bool:
        """Whether one more live stream keeps the projected busy fraction under ADMIT_LOAD. Until a
        window has been measured, or with no live stream to measure by, every stream is admitted."""
        now = time.monotonic() if now is None else now
        if live_streams == 0 or now - self.started < self.window_s:
            return True
        busy = self.fraction(now)
        return busy + busy / live_streams <= ADMIT_LOAD

    def describe(self, live_streams: int) -> str:
        return f"the GPU is {self.fraction():.0%} busy with {live_streams} live streams"


class StepClock:
    """Each step's GPU time into a `Load`, without making the host wait: on CUDA a pair of events a
    step, read once the GPU has passed them (a step's launches overlap the next step's host work);
    on the CPU, wall time (its ops finish before they return)."""

    def __init__(self, device: torch.device, load: Load):
        self.device, self.cuda, self.load = device, device.type == "cuda", load
        self._pending: deque = deque()

    def start(self):
        if not self.cuda:
            return time.perf_counter()
        return self._event()

    def _event(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))  # the engine's device, not the current one
        return event

    def stop(self, mark) -> None:
        if not self.cuda:
            self.load.add(time.perf_counter() - mark)
            return
        self._pending.append((mark, self._event()))
        self.settle()

    def settle(self, wait: bool = False) -> None:
        """Count the steps the GPU has finished (`wait`: all of them)."""
        while self._pending and (wait or self._pending[0][1].query()):
            mark, end = self._pending.popleft()
            end.synchronize()
            self.load.add(mark.elapsed_time(end) / 1e3)
