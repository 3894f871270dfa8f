"""The decode step's state by name: one small long tensor, so a CUDA graph reads it with one copy."""

from __future__ import annotations

from dataclasses import dataclass

import torch

FIELDS = ("token", "slot", "position", "step", "fed", "was_seen")


@dataclass(frozen=True)
class DecodeState:
    """Named views over `values` = [token to feed, its cache slot, its M-RoPE position, the step
    number, the token the last greedy step fed, whether it was seen before]. Views, not copies:
    writing one writes the tensor a graph was captured on."""

    values: torch.Tensor

    def __post_init__(self):
        if self.values.shape != (len(FIELDS),):
            raise ValueError(f"decode state has shape {tuple(self.values.shape)}, not ({len(FIELDS)},)")

    @classmethod
    def zeros(cls, device: torch.device | str = "cpu", pin_memory: bool = False) -> DecodeState:
        return cls(torch.zeros(len(FIELDS), dtype=torch.long, device=device, pin_memory=pin_memory))

    def set(self, token: int, slot: int, position: int, step: int) -> DecodeState:
        """The next step's inputs (host values); the greedy step's marks start cleared."""
        self.values.copy_(torch.tensor([token, slot, position, step, 0, 0]))
        return self

    @property
    def token(self) -> torch.Tensor:
        return self.values[0:1]

    @property
    def token_slot(self) -> torch.Tensor:
        """[token, slot]: what `_decode_eager` takes."""
        return self.values[0:2]

    @property
    def slot(self) -> torch.Tensor:
        return self.values[1:2]

    @property
    def position(self) -> torch.Tensor:
        return self.values[2:3]

    @property
    def step(self) -> torch.Tensor:
        """A 0-d view: the sampler's thresholds broadcast it against a 0-d probability."""
        return self.values[3]

    @property
    def counters(self) -> torch.Tensor:
        """[slot, position, step]: they advance together, by one per token fed."""
        return self.values[1:4]

    @property
    def fed(self) -> torch.Tensor:
        return self.values[4:5]

    @property
    def was_seen(self) -> torch.Tensor:
        return self.values[5:6]
