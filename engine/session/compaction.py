"""The bounded context's side of a session: when the next step would overflow the KV budget,
compact (re-prefill the compact conversation: engine/session/context.py) and build the step again.
A part of `StreamingSession` (engine/session/session.py), kept apart because it is its own concern."""

from __future__ import annotations

from collections.abc import Iterator

from .context import CompactContext, ContextBudgetError
from .events import Compaction


class CompactionSteps:
    """`StreamingSession`'s compactions; uses its context, runner, sampler, state and model requests."""

    def _turn_with_room(self, build, max_new: int, now: float) -> Iterator[Compaction]:
        """Build a turn; when it and its reply would overflow the budget, compact (yielding the event)
        and build it again, since a turn depends on what the cache holds. Returns the turn."""
        turn = build()
        compaction = yield from self._make_room(len(self._segment(turn)), max_new, now)
        if compaction is None:
            return turn
        yield compaction
        turn = build()
        self._check_fits(len(self._segment(turn)), max_new)
        return turn

    def _make_room(self, segment_tokens: int, max_new: int, now: float) -> Iterator:
        """Compact when the next step would push the cache past the budget. Returns the Compaction,
        or None when it fits."""
        if self.context.fits(self.runner.length, segment_tokens, max_new):
            return None
        t0 = self._sync()
        before = self.runner.length
        yield from self._compact(self.context.plan(self.query, now, segment_tokens + max_new))
        ms = (self._sync() - t0) * 1e3
        return Compaction(now, before, self.runner.length, ms)

    def _compact(self, plan: CompactContext) -> Iterator:
        """Rebuild the cache as a fresh prefill of the compact conversation (positions from 0)."""
        ids, pending = plan.token_ids(self.prompt)
        self.runner.reset()
        self.sampler.reset()
        self.state.reset()
        if self.trace is not None:
            self.trace.clear()  # trace indices refer to the conversation in the cache: a new one starts
        if ids:
            yield from self._prefill(ids, plan.grids, plan.video_embeds())
            self.state.pending, self.state.query_sent = pending, plan.query
        self.state.compactions += 1

    def _check_fits(self, segment_tokens: int, max_new: int) -> None:
        if not self.context.fits(self.runner.length, segment_tokens, max_new):
            raise ContextBudgetError(f"a step of {segment_tokens} + {max_new} tokens does not fit in the KV budget "
                                     f"of {self.config.kv_budget} tokens: raise --kv-budget or lower --max-pixels")
