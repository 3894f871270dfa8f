"""Token selection for LiveCC replies: repetition penalty over the whole conversation (as
`generate()` applies it to all input ids), LiveCC's streaming-EOS threshold, greedy or
temperature/top-p sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    seed: int | None = None

    def __post_init__(self):
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.repetition_penalty <= 0:
            raise ValueError("need temperature >= 0, 0 < top_p <= 1, repetition_penalty > 0")


class TokenSampler:
    """Keeps the set of token ids seen in the conversation and picks the next token."""

    def __init__(self, vocab_size: int, device: torch.device, config: SamplingConfig):
        self.config = config
        self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.generator = None
        if config.seed is not None and config.temperature > 0:
            self.generator = torch.Generator(device=device).manual_seed(config.seed)

    def observe(self, ids: torch.Tensor | list[int]) -> None:
        ids = torch.as_tensor(ids, device=self.seen.device)
        self.seen[ids] = True

    def reset(self) -> None:
        self.seen.zero_()

    def penalize(self, logits: torch.Tensor) -> torch.Tensor:
        p = self.config.repetition_penalty
        if p == 1.0:
            return logits
        penalized = torch.where(logits > 0, logits / p, logits * p)
        return torch.where(self.seen, penalized, logits)

    def pick(self, logits: torch.Tensor) -> torch.Tensor:
        """A 0-d tensor holding the chosen token id (no host sync here)."""
        if self.config.temperature == 0:
            return logits.argmax()
        probs = torch.softmax(logits / self.config.temperature, dim=-1)
        if self.config.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            cut = sorted_p.cumsum(-1) - sorted_p > self.config.top_p
            sorted_p = sorted_p.masked_fill(cut, 0.0)
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        return torch.multinomial(probs, 1, generator=self.generator)[0]


def ban_unconfident(logits: torch.Tensor, token_id: int, threshold: float) -> torch.Tensor:
    """LiveCC's streaming-EOS control: ban ' ...' unless its probability exceeds `threshold`."""
    if threshold <= 0.0:
        return logits  # P <= 0 never holds for a softmax: nothing to ban
    prob = torch.softmax(logits, dim=-1)[token_id]
    return torch.where((prob <= threshold) & (torch.arange(logits.numel(), device=logits.device) == token_id),
                       torch.full_like(logits, float("-inf")), logits)
