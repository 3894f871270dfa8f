"""Token selection for LiveCC replies: repetition penalty over the whole conversation (as
`generate()` applies it to all input ids), LiveCC's streaming-EOS threshold, greedy or
temperature/top-p sampling.

Selection works on device tensors only (the step index may be a tensor), so the fast runner can
capture it inside its CUDA-graphed decode step: no host sync but reading the chosen token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.defaults import REPETITION_PENALTY
from engine.errors import ConfigValueError
from engine.runtime.decode_ops import upload

# Sampling bounds where the arithmetic stays finite in float32 and bf16: scores are divided by the
# penalty and then the temperature, so 1e-300 would turn a logit into inf and softmax into NaN.
TEMPERATURE_RANGE = (1e-3, 1e3)
PENALTY_RANGE = (1e-3, 1e3)


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    repetition_penalty: float = REPETITION_PENALTY
    seed: int | None = None

    def __post_init__(self):
        low, high = TEMPERATURE_RANGE
        if self.temperature != 0 and not low <= self.temperature <= high:
            raise ConfigValueError("temperature", self.temperature, f"is out of range: give 0 (greedy) or {low:g} to "
                                                                   f"{high:g} (sampling)")
        if not 0 < self.top_p <= 1:
            raise ConfigValueError("top_p", self.top_p, "is out of range: give more than 0 and at most 1")
        low, high = PENALTY_RANGE
        if not low <= self.repetition_penalty <= high:
            raise ConfigValueError("repetition_penalty", self.repetition_penalty,
                                   f"is out of range: give {low:g} to {high:g} (1 = no penalty)")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class SelectRule:
    """What the next-token choice respects for one kind of turn."""

    stream_token: int | None = None  # commentary: LiveCC's ' ...' threshold applies to this token
    eos_base: float = 0.0  # ban `stream_token` at step k unless P > eos_base + eos_step * k
    eos_step: float = 0.0
    banned: tuple[int, ...] = ()  # never chosen (benchmarks: ignore EOS)

    @property
    def thresholds(self) -> bool:
        """P <= 0 never holds for a softmax, so a zero threshold bans nothing."""
        return self.stream_token is not None and (self.eos_base > 0 or self.eos_step > 0)


class TokenSampler:
    """Keeps the set of token ids seen in the conversation and picks the next token."""

    def __init__(self, vocab_size: int, device: torch.device, config: SamplingConfig):
        self.config = config
        self.seen = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.generator = None
        if config.seed is not None and not config.greedy:
            self.generator = torch.Generator(device=device).manual_seed(config.seed)

    def observe(self, ids: torch.Tensor | list[int]) -> None:
        """Mark `ids` seen without waiting for the GPU: a fill, or an index fill from an asynchronous
        upload. (`seen[i] = True` would make a host tensor of the value and copy it to the device
        with a blocking copy, which waits for all the work queued before it: the engine core's step
        run ahead, say.)"""
        if isinstance(ids, list) and len(ids) == 1:
            self.seen[ids[0]].fill_(True)  # each decode step marks its token
        else:
            on_device = isinstance(ids, torch.Tensor) and ids.device == self.seen.device
            self.seen.index_fill_(0, ids.long() if on_device else upload(ids, self.seen.device), True)

    def reset(self) -> None:
        self.seen.zero_()

    def penalize(self, logits: torch.Tensor) -> torch.Tensor:
        return penalize(logits, self.seen, self.config.repetition_penalty)

    def scores(self, logits: torch.Tensor, rule: SelectRule, step: int | torch.Tensor) -> torch.Tensor:
        scores = self.penalize(logits)
        if rule.thresholds:
            tok = rule.stream_token
            prob = torch.softmax(scores, dim=-1)[tok]
            unconfident = prob <= rule.eos_base + rule.eos_step * step
            scores = scores.clone()
            scores[tok] = torch.where(unconfident, torch.full_like(prob, float("-inf")), scores[tok])
        if rule.banned:  # the index is built on first (eager) use, before any graph capture
            scores = scores.index_fill(0, banned_index(rule.banned, logits.device), float("-inf"))
        return scores

    def pick(self, scores: torch.Tensor) -> torch.Tensor:
        """A 0-d tensor holding the chosen token id (no host sync here)."""
        if self.config.greedy:
            return scores.argmax()
        probs = torch.softmax(scores / self.config.temperature, dim=-1)
        if self.config.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            cut = sorted_p.cumsum(-1) - sorted_p > self.config.top_p
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p.masked_fill(cut, 0.0))
        return torch.multinomial(probs, 1, generator=self.generator)[0]

    def choose(self, logits: torch.Tensor, rule: SelectRule, step: int | torch.Tensor) -> torch.Tensor:
        """The next token (0-d tensor). Reads `seen` but changes nothing: safe to capture in a graph."""
        return self.pick(self.scores(logits, rule, step))


def choose_rows(logits: torch.Tensor, choices: list[tuple[TokenSampler, SelectRule, int]]) -> torch.Tensor:
    """`choose` for every row of `logits` (rows, vocab) by its own (sampler, rule, step), as a batch:
    the engine core's decode step picks for all its sessions in a few launches and one read back,
    where row-by-row picking would launch and wait per session. The arithmetic per row is `choose`'s
    (the same scalar penalty, softmax and -inf fills), so each pick equals the row-by-row one.
    Sampling rows, or rows whose penalties differ, are picked one by one. Returns the ids on the
    device (rows,): nothing is read back here."""
    samplers = [sampler for sampler, _, _ in choices]
    penalties = {s.config.repetition_penalty for s in samplers}
    if len(penalties) > 1 or not all(s.config.greedy for s in samplers):
        return torch.stack([s.choose(row, rule, step) for row, (s, rule, step) in zip(logits, choices)]).reshape(-1)
    scores = penalize(logits, torch.stack([s.seen for s in samplers]), penalties.pop())
    scores = scores.clone() if scores is logits else scores  # the bans below write in place
    scores = _eos_thresholds(scores, choices)
    by_ban: dict[tuple[int, ...], list[int]] = {}
    for i, (_, rule, _) in enumerate(choices):
        if rule.banned:
            by_ban.setdefault(rule.banned, []).append(i)
    for banned, rows in by_ban.items():  # (a device value: a Python one would be copied over, waiting: see observe)
        index = (upload(rows, scores.device)[:, None], banned_index(banned, scores.device)[None, :])
        scores.index_put_(index, torch.full((), float("-inf"), dtype=scores.dtype, device=scores.device))
    return scores.argmax(dim=-1)


def penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """`generate()`'s repetition penalty on the ids marked in `seen` (the same shape as `logits`'
    last dimensions); the logits themselves when the penalty is 1."""
    if penalty == 1.0:
        return logits
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


_BANNED: dict[tuple[tuple[int, ...], torch.device], torch.Tensor] = {}


def banned_index(banned: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """The ids of a rule's `banned` on `device`, uploaded once per tuple and device."""
    key = (banned, torch.device(device))
    if key not in _BANNED:
        _BANNED[key] = torch.tensor(banned, device=device)
    return _BANNED[key]


def _eos_thresholds(scores: torch.Tensor, choices: list[tuple[TokenSampler, SelectRule, int]]) -> torch.Tensor:
    """Ban each thresholded row's stream token where its probability is at most the row's threshold."""
    rows = [i for i, (_, rule, _) in enumerate(choices) if rule.thresholds]
    if not rows:
        return scores
    device = scores.device
    tokens = upload([choices[i][1].stream_token for i in rows], device)
    limits = upload([choices[i][1].eos_base + choices[i][1].eos_step * choices[i][2] for i in rows], device,
                    scores.dtype)
    index = upload(rows, device)
    prob = torch.softmax(scores, dim=-1)[index, tokens]
    scores[index, tokens] = torch.where(prob <= limits, torch.full_like(prob, float("-inf")), scores[index, tokens])
    return scores
