"""The question side of a session: recall the key frames a question needs, prefill them and the
question, stream the answer, then crop the recalled video out of the cache again. A part of
`StreamingSession` (engine/session/session.py), kept apart because it is its own concern."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .context import ContextBudgetError
from .events import Answer, Event
from .recall import Mark, Recall, Recalled, in_time_order
from .steps import drive
from .text import NOT_ANSWERED, TextError, checked_text


class QuestionSteps:
    """`StreamingSession`'s questions; uses its state, prompt, recall, context and model requests."""

    def _admit_question(self, question: object) -> str:
        """On the asking thread: the question, counted as waiting; TextError when it cannot be taken
        or `max_waiting_questions` are waiting already."""
        question = checked_text(question, "the question")
        limit = self.config.max_waiting_questions
        with self._waiting_lock:
            if limit is not None and self._waiting_questions >= limit:
                raise TextError(f"{self._waiting_questions} questions are waiting for their answers",
                                "ask again once they are answered")
            self._waiting_questions += 1
        return question

    def _take_question(self) -> None:
        with self._waiting_lock:
            self._waiting_questions -= 1

    def _answer_or_note_steps(self, question: str) -> Iterator:
        """A question, asked during the stream or after its end (`answer`): one that cannot fit the
        KV budget even after a compaction is answered with a note (NOT_ANSWERED ...; `livecc ask`
        reports it as its error) and the session goes on; without `note_unfit_questions` (the
        evaluation, which fails that item) it raises ContextBudgetError."""
        asked_at = self.frames.next_time
        try:
            yield from self._answer_steps(question)
        except ContextBudgetError:
            if not self.config.note_unfit_questions:
                raise
            max_new = self.config.answer_max_new_tokens
            note = (f"{NOT_ANSWERED}the question and a {max_new}-token answer do not fit in the KV budget of "
                    f"{self.config.kv_budget} tokens; ask a shorter question, or allow fewer answer tokens")
            yield Answer(question, "", True, asked_at, (), (), note)

    def answer(self, question: str) -> Iterator[Event]:
        """Answer now, on this session's runner: an Answer event per token (after a Compaction event
        when the question and its answer would not fit in the budget). TextError at once for text no
        session takes (engine/session/text.py)."""
        question = checked_text(question, "the question")
        return drive(self._answer_or_note_steps(question), self.runner)

    def _answer_steps(self, question: str) -> Iterator:
        """Answer from the cached context and the key frames the question recalls (engine/session/recall.py)."""
        asked_at = self.frames.next_time
        max_new = self.config.answer_max_new_tokens
        ask = lambda: self.prompt.question_turn(question, first=not self.state.tokens)  # noqa: E731
        first, recalled, mark = yield from self._ask(ask, self._choose(question, asked_at, len(ask()) + max_new),
                                                     max_new, asked_at)
        tokens = yield from self._reply(first, max_new, commentary=False,
                                        emit=lambda so_far: self._answer(question, so_far, False, asked_at, recalled))
        if mark is not None:
            yield from self._forget_recall(mark, ask, tokens)
        if self._stopped:  # cut short: the last event says so, and memory keeps no half answer
            yield self._answer(question, tokens, False, asked_at, recalled)
            return
        self.context.memory.add_answer(asked_at, question, self._text(tokens))
        yield self._answer(question, tokens, True, asked_at, recalled)

    def _answer(self, question: str, tokens: list[int], done: bool, asked_at: float, recalled: Recalled) -> Answer:
        return Answer(question, self._text(tokens), done, asked_at, recalled.times, recalled.thumbnails, recalled.note)

    def _choose(self, question: str, now: float, question_cost: int) -> list:
        """Key frames to recall, best first; none without memory or with an empty cache."""
        if self.recall is None or not self.state.tokens:
            return []
        return self.recall.choose(question, now, self.context.video_from, self.recall.budget(self.config, question_cost))

    def _ask(self, ask, chosen: list, max_new: int, now: float) -> Iterator:
        """Prefill the recalled key frames (time order) then the question. When the GPU runs out of
        memory, retry with the better half. Returns the answer's first token (or the logits to pick
        it from: `_prefill`), what was recalled and where to crop."""
        wanted, used = len(chosen), []

        def build() -> list[int]:
            used[:] = chosen if self.state.tokens else []  # a compaction may have emptied the cache
            return self.recall.turns(used) + ask() if used else ask()

        while True:
            turn = yield from self._turn_with_room(build, max_new, now)
            mark = Mark.take(self.state, self.runner, self.sampler) if used else None
            try:
                embeds = self.recall.upload(used) if used else None
                first = yield from self._prefill(turn, Recall.grids(used), embeds, self._first(False, max_new))
            except torch.OutOfMemoryError:
                if not used:
                    raise
                self.runner.crop(mark.cache_length)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                chosen = chosen[:len(used) // 2]
                continue
            note = f"GPU memory ran out while recalling: {len(used)} of {wanted} key frames" if len(used) < wanted else ""
            return first, Recalled(in_time_order(used), note), mark

    def _forget_recall(self, mark: Mark, ask, tokens: list[int]) -> Iterator:
        """Crop the recalled video out of the cache, then re-append the question and its answer."""
        mark.rewind(self.state, self.runner, self.sampler)
        if self.trace is not None:
            self.trace[:] = [(i, logits) for i, logits in self.trace if i < mark.n_tokens]
        yield from self._prefill(ask() + tokens[:-1], [], None)
        self.state.pending = tokens[-1]
