"""Visual memory units (issue 10, acceptance 1 and 2): clustering and bounds on synthetic
embedding streams; the router's strategies, token budget and named times."""

from __future__ import annotations

import pytest
import torch

from engine.session.context import KeptChunk
from engine.session.memory import KeyFrameMemory
from engine.session.router import Router, named_time

HIDDEN = 32
GRID = (1, 4, 4)  # 4 merged tokens a chunk
TOKENS = 4
FRAME_BYTES = TOKENS * HIDDEN * 4  # float32


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest (conftest)


def chunk(i: int, embeds: torch.Tensor, seconds: float = 1.0) -> KeptChunk:
    return KeptChunk(i, i * seconds, (i + 1) * seconds, [], GRID, embeds, [7, 8])


_SCENES = torch.randn(12_000, TOKENS, HIDDEN, generator=torch.Generator().manual_seed(0))
_NOISE = torch.randn(10_000, TOKENS, HIDDEN, generator=torch.Generator().manual_seed(1))


def scene(seed: int) -> torch.Tensor:
    return _SCENES[seed]


def noisy(base: torch.Tensor, seed: int, scale: float = 0.05) -> torch.Tensor:
    return base + scale * _NOISE[seed]


def test_a_static_scene_gives_a_handful_of_key_frames():
    memory = KeyFrameMemory(max_bytes=100 * FRAME_BYTES)
    base = scene(0)
    for i in range(1800):  # half an hour of a static webcam, 1 s chunks with sensor noise
        memory.add(chunk(i, noisy(base, i)))
    assert 1 <= len(memory) <= 3
    assert memory.frames[0].start == 0.0 and memory.frames[-1].end == 1800.0
    assert sum(f.chunks for f in memory.frames) == 1800


