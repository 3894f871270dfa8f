"""Bounded context (issue 6, acceptance 2): after a compaction the cache holds exactly the compact
conversation the policy says it keeps, and streaming on from it equals a one-shot forward over
that conversation. Questions after a compaction see the kept window and the text memory."""

from __future__ import annotations

import pytest
import torch

from engine.session.context import KeptChunk, TextMemory, VideoWindow
from engine.session.events import Answer, Commentary, Compaction, Stats
from engine.capture.frames import Frame, RingBuffer
from engine.model.rope import segment_positions
from engine.session.session import SessionConfig, StreamingSession
from test_streaming_equivalence import TOL, RecordingRunner
from videos import synthetic_frame

SIDE = 56
QUESTION = "What moves on the screen?"


def small_config(**overrides) -> SessionConfig:
    """56x56 frames (4 visual tokens a chunk), a 400-token budget: a compaction every few chunks."""
    base = dict(max_pixels=SIDE * SIDE, min_pixels=SIDE * SIDE, max_new_tokens=4, answer_max_new_tokens=8,
                kv_budget=400, video_window_s=3.0, memory_tokens=48)
    return SessionConfig(**base | overrides)


def filled_buffer(seconds: float) -> RingBuffer:
    buffer = RingBuffer(4096)
    for i in range(int(seconds * 2)):
        buffer.put(Frame(synthetic_frame(i * 0.5, SIDE, SIDE), i * 0.5))
    buffer.close()
    return buffer


def run_until_compaction(session: StreamingSession, buffer: RingBuffer) -> tuple[list, Compaction]:
    """Process chunks up to and including the first one that compacts; return all events."""
    events: list = []
    while True:
        chunk = session.frames.take(buffer, False, 2.0)
        assert chunk is not None, "the stream ended before any compaction"
        events += list(session.process_chunk(chunk, buffer))
        compactions = [e for e in events if isinstance(e, Compaction)]
        if compactions:
            return events, compactions[0]


def closing(tok, reply: list[int]) -> str:
    return "\n" if reply[-1] == tok.convert_tokens_to_ids("<|im_end|>") else "<|im_end|>\n"


def chunk_user(chunk) -> str:
    video = "<|vision_start|>" + "<|video_pad|>" * chunk.n_video_tokens + "<|vision_end|>"
    return f"Time={chunk.start:.1f}-{chunk.end:.1f}s{video}"


def expected_compact_text(tok, plan) -> str:
    """The compact conversation written out from the kept structure (not by the session's builder)."""
    first, rest = plan.chunks[0], plan.chunks[1:]
    memory = "\n".join(f"[{e.time:.1f}s] {e.text}" for e in plan.memory)
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{chunk_user(first)}Please describe the video.\n\n{memory}<|im_end|>\n"
            f"<|im_start|>assistant\n{tok.decode(first.reply)}")
    previous = first.reply
    for chunk in rest:
        text += (closing(tok, previous) + f"<|im_start|>user\n{chunk_user(chunk)}<|im_end|>\n"
                 f"<|im_start|>assistant\n{tok.decode(chunk.reply)}")
        previous = chunk.reply
    return text


def one_shot_logits(loaded, tokens: list[int], videos: list) -> torch.Tensor:
    ids = torch.tensor(tokens)
    grids = [tuple(int(v) for v in video.video_grid_thw[0]) for video in videos]
    positions, _ = segment_positions(ids, grids, 0, loaded.model.config.video_token_id)
    with torch.inference_mode():
        out = loaded.model(input_ids=ids[None], position_ids=positions[:, None, :],
                           pixel_values_videos=torch.cat([v.pixel_values_videos for v in videos]),
                           video_grid_thw=torch.cat([v.video_grid_thw for v in videos]))
    return out.logits[0].float()


def test_compaction_keeps_what_the_policy_says_and_equals_one_shot(tiny_loaded):
    tok = tiny_loaded.tokenizer
    runner = RecordingRunner(tiny_loaded.model)
    session = StreamingSession(tiny_loaded, small_config(), runner=runner)
    session.trace = []
    events, compaction = run_until_compaction(session, filled_buffer(60))
    plan = session.context.last
    new_index = len(runner.videos) - 1  # the chunk whose step asked for room

    # What is kept: the window of chunks just before the new one, the memory of older comments.
    kept = [c.index for c in plan.chunks]
    assert kept == list(range(new_index - len(kept), new_index)) and kept[0] > 0
    assert plan.chunks[-1].end - plan.chunks[0].start <= session.config.video_window_s
    comments = [e for e in events if isinstance(e, Commentary) and e.chunk_index < kept[0] and e.text]
    remembered = [(c.start, " ".join(c.text.split())) for c in comments]
    assert [(e.time, e.text) for e in plan.memory] == remembered[-len(plan.memory):]
    assert plan.memory, "the evicted chunks' comments should be in the text memory"

    # The cache holds exactly that conversation, the last reply's token pending and closed by the new chunk.
    assert compaction.tokens_before > compaction.tokens_after
    compact = expected_compact_text(tok, plan)
    assert tok.decode(session.state.tokens[:compaction.tokens_after + 1]) == compact
    new = [e for e in events if isinstance(e, Commentary)][-1]
    last_reply = tok.decode(session.conversation_ids[-session.config.max_new_tokens:])
    assert tok.decode(session.conversation_ids).startswith(
        compact + closing(tok, plan.chunks[-1].reply) + f"<|im_start|>user\nTime={new.start:.1f}-{new.end:.1f}s")
    assert last_reply in tok.decode(session.conversation_ids)

    # Its logits, and the next chunk's prefill and decode steps, equal one forward over it.
    videos = [runner.videos[i] for i in kept] + [runner.videos[new_index]]
    reference = one_shot_logits(tiny_loaded, session.state.tokens, videos)
    assert len(session.trace) >= 1 + 1 + 3  # compaction prefill, chunk prefill, 3 decode steps
    worst = max((logits - reference[index]).abs().max().item() for index, logits in session.trace)
    assert worst < TOL, f"after compaction streaming differs from one-shot by {worst}"


