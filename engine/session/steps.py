"""What a session asks of the model, as values, so one driver can run it at once and another can batch it.

A session's work is a generator (`StreamingSession.steps`) that yields events for its listener,
requests for the model (`Encode`, `Prefill`, `Decode`: the driver sends the result back in) and
`IDLE` when it waits for frames or a command. `drive` runs such a generator on the session's own
runner, one request at a time (the single-stream path); the engine core (engine/core) runs many
of them and batches their requests.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import torch

from engine.model.preprocess import VideoInputs

from .decoding import SelectRule, TokenSampler


@dataclass(frozen=True)
class Encode:
    """A chunk's frames through the vision tower; the result is its merged embeddings (tokens, hidden)."""

    video: VideoInputs


@dataclass(frozen=True)
class Choice:
    """How the token after a Decode or a Prefill is picked: `sampler` under `rule` at step `step` of
    the reply. `last`: the reply's last step, whose pick ends it (its token budget), if known."""

    sampler: TokenSampler
    rule: SelectRule
    step: int
    last: int | None = None

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """The pick, on the logits' device (0-d), not read yet."""
        return self.sampler.choose(logits, self.rule, self.step)

    def pick(self, logits: torch.Tensor) -> int:
        return int(self.choose(logits))


@dataclass(frozen=True)
class Prefill:
    """Append a segment at its M-RoPE positions (3, n) to the session's cache; the result is the float
    logits of its last token or, with a `choice`, the token picked from them: an int, or a 0-d
    device tensor not read yet (the engine core picks it with the other sessions' tokens, and runs
    the reply's next step from it before the host reads it). `id_list`: the ids on the host too, so
    a driver can count video slots without reading the device. `next_position`: where the pick is fed."""

    ids: torch.Tensor
    positions: torch.Tensor
    embeds: torch.Tensor | None
    id_list: list[int] | None = None
    choice: Choice | None = None
    next_position: int | None = None

    def __post_init__(self):
        if self.choice is not None and self.next_position is None:
            raise ValueError("a Prefill that asks for a pick says where the pick is fed (next_position)")


@dataclass(frozen=True)
class Decode:
    """Feed one token at `position`; the result is the float logits that follow it or, with a
    `choice`, the token it picks from them (the engine core picks for many sessions at once)."""

    token: int
    position: int
    choice: Choice | None = None


Request = Encode | Prefill | Decode


class Idle:
    """Yielded when the session has nothing to do until a frame or a command arrives."""

    def __repr__(self) -> str:
        return "IDLE"


IDLE = Idle()


def execute(runner, request: Request):
    """Run one request on a runner now."""
    if isinstance(request, Decode):
        logits = runner.decode(request.token, request.position)
        return logits if request.choice is None else request.choice.pick(logits)
    if isinstance(request, Prefill):
        logits = runner.prefill(request.ids, request.positions, request.embeds)
        return logits if request.choice is None else request.choice.choose(logits)
    return runner.encode_video(request.video)


def drive(steps: Generator, runner, idle: Callable[[], None] | None = None):
    """Run a session generator on its own runner, yielding only its events. A request's error is
    raised inside the generator (a recall that runs out of GPU memory retries with fewer frames)."""
    result, error = None, None
    try:
        while True:
            try:
                item = steps.throw(error) if error is not None else steps.send(result)
            except StopIteration as stop:
                return stop.value
            result, error = None, None
            if item is IDLE:
                if idle is not None:
                    idle()
            elif isinstance(item, (Encode, Prefill, Decode)):
                try:
                    result = execute(runner, item)
                except Exception as exc:  # noqa: BLE001 - handed to the generator, which re-raises what it can't handle
                    error = exc
            else:
                yield item
    finally:
        steps.close()  # a listener that stops early still ends the session's decode run cleanly
