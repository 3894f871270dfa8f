"""What a session needs from a runner, as a typing.Protocol: the reference (`EagerRunner`), the
fast path (`StaticRunner`) and test doubles all meet it. Optional capabilities are class
attributes every runner declares, so callers ask `runner.supports_picks` instead of probing
for methods with hasattr/getattr."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import torch

from engine.model.preprocess import VideoInputs


@runtime_checkable
class Runner(Protocol):
    """Vision encode, prefill and one-token decode over one session's KV cache."""

    name: str
    supports_picks: bool  # has `picks`: a greedy run of self-feeding decode steps (PicksRunner)
    supports_prefill_graphs: bool  # has `drop_prefill_graphs`: graphed prefills a memory plan can turn off

    @property
    def device(self) -> torch.device: ...

    @property
    def length(self) -> int:
        """Tokens in the KV cache."""
        ...

    def reset(self) -> None:
        """Forget every cached token."""
        ...

    def crop(self, length: int) -> None:
        """Forget every cached token from `length` on."""
        ...

    def encode_video(self, video: VideoInputs) -> torch.Tensor:
        """(n_tokens, hidden) merged visual embeddings for one chunk."""
        ...

    def prefill(self, ids: torch.Tensor, positions: torch.Tensor, video_embeds: torch.Tensor | None) -> torch.Tensor:
        """Append `ids` at M-RoPE `positions` (3, n); float32 logits of the last one."""
        ...

    def decode(self, token: int, position: int) -> torch.Tensor:
        """Feed one token at `position`; float32 logits of the next."""
        ...


class PicksRunner(Runner, Protocol):
    """A runner with `supports_picks`: greedy decoding kept on the device."""

    def picks(self, token: int, position: int, step: int, count: int, choose: Callable, key: object,
              seen: torch.Tensor) -> Iterator[int]: ...


class PrefillGraphsRunner(Runner, Protocol):
    """A runner with `supports_prefill_graphs`."""

    def drop_prefill_graphs(self) -> None: ...
