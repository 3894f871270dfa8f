"""A session's replies: how each token of a comment or an answer is picked, by the driver (the
engine core picks for all its sessions at once, the fast runner on the GPU) or by the session
itself. A part of `StreamingSession` (engine/session/session.py), kept apart because it is its own
concern."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from engine import flags

from .decoding import SelectRule
from .events import Event
from .steps import Choice, Decode


class ReplySteps:
    """`StreamingSession`'s replies; uses its prompt, config, sampler, state, runner and trace."""

    def _first(self, commentary: bool, max_new: int) -> Choice | None:
        """How the driver picks a reply's first token with the prefill before it; None (a logit
        trace records the logits, or LIVECC_NO_FIRST_PICK=1): the session picks."""
        if self.trace is not None or flags.get("LIVECC_NO_FIRST_PICK"):
            return None
        return Choice(self.sampler, self._select_rule(commentary, self._stops(commentary)), 0, max_new - 1)

    def _reply(self, first: torch.Tensor | int, max_new: int, commentary: bool,
               emit: Callable[[list[int]], Event] | None = None) -> Iterator:
        """Pick tokens until a stop token or `max_new`, starting from `first`: the prefill's last
        logits, or the token the driver picked from them; after each, yield `emit(tokens so far)`
        when given. Returns the tokens. The last picked token is left pending: it opens the next segment."""
        stops = self._stops(commentary)
        rule = self._select_rule(commentary, stops)
        picked = isinstance(first, int) or first.dim() == 0
        token = int(first) if picked else int(self.sampler.choose(first, rule, 0))
        out: list[int] = []
        picks = None
        try:
            for k in range(1, max_new + 1):
                out.append(token)
                self.state.pending = token
                if emit is not None:
                    yield emit(out)
                if token in stops or k == max_new or self._stopped:  # stop() ends a reply mid-way
                    return out
                if picks is None:
                    picks = self._picks(token, rule, max_new - k)
                token = yield from self._feed(token, rule, k, picks, max_new - 1)
        finally:
            if picks is not None:
                picks.close()  # a step run ahead of a stop is undone
        return out

    def _stops(self, commentary: bool) -> frozenset[int]:
        """A comment ends at any stop token; an answer not at LiveCC's ' ...' (it carries on)."""
        ids = self.prompt.ids
        return ids.stops if commentary else ids.stops - {ids.stream_continues}

    def _select_rule(self, commentary: bool, stops: frozenset[int]) -> SelectRule:
        cfg = self.config
        # A generated <|video_pad|> would be read as a video slot when the reply is prefilled again
        # (after a compaction): never pick it. Random weights do, now and then; real ones never should.
        banned = tuple(sorted((stops if cfg.ignore_eos else frozenset()) | {self.prompt.ids.video_pad}))
        if commentary:
            return SelectRule(self.prompt.ids.stream_continues, cfg.eos_base, cfg.eos_step, banned)
        return SelectRule(banned=banned)

    def _picks(self, token: int, rule: SelectRule, count: int) -> Iterator[int] | None:
        """The fast runner's greedy run from `token` (engine/runtime/fast.py `picks`: it feeds each
        token, marks it seen and picks the next on the GPU, one step ahead of the host), or None
        for the eager loop: the reference runner, sampling, or a logit trace."""
        if not self.runner.supports_picks or self.trace is not None or not self.sampler.config.greedy:
            return None
        return self.runner.picks(token, self.state.next_pos, 1, count, lambda lg, k: self.sampler.choose(lg, rule, k), rule,
                     self.sampler.seen)

    def _feed(self, token: int, rule: SelectRule, step: int, picks: Iterator[int] | None, last: int) -> Iterator:
        """Feed a picked token to the model and choose the next (returned): the fast runner's run does
        both on the GPU; otherwise a Decode request, then selection here."""
        position = self.state.next_pos
        self.state.pending = None
        self.state.tokens.append(token)
        self.state.next_pos += 1
        if picks is not None:
            return next(picks)
        self.sampler.observe([token])
        if self.trace is None:  # the driver picks: the engine core picks for all its sessions at once
            return (yield Decode(token, position, Choice(self.sampler, rule, step, last)))
        logits = yield Decode(token, position)
        self._record(logits)
        return int(self.sampler.choose(logits, rule, step))
