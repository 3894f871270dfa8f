"""The engine core's vision batches beside its decode (CUDA): a batch is launched on a low-priority
side stream in one step and handed to its sessions in a later one, once the GPU has run it, so the
decode and prefill steps launched meanwhile on the engine's high-priority stream run beside it
instead of queuing behind it (the single-stream path's overlap, engine/session/session.py, for a
batch of chunks). No session sees an embedding before the host has seen its batch finish.
Opt-in (LIVECC_VISION_STREAM=1), as it has not been measured on a GPU yet; without it, and on the
CPU, each batch runs in its step, after the step's pass, and is handed over at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from .scheduler import guarded, hand


@dataclass(eq=False)
class VisionBatch:
    """A vision batch in flight: its lanes, their embeddings (not ready before `done`)."""

    lanes: list
    results: list[torch.Tensor]
    done: torch.cuda.Event


class VisionFlights:
    """Launches vision batches on the runner's side stream and hands each lane its embeddings when
    its batch is done."""

    def __init__(self, runner, clock):
        self.runner, self.clock = runner, clock
        self._flying: deque[VisionBatch] = deque()
        self._busy: set[int] = set()  # ids of the lanes whose chunk is in a batch in flight

    def __bool__(self) -> bool:
        return bool(self._flying)

    @property
    def beside(self) -> bool:
        """Whether batches run beside the decode (the runner has a side stream), not in line."""
        return self.runner.vision_stream is not None

    def waiting(self, lane) -> bool:
        """Whether the lane's Encode still needs a launch (it is in no batch in flight)."""
        return id(lane) not in self._busy

    def launch(self, lanes: list) -> None:
        """One batch for `lanes`: on the side stream when `beside`, else run and handed over now."""
        if not lanes:
            return
        videos = [lane.waiting.video for lane in lanes]
        if not self.beside:
            hand(lanes, guarded(lambda: self.runner.encode(videos)))
            return
        launched = guarded(lambda: self.runner.encode_beside(videos))
        if isinstance(launched, BaseException):
            hand(lanes, launched)
            return
        results, start, done = launched
        self.clock.span(start, done)
        self._flying.append(VisionBatch(lanes, results, done))
        self._busy.update(id(lane) for lane in lanes)

    def land(self, wait: bool = False) -> None:
        """Hand over every batch the GPU has finished, in launch order (`wait`: the oldest first
        waits for the GPU; what the engine does when vision is all it has to do)."""
        while self._flying:
            batch = self._flying[0]
            done = guarded(batch.done.synchronize if wait else batch.done.query)
            if done is False:
                return
            wait = False
            self._flying.popleft()
            for lane, result in zip(batch.lanes, batch.results):
                self._busy.discard(id(lane))
                if lane.ended:
                    continue
                if isinstance(done, BaseException):  # an asynchronous failure of the batch
                    lane.resolve(error=done)
                else:
                    lane.resolve(result)
