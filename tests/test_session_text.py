"""What a user types into a session (questions, instructions) is refused on the caller's thread when
the session cannot take it, and a question that cannot fit is answered with a note: the stream goes
on either way. Also: a long video window holds no more than a compaction could keep."""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch

from engine.capture.frames import Frame, RingBuffer
from engine.defaults import MAX_TEXT_CHARS, MAX_WAITING_QUESTIONS
from engine.session.context import ContextBudgetError, KeptChunk, VideoWindow
from engine.session.events import Answer, Commentary
from engine.session.session import SessionConfig, StreamingSession
from engine.session.text import TextError, checked_text
from videos import synthetic_frame


def small_config(**overrides) -> SessionConfig:
    settings = dict(max_pixels=112 * 84, min_pixels=28 * 28, max_new_tokens=6, answer_max_new_tokens=8,
                    memory_tokens=32, kv_budget=4096)
    return SessionConfig(**(settings | overrides))


def closed_buffer(seconds: float) -> RingBuffer:
    n = int(seconds * 2)
    buffer = RingBuffer(n + 1)
    for i in range(n):
        buffer.put(Frame(synthetic_frame(i * 0.5, 112, 84), i * 0.5))
    buffer.close()
    return buffer


def test_text_a_session_cannot_take_is_refused_with_the_reason():
    assert checked_text("what is on the table?", "the question") == "what is on the table?"
    for text, says in (("x" * (MAX_TEXT_CHARS + 1), f"over {MAX_TEXT_CHARS}"), ("why\ud800", "not valid Unicode"),
                       (7, "must be text")):
        with pytest.raises(TextError, match=says):
            checked_text(text, "the question")


def test_too_many_waiting_questions_are_refused_and_a_stopped_session_answers_none(tiny_loaded):
    """A server's sessions cap the questions waiting (a client queued 20,000); the evaluation asks
    every probe due at a chunk at once, so a session has no cap unless its config sets one."""
    uncapped = StreamingSession(tiny_loaded, small_config())
    for i in range(3 * MAX_WAITING_QUESTIONS):
        uncapped.ask(f"probe {i}?")
    session = StreamingSession(tiny_loaded, small_config(max_waiting_questions=MAX_WAITING_QUESTIONS))
    for i in range(MAX_WAITING_QUESTIONS):
        session.ask(f"question {i}?")
    with pytest.raises(TextError, match=f"{MAX_WAITING_QUESTIONS} questions are waiting"):
        session.ask("one more?")
    with pytest.raises(TextError, match="over"):
        session.set_query("x" * (MAX_TEXT_CHARS + 1))
    session.stop()  # the client left: the questions it queued are dropped, not answered one by one
    events = list(session.run(closed_buffer(2)))
    assert not [e for e in events if isinstance(e, Answer)]


def test_a_question_too_long_for_the_budget_is_answered_with_a_note_and_the_stream_goes_on(tiny_loaded):
    session = StreamingSession(tiny_loaded, small_config(kv_budget=400, memory_tokens=16, answer_max_new_tokens=8))
    question = " ".join(["why is the red square moving left"] * 100)  # under the character cap, over the budget
    assert len(session.prompt.encode(question)) > 400
    buffer = closed_buffer(4)
    session.ask(question)
    events = list(session.run(buffer))
    answers = [e for e in events if isinstance(e, Answer)]
    assert len(answers) == 1 and answers[0].done and answers[0].text == ""
    assert "do not fit in the KV budget of 400 tokens" in answers[0].note
    alone = StreamingSession(tiny_loaded, small_config(kv_budget=400, memory_tokens=16, answer_max_new_tokens=8))
    chunks = lambda events: [e.chunk_index for e in events if isinstance(e, Commentary)]  # noqa: E731
    assert chunks(events) == chunks(alone.run(closed_buffer(4))) == [0, 1]  # every chunk still commented on
    failing = StreamingSession(tiny_loaded, small_config(kv_budget=400, memory_tokens=16, answer_max_new_tokens=8,
                                                          note_unfit_questions=False))
    failing.ask(question)  # the evaluation: that item fails with the reason, as the benchmark counts it
    with pytest.raises(ContextBudgetError):
        list(failing.run(closed_buffer(4)))


def test_after_the_end_answer_refuses_long_text_and_notes_what_does_not_fit(tiny_loaded):
    """`answer` (a file's questions after its end: the app, `livecc ask`, the evaluation) refuses
    text no session takes before any work, and answers a question over the budget with the note a
    question during the stream gets (the evaluation turns the note off: an error); the session
    still answers the next question."""
    session = StreamingSession(tiny_loaded, small_config(kv_budget=400, memory_tokens=16, answer_max_new_tokens=8))
    list(session.run(closed_buffer(2)))
    with pytest.raises(TextError, match=f"over {MAX_TEXT_CHARS}"):
        session.answer("x" * (MAX_TEXT_CHARS + 1))
    question = " ".join(["why is the red square moving left"] * 100)
    answers = [e for e in session.answer(question) if isinstance(e, Answer)]
    assert len(answers) == 1 and answers[0].done and answers[0].text == ""
    assert "do not fit in the KV budget of 400 tokens" in answers[0].note
    tokens = list(session.state.tokens)  # compacted first: the question would not fit even then
    session.config = dataclasses.replace(session.config, note_unfit_questions=False)
    with pytest.raises(ContextBudgetError):
        list(session.answer(question))
    assert session.state.tokens == tokens  # nothing of the unfit question stayed in the cache
    final = [e for e in session.answer("what colour?") if isinstance(e, Answer)][-1]
    assert final.done and final.text and not final.note


def kept(index: int, video_tokens: int, reply_tokens: int) -> KeptChunk:
    return KeptChunk(index, index * 1.0, index + 1.0, [0] * 4, (1, 2, 2), torch.zeros(video_tokens, 4),
                     [1] * reply_tokens, np.zeros((2, 2, 3), np.uint8))


def test_a_long_window_holds_no_more_than_a_compaction_could_keep():
    """A client's video_window_s of 1e9 s kept every chunk's embeddings for the whole session; the
    window now lets go (to the visual memory) what no compaction could keep."""
    left: list[int] = []
    window = VideoWindow(1e9, 10**9, lambda c: left.append(c.index), max_tokens=100)
    for i in range(6):
        window.add(kept(i, 30, 10))  # 40 tokens each: two fit in 100, three do not
    assert len(window) == 2 and left == [0, 1, 2, 3]
    assert [c.index for c in window.recent(6.0)] == [4, 5]
    window.add(kept(6, 200, 10))  # a chunk over the limit alone stays: the newest is always kept
    assert len(window) == 1 and left == [0, 1, 2, 3, 4, 5]