def test_alternating_scenes_give_a_bounded_count():
    memory = KeyFrameMemory(max_bytes=20 * FRAME_BYTES)
    scenes = [scene(1), scene(2)]
    counts = []
    for i in range(2000):  # two cameras cut every 5 s
        memory.add(chunk(i, noisy(scenes[(i // 5) % 2], i)))
        counts.append(len(memory))
    assert max(counts) <= 20
    assert counts[-1] == 20  # 400 cuts, so the bound, not the scenes, decides the count
    assert memory.covers(0.0, 2000.0)


def stream_10k(max_frames: int, chunks: int = 10_000) -> tuple[KeyFrameMemory, list[int]]:
    memory = KeyFrameMemory(max_bytes=max_frames * FRAME_BYTES)
    peak = []
    for i in range(chunks):  # a scene change every 1-6 chunks: every chunk a new key frame or a join
        memory.add(chunk(i, noisy(scene(i // (1 + i % 6)), i)))
        peak.append(memory.nbytes)
    return memory, peak


def test_10k_chunks_stay_in_the_byte_bound_cover_every_second_and_are_deterministic():
    memory, sizes = stream_10k(50)
    assert max(sizes) <= 50 * FRAME_BYTES
    assert memory.nbytes == sum(f.nbytes for f in memory.frames)
    assert len(memory) == 50
    assert memory.covers(0.0, 10_000.0)  # no second forgotten: the spans tile the whole stream
    for a, b in zip(memory.frames, memory.frames[1:]):
        assert a.end <= b.start + 1e-9 and a.start < a.end
    again, _ = stream_10k(50, chunks=2_000)
    memory, _ = stream_10k(50, chunks=2_000)
    assert [(f.start, f.end, f.chunks) for f in again.frames] == [(f.start, f.end, f.chunks) for f in memory.frames]
    assert all(torch.equal(a.embeds, b.embeds) for a, b in zip(again.frames, memory.frames))


def test_count_bound_and_host_copies():
    memory = KeyFrameMemory(max_bytes=10**9, max_key_frames=5)
    source = scene(3)
    for i in range(12):
        memory.add(chunk(i, scene(100 + i) if i else source))
    assert len(memory) == 5 and memory.covers(0.0, 12.0)
    assert memory.frames[0].embeds.data_ptr() != source.data_ptr()  # a copy: the window's tensor may be reused


# -- router ------------------------------------------------------------------------------------
WIDE = 256  # router tests: random directions in 256 dims are nearly orthogonal (cosine ~0.06)
_WIDE = torch.randn(400, TOKENS, WIDE, generator=torch.Generator().manual_seed(2))


def direction_of(seed: int) -> torch.Tensor:
    return _WIDE[300 + seed, 0]


def build_memory(n: int, target: int, direction: torch.Tensor) -> KeyFrameMemory:
    """n key frames of random scenes, 10 s each; key frame `target` shows `direction` everywhere."""
    memory = KeyFrameMemory(max_bytes=10**9, match_ratio=0.99)
    for i in range(n):
        embeds = direction.expand(TOKENS, WIDE) + 0.3 * _WIDE[i] if i == target else _WIDE[i]
        memory.add(chunk(i, embeds, seconds=10.0))
    assert len(memory) == n
    return memory


def embedder(direction: torch.Tensor):
    """The question embeds as its words: one of them is the target's direction, the others unrelated."""
    def embed(text: str) -> torch.Tensor:
        words = _WIDE[399].clone()
        if "whiteboard" in text:
            words[2] = direction
        return words
    return embed


@pytest.mark.parametrize("strategy", ["cos_sim_coarse", "cos_sim_fine"])
def test_the_matching_key_frame_ranks_first(strategy):
    direction = direction_of(77)
    memory = build_memory(12, target=4, direction=direction)
    router = Router(strategy, topk=3, embed=embedder(direction))
    routed = router.route(memory, "What is on the whiteboard?", now=120.0, before=1e9, budget=10**6,
                          cost=lambda f: f.n_tokens)
    assert routed.frames[0] is memory.frames[4] and len(routed.frames) == 3


def test_recent_and_none_strategies():
    memory = build_memory(6, target=0, direction=direction_of(5))
    recent = Router("recent", 2, embedder(direction_of(5))).route(memory, "anything", 60.0, 1e9, 10**6, lambda f: 1)
    assert recent.frames == [memory.frames[5], memory.frames[4]]
    assert not Router("none", 8, embedder(direction_of(5))).route(memory, "x", 60.0, 1e9, 10**6, lambda f: 1).frames


def test_top_k_respects_the_token_budget_and_the_cache():
    direction = direction_of(9)
    memory = build_memory(10, target=2, direction=direction)
    router = Router("cos_sim_fine", topk=8, embed=embedder(direction))
    routed = router.route(memory, "What is on the whiteboard?", 100.0, before=1e9, budget=35, cost=lambda f: 10)
    assert len(routed.frames) == 3 and routed.frames[0] is memory.frames[2]
    only_old = router.route(memory, "What is on the whiteboard?", 100.0, before=25.0, budget=10**6, cost=lambda f: 1)
    assert {f.start for f in only_old.frames} == {0.0, 10.0, 20.0}  # the rest is still in the cache


@pytest.mark.parametrize("question, now, expected", [
    ("What was on screen at 2:30?", 600.0, 150.0),
    ("what happened at 1:02:03", 9000.0, 3723.0),
    ("What did he say two minutes ago?", 600.0, 480.0),
    ("and 30 seconds ago?", 100.0, 70.0),
    ("What colour was the car at the start?", 600.0, 0.0),
    ("Who was there in the beginning?", 600.0, 0.0),
    ("what is at 95 s", 600.0, 95.0),
    ("What is on the whiteboard?", 600.0, None),
])
def test_named_times(question, now, expected):
    assert named_time(question, now) == expected


def test_a_question_naming_a_time_recalls_the_key_frames_at_that_time():
    direction = direction_of(11)
    memory = build_memory(60, target=3, direction=direction)  # 10 min of 10 s key frames
    router = Router("cos_sim_fine", topk=2, embed=embedder(direction))
    routed = router.route(memory, "What is on the whiteboard at 2:35?", 600.0, 1e9, 10**6, lambda f: 1)
    assert routed.named_time == 155.0
    assert routed.frames == [memory.frames[15], memory.frames[16]]  # 150-160 s holds it, then the nearest
    start = router.route(memory, "What is on the whiteboard at the beginning?", 600.0, 1e9, 10**6, lambda f: 1)
    assert start.frames[0] is memory.frames[0]
