"""The router: which key frames a question recalls.

Strategies (the names of the key-frame-memory system in shared/seeds):
  cos_sim_coarse  cosine between the question's pooled vector and each key frame's pooled vector;
  cos_sim_fine    for each question token, its best cosine over the key frame's summary vectors
                  (the token grid pooled to 4x4), then the mean over the question's tokens;
  recent          the newest key frames (a baseline);
  none            no recall.

The question side lives in the LM's input embedding space: the question's tokens through
`embed_tokens`. The vision merger projects the visual tokens into exactly that space (they
replace `<|video_pad|>` embeddings at the LM's input), so both sides are comparable without
running the LM over the question (no forward, no cache touched, ~0.1 ms) and without a trained
retrieval head. It is a lexical-visual match, not a learned one; the time rule below covers the
questions it cannot (time words have no visual counterpart).

Questions that name a time ("at 2:30", "at 95 s", "two minutes ago", "at the start") recall the
key frames nearest that time first, whatever the similarity says.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from engine.defaults import ROUTER_STRATEGIES as STRATEGIES

from .memory import KeyFrame, KeyFrameMemory, unit

TIME_WINDOW_S = 15.0  # key frames within this distance of a named time come first

_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40,
            "forty-five": 45, "fifty": 50, "sixty": 60, "ninety": 90, "a few": 3, "a couple of": 2}
_UNITS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_NUMBER = r"(\d+(?:\.\d+)?|" + "|".join(sorted(map(re.escape, _NUMBERS), key=len, reverse=True)) + ")"
_UNIT = r"(hours?|h|minutes?|mins?|seconds?|secs?|s)\b"
_AGO = re.compile(_NUMBER + r"\s*" + _UNIT + r"\s+ago", re.I)
_CLOCK = re.compile(r"\b(?:at|around|about|near)\s+(\d+):(\d{2})(?::(\d{2}))?\b", re.I)
_SECONDS = re.compile(r"\b(?:at|around|about|near)\s+(\d+(?:\.\d+)?)\s*" + _UNIT, re.I)
_START = re.compile(r"\b(?:at|in|near|from)\s+the\s+(?:very\s+)?(?:start|beginning)\b", re.I)


def named_time(question: str, now: float) -> float | None:
    """The video time a question names, in seconds, or None."""
    if m := _CLOCK.search(question):
        h, mnt, sec = (int(m.group(1)), int(m.group(2)), m.group(3))
        return h * 3600 + mnt * 60 + int(sec) if sec is not None else h * 60 + mnt
    if m := _AGO.search(question):
        count = m.group(1).lower()
        n = float(count) if count[0].isdigit() else _NUMBERS[count]
        return max(0.0, now - n * _unit_seconds(m.group(2)))
    if m := _SECONDS.search(question):
        return float(m.group(1)) * _unit_seconds(m.group(2))
    if _START.search(question):
        return 0.0
    return None


def _unit_seconds(word: str) -> float:
    word = word.lower().rstrip("s") or "s"
    return _UNITS.get(word, 1)


@dataclass(frozen=True)
class Routed:
    """Key frames chosen for a question, best first, and whether a named time chose them."""

    frames: list[KeyFrame]
    named_time: float | None


class Router:
    """Ranks the key frames for a question and picks the top k within a token budget."""

    def __init__(self, strategy: str, topk: int, embed: Callable[[str], torch.Tensor]):
        if strategy not in STRATEGIES:
            raise ValueError(f"router_strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        self.strategy, self.topk, self.embed = strategy, topk, embed

    def route(self, memory: KeyFrameMemory, question: str, now: float, before: float, budget: int,
              cost: Callable[[KeyFrame], int]) -> Routed:
        """Top-k key frames starting before `before` (older video than the cache holds), best first,
        whose summed `cost` in tokens fits `budget`."""
        if self.strategy == "none" or self.topk == 0 or not len(memory):
            return Routed([], None)
        candidates = [i for i, f in enumerate(memory.frames) if f.start < before]
        if not candidates:
            return Routed([], None)
        ranked = self.rank(memory, candidates, question)
        at = named_time(question, now)
        if at is not None:
            near = sorted((i for i in ranked if _distance(memory.frames[i], at) <= TIME_WINDOW_S),
                          key=lambda i: _distance(memory.frames[i], at))
            ranked = near + [i for i in ranked if i not in near]
        return Routed(self._within_budget([memory.frames[i] for i in ranked], budget, cost), at)

    def rank(self, memory: KeyFrameMemory, candidates: list[int], question: str) -> list[int]:
        """Candidate indices, best first."""
        if self.strategy == "recent":
            return sorted(candidates, key=lambda i: memory.frames[i].end, reverse=True)
        q = unit(self.embed(question))  # (tokens, hidden)
        if self.strategy == "cos_sim_coarse":
            pooled = torch.stack([memory.index[i].pooled for i in candidates]).float()
            scores = pooled @ unit(q.mean(0)).to(pooled.device)
        else:
            summary = torch.stack([memory.index[i].summary for i in candidates]).float()  # (K, S, hidden)
            sims = torch.einsum("qd,ksd->kqs", q.to(summary.device), summary)
            scores = sims.amax(-1).mean(-1)
        order = torch.argsort(scores.cpu(), descending=True, stable=True).tolist()
        return [candidates[j] for j in order]

    def _within_budget(self, ranked: list[KeyFrame], budget: int, cost: Callable[[KeyFrame], int]) -> list[KeyFrame]:
        picked, used = [], 0
        for frame in ranked:
            if len(picked) == self.topk:
                break
            if used + cost(frame) <= budget:
                picked.append(frame)
                used += cost(frame)
        return picked


def _distance(frame: KeyFrame, t: float) -> float:
    """Seconds from `t` to the key frame's span (0 inside it)."""
    return max(0.0, frame.start - t, t - frame.end)