def test_stats_and_events_after_compaction(tiny_loaded):
    session = StreamingSession(tiny_loaded, small_config())
    events, compaction = run_until_compaction(session, filled_buffer(60))
    stats = [e for e in events if isinstance(e, Stats)]
    assert events.index(compaction) < len(events) - 2  # before the chunk's Commentary and Stats
    assert stats[-1].compactions == 1 and stats[0].compactions == 0
    assert all(s.cache_tokens <= s.budget_tokens == 400 for s in stats)
    assert stats[-1].cache_tokens == session.runner.length < compaction.tokens_before
    assert compaction.ms > 0


def test_question_after_compaction_sees_memory_then_window(tiny_loaded):
    tok = tiny_loaded.tokenizer
    session = StreamingSession(tiny_loaded, small_config(answer_max_new_tokens=64, video_window_s=2.0))
    buffer = filled_buffer(60)
    run_until_compaction(session, buffer)  # so there is something in the memory
    while session.context.fits(session.runner.length, 40, 64):  # until a question must compact
        list(session.process_chunk(session.frames.take(buffer, False, 2.0), buffer))
    events = list(session.answer(QUESTION))
    assert isinstance(events[0], Compaction) and events[-1].done and isinstance(events[-1], Answer)
    text = tok.decode(session.state.tokens)
    plan = session.context.last
    memory_at = text.index("\n".join(e.line() for e in plan.memory))
    window_at = text.index(chunk_user(plan.chunks[-1]))
    question_at = text.index(f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert memory_at < window_at < question_at
    # The answer joins the memory: the next compaction carries the question and its answer.
    while session.state.compactions < 3:
        list(session.process_chunk(session.frames.take(buffer, False, 2.0), buffer))
    assert f"Q: {QUESTION} A: " in tok.decode(session.state.tokens)


def test_reset_forgets_window_and_memory(tiny_loaded):
    session = StreamingSession(tiny_loaded, small_config())
    run_until_compaction(session, filled_buffer(60))
    assert len(session.context.window) and len(session.context.memory)
    session.clear()
    assert not len(session.context.window) and not len(session.context.memory) and session.context.last is None
    assert session.runner.length == 0 and session.conversation_ids == []


def test_text_memory_is_bounded_in_tokens_and_skips_kept_chunks(tiny_loaded):
    tok = tiny_loaded.tokenizer
    encode = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    memory = TextMemory(max_tokens=40, encode=encode, decode=tok.decode, max_entries=8)
    memory.add_answer(3.5, "Who?", "the man")
    for i in range(20):
        memory.add(float(i), f"the man runs   left\n{i}", chunk_index=i)
    memory.add(19.5, "")  # silence is not remembered
    assert len(memory) == 8  # bounded in entries: the answer at 3.5 s has scrolled out
    memory.add_answer(19.5, "Who?", "the man " * 40)
    picked = memory.recent(exclude_chunks={18, 19})
    answer = picked[-1]
    assert answer.chunk_index is None and answer.text.startswith("Q: Who? A: the man") and answer.n_tokens <= 20
    comments = [e.chunk_index for e in picked[:-1]]
    assert comments and comments == list(range(18 - len(comments), 18))  # the newest not in the window
    assert len(encode("\n".join(e.line() for e in picked))) <= 40
    assert picked[0].text == f"the man runs left {picked[0].chunk_index}"  # one line per entry


def test_video_window_keeps_the_last_seconds():
    window = VideoWindow(seconds=3.0, max_chunks=5)
    for i in range(10):
        window.add(KeptChunk(i, float(i), i + 1.0, [], (1, 2, 2), torch.zeros(1, 4), [1]))
    assert [c.index for c in window.recent(now=10.0)] == [7, 8, 9]
    assert len(window) == 3


def test_budget_too_small_for_the_memory_and_an_answer_is_refused():
    with pytest.raises(ValueError, match="kv_budget"):
        SessionConfig(kv_budget=1000, memory_tokens=512, answer_max_new_tokens=512)


def test_stop_during_an_answer_reports_it_unfinished(tiny_loaded):
    from engine.session.events import Answer
    from engine.capture.frames import Frame, RingBuffer
    from engine.session.session import SessionConfig, StreamingSession
    from videos import synthetic_frame

    session = StreamingSession(tiny_loaded, SessionConfig(max_pixels=56 * 56, min_pixels=28 * 28,
                                                          answer_max_new_tokens=64))
    buffer = RingBuffer(16)
    for i in range(6):
        buffer.put(Frame(synthetic_frame(i * 0.5, 56, 56), i * 0.5))
    list(session.process_chunk(session.frames.take(buffer, False, 2.0), buffer))
    answers = []
    for event in session.answer("What moves?"):
        answers.append(event)
        if len(answers) == 2:
            session.stop()
    last = answers[-1]
    assert isinstance(last, Answer) and not last.done and len(answers) <= 4
    assert not any("What moves?" in entry.line() for entry in session.context.memory.recent(set()))
