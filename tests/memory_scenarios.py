"""Shared scenarios for the visual-memory tests: a small stream that compacts often, with
questions, whose tokens can be compared across code versions."""

from __future__ import annotations

from engine.capture.frames import Frame, RingBuffer
from engine.session.session import SessionConfig, StreamingSession
from videos import synthetic_frame

SIDE = 56
QUESTIONS = {6: "What moves on the screen?", 14: "What colour was the circle at the start?"}


def off_switch_config(**overrides) -> SessionConfig:
    base = dict(max_pixels=SIDE * SIDE, min_pixels=SIDE * SIDE, max_new_tokens=4, answer_max_new_tokens=8,
                kv_budget=400, video_window_s=3.0, memory_tokens=48)
    return SessionConfig(**base | overrides)


def run_with_questions(loaded, config: SessionConfig, seconds: int = 24, runner=None) -> dict:
    """Chunks of a 24 s stream with two questions; the conversation ids and every answer text."""
    session = StreamingSession(loaded, config, runner=runner)
    buffer = RingBuffer(4096)
    for i in range(seconds * 2):
        buffer.put(Frame(synthetic_frame(i * 0.5, SIDE, SIDE), i * 0.5))
    buffer.close()
    answers, comments, recalled, n = [], [], [], 0
    for chunk in iter(lambda: session.frames.take(buffer, False, 2.0), None):
        events = list(session.process_chunk(chunk, buffer))
        comments += [e.text for e in events if type(e).__name__ == "Commentary"]
        n += 1
        if n in QUESTIONS:
            final = [e for e in session.answer(QUESTIONS[n]) if type(e).__name__ == "Answer"][-1]
            answers.append(final.text)
            recalled.append(list(getattr(final, "recalled", ())))
    return {"conversation_ids": session.conversation_ids, "answers": answers, "comments": comments,
            "compactions": session.state.compactions, "recalled": recalled}
