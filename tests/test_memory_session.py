"""Visual memory end to end on the tiny model (issue 10, acceptance 3, 4 and 6): a 10-minute
stream of distinct segments in a budget that compacts the early ones away; a question recalls
the routed key frames as `Time=` turns with exact positions, and after its answer the recalled
video is cropped out of the cache. The off switch emits the tokens of the code before memory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.capture.frames import Frame, RingBuffer
from engine.model.rope import segment_positions
from engine.runtime.fast import StaticRunner
from engine.runtime.reference import EagerRunner
from engine.session.events import Answer, Compaction
from engine.session.session import SessionConfig, StreamingSession
from memory_scenarios import off_switch_config, run_with_questions
from test_streaming_equivalence import TOL

SIDE = 56  # 4 visual tokens a chunk
SEGMENT_S = 60
MINUTES = 10
QUESTION = "What colour was the circle at 2:30?"
GOLDEN = Path(__file__).parent / "data" / "no_memory_tokens.json"


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest (conftest)


class ShadowRunner(EagerRunner):
    """The reference runner, keeping the token ids and video embeddings its cache holds (cropped with it)."""

    def __init__(self, model):
        super().__init__(model)
        self.ids: list[int] = []
        self.videos: list[tuple[int, torch.Tensor]] = []  # (index of the segment's first id, embeddings)

    def reset(self):
        super().reset()
        self.ids, self.videos = [], []

    def crop(self, length):
        super().crop(length)
        del self.ids[length:]
        self.videos = [(at, e) for at, e in self.videos if at < length]

    def prefill(self, ids, positions, video_embeds):
        if video_embeds is not None:
            self.videos.append((len(self.ids), video_embeds))
        self.ids += ids.tolist()
        return super().prefill(ids, positions, video_embeds)

    def decode(self, token, position):
        self.ids.append(token)
        return super().decode(token, position)


def segment_frame(t: float) -> np.ndarray:
    """Minute k: its own background colour and a circle in its own place."""
    k = int(t // SEGMENT_S)
    img = np.full((SIDE, SIDE, 3), ((k * 97) % 256, (k * 53 + 80) % 256, (255 - k * 29) % 256), np.uint8)
    cv2.circle(img, (8 + 4 * k, 8 + 3 * k), 6, (255, 255, 255), -1)
    return img


def memory_config(**overrides) -> SessionConfig:
    base = dict(max_pixels=SIDE * SIDE, min_pixels=SIDE * SIDE, max_new_tokens=2, answer_max_new_tokens=6,
                kv_budget=400, video_window_s=3.0, memory_tokens=48, topk=3, key_frame_match_ratio=0.9999)
    return SessionConfig(**base | overrides)


def stream_minutes(session: StreamingSession, seconds: float) -> RingBuffer:
    buffer = RingBuffer(4096)
    for i in range(int(seconds * 2)):
        buffer.put(Frame(segment_frame(i * 0.5), i * 0.5))
    buffer.close()
    return buffer


def watch_until(session, buffer, t: float) -> None:
    """Process chunks until one ending at or after `t` compacted (so the next steps have room)."""
    while True:
        chunk = session.frames.take(buffer, False, 2.0)
        events = list(session.process_chunk(chunk, buffer))
        if chunk.end >= t and any(isinstance(e, Compaction) for e in events):
            return


def one_shot(loaded, runner: ShadowRunner) -> torch.Tensor:
    """Logits of every position of one forward over what the runner's cache holds."""
    vid = loaded.model.config.video_token_id
    ids = torch.tensor(runner.ids)
    runs, n = [], 0
    for token in runner.ids + [-1]:
        if token == vid:
            n += 1
        elif n:
            runs.append((n // 4, 4, 4))  # 56x56: 4x4 patches, 2x2 merged tokens per temporal patch
            n = 0
    positions, _ = segment_positions(ids, runs, 0, vid)
    embeds = torch.cat([e for _, e in runner.videos])
    return EagerRunner(loaded.model).forward(ids, positions, embeds, all_logits=True)


def worst(trace, reference, since: int) -> float:
    diffs = [(logits - reference[i]).abs().max().item() for i, logits in trace if i >= since]
    assert diffs, "nothing traced"
    return max(diffs)


def recall_text(tok, frames) -> str:
    """The recalled key frames written out in LiveCC's chunk-turn format."""
    out = ""
    for f in frames:
        reply = tok.decode(f.reply)
        close = "\n" if f.reply[-1] == tok.convert_tokens_to_ids("<|im_end|>") else "<|im_end|>\n"
        out += (f"<|im_start|>user\nTime={f.start:.1f}-{f.end:.1f}s<|vision_start|>" + "<|video_pad|>" * f.n_tokens
                + f"<|vision_end|><|im_end|>\n<|im_start|>assistant\n{reply}{close}")
    return out


def test_ask_recalls_the_routed_key_frames_then_crops_them_out(tiny_loaded):
    tok = tiny_loaded.tokenizer
    runner = ShadowRunner(tiny_loaded.model)
    session = StreamingSession(tiny_loaded, memory_config(), runner=runner)
    buffer = stream_minutes(session, MINUTES * 60 + 20)
    watch_until(session, buffer, MINUTES * 60)
    assert session.context.video_from > 500  # the early minutes left the cache long ago
    memory = session.recall.memory
    assert MINUTES - 1 <= len(memory) <= MINUTES + 1  # one key frame per static minute
    before, pending = list(runner.ids), session.state.pending
    routed = session._choose(QUESTION, session.frames.next_time, 40)
    session.trace = []
    first = None
    events = []
    for event in session.answer(QUESTION):
        events.append(event)
        if first is None:
            first = (list(runner.ids), list(runner.videos), list(session.trace))
    answer = events[-1]
    assert isinstance(answer, Answer) and answer.done and not answer.note

    # Exactly the routed key frames went in, in time order; the one holding 2:30 among them.
    in_order = sorted(routed, key=lambda f: f.start)
    assert answer.recalled == tuple((f.start, f.end) for f in in_order)
    assert any(s <= 150 < e for s, e in answer.recalled) and len(answer.thumbnails) == len(routed)
    ids, videos, trace = first
    close = "\n" if pending == tok.convert_tokens_to_ids("<|im_end|>") else "<|im_end|>\n"
    expected = (tok.decode(before + [pending]) + close + recall_text(tok, in_order)
                + f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    assert tok.decode(ids) == expected

    # The answer's first logits equal one forward over that conversation.
    shadow = ShadowRunner(tiny_loaded.model)
    shadow.ids, shadow.videos = ids, videos
    assert worst(trace, one_shot(tiny_loaded, shadow), len(before)) < TOL

    # Afterwards the cache holds the question and answer but not the recalled video ...
    after = tok.decode(runner.ids)
    assert after.startswith(tok.decode(before + [pending]) + close + f"<|im_start|>user\n{QUESTION}<|im_end|>\n")
    assert "Time=150" not in after and after.count("<|vision_start|>") == tok.decode(before).count("<|vision_start|>")
    assert session.context.memory.recent(set())[-1].text.startswith("Q: What colour")  # the text memory has it

    # ... and the next chunk's logits equal one forward over the conversation without it.
    session.trace = []
    events = list(session.process_chunk(session.frames.take(buffer, False, 2.0), buffer))
    assert not any(isinstance(e, Compaction) for e in events)
    assert worst(session.trace, one_shot(tiny_loaded, runner), len(before)) < TOL


class OutOfMemoryRunner(EagerRunner):
    """Once `tight`, a GPU that runs out of memory when more than one video block comes at once."""

    tight = False

    def prefill(self, ids, positions, video_embeds):
        if self.tight and int((ids == self.model.config.vision_start_token_id).sum()) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return super().prefill(ids, positions, video_embeds)


def test_out_of_memory_while_recalling_drops_key_frames_and_goes_on(tiny_loaded):
    runner = OutOfMemoryRunner(tiny_loaded.model)
    session = StreamingSession(tiny_loaded, memory_config(), runner=runner)
    buffer = stream_minutes(session, 3 * 60 + 20)
    watch_until(session, buffer, 3 * 60)
    runner.tight = True
    answer = list(session.answer("What was there at the start?"))[-1]
    assert answer.done and len(answer.recalled) == 1
    assert re.fullmatch(r"GPU memory ran out while recalling: 1 of [23] key frames", answer.note)
    assert answer.recalled[0][0] == 0.0  # the better half: the key frame at the named time
    # The repetition penalty saw what the cache holds, not the prefill that ran out of memory.
    assert set(session.sampler.seen.nonzero().flatten().tolist()) == set(session.state.tokens)
    events = list(session.process_chunk(session.frames.take(buffer, False, 2.0), buffer))
    assert any(type(e).__name__ == "Commentary" for e in events)


def test_a_question_with_empty_memory_answers_from_the_context_as_before(tiny_loaded):
    answers = []
    for memory in (True, False):
        session = StreamingSession(tiny_loaded, memory_config(memory=memory))
        buffer = stream_minutes(session, 8)
        for _ in range(3):
            list(session.process_chunk(session.frames.take(buffer, False, 2.0), buffer))
        answers.append((list(session.answer(QUESTION))[-1], session.conversation_ids))
    (with_memory, ids_on), (without, ids_off) = answers
    assert with_memory.recalled == () and not with_memory.note
    assert with_memory.text == without.text and ids_on == ids_off


def test_no_memory_emits_the_tokens_of_the_code_before_memory(tiny_loaded):
    golden = json.loads(GOLDEN.read_text())
    got = run_with_questions(tiny_loaded, off_switch_config(memory=False))
    assert got["conversation_ids"] == golden["conversation_ids"]
    assert got["answers"] == golden["answers"] and got["comments"] == golden["comments"]
    on = run_with_questions(tiny_loaded, off_switch_config(key_frame_match_ratio=1.0))
    assert on["comments"] == golden["comments"]  # memory changes answers only
    assert any(on["recalled"]), "the scenario should recall something with memory on"


def test_fast_runner_recalls_and_crops_like_the_reference(tiny_loaded):
    config = off_switch_config(key_frame_match_ratio=1.0)
    fast = run_with_questions(tiny_loaded, config, runner=StaticRunner(tiny_loaded.model, 512))
    ref = run_with_questions(tiny_loaded, config, runner=EagerRunner(tiny_loaded.model))
    assert any(ref["recalled"])
    assert fast == ref
