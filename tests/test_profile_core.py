"""benchmarks/profile_core.py's timeline: every engine step recorded with what it ran, and the steps
behind late captions told apart from the rest (what the next engineer looks at for the tail)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def profile_core(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import profile_core

    return profile_core


def test_the_timeline_records_each_step_and_restores_the_core(profile_core, tiny_loaded):
    import bench_streams
    from bench_engine import SyntheticSource

    from engine.capture.frames import RingBuffer
    from engine.core.batched import BatchedRunner
    from engine.core.engine import EngineCore
    from engine.session.events import Commentary, Stats

    from engine.runtime.graphs import CUDAGraphed

    def methods():
        return (EngineCore._run_requests, BatchedRunner.decode, BatchedRunner.prefill, BatchedRunner._pass,
                BatchedRunner.encode, CUDAGraphed._capture, EngineCore._wait_on)

    originals = methods()
    timeline = profile_core.Timeline()
    said, chunks = [], []

    def on_event(event):
        if isinstance(event, Commentary):
            said.append(event)
        elif isinstance(event, Stats):
            chunks.append(event)

    with timeline.recording():
        core = EngineCore(tiny_loaded, sessions=2, kv_budget=1024)
        for k in range(2):
            buffer = RingBuffer(64)
            core.open(buffer, bench_streams.config(True, live=False), on_event)
            SyntheticSource(6.0, size=(112, 160)).start(buffer)
        assert all(now is not then for now, then in zip(methods(), originals))  # wrapped while recording
        core.run_until_done()
    assert methods() == originals
    steps = timeline.steps
    assert said and len(chunks) >= 2 and len(steps) >= 10
    assert [s["t"] for s in steps] == sorted(s["t"] for s in steps)
    assert all(s["host_ms"] >= 0 and s["gpu_ms"] is None for s in steps)  # no CUDA: no GPU time
    assert sum(s["vision"] for s in steps) == len(chunks)  # each chunk through the tower once
    assert sum(s["pieces"] for s in steps) >= len(chunks) and sum(s["rows"] for s in steps) >= len(said)
    assert any(s["rows"] and not s["pieces"] for s in steps) and any(s["pieces"] for s in steps)
    passes = [p for s in steps for p in s["passes"]]
    assert passes and all(p["graphed"] == 0.0 and p["tokens"] > 1 for p in passes)  # CPU: eager passes
    assert all(s["captures"] == 0 for s in steps)
    kinds = [kind for _, _, kind in timeline.waits]
    assert kinds.count("Encode") == len(chunks) and kinds.count("Decode") >= len(said)
    assert len({owner for _, owner, _ in timeline.waits}) == 2  # a plain on_event: each lane its own


def test_the_tail_compares_the_steps_behind_late_captions_with_the_rest(profile_core):
    def step(t, host, tokens, graphed=None):
        passes = [] if graphed is None else [{"tokens": tokens, "graphed": graphed}]
        return {"t": t, "host_ms": host, "gpu_ms": None, "rows": 4, "pieces": len(passes), "tokens": tokens,
                "passes": passes, "vision": 1, "captures": 1 if graphed == 0.0 else 0}

    steps = [step(0.5, 9.0, 0)]  # before the first counted chunk's capture: left out
    steps += [step(1.0 + 0.1 * k, 5.0, 400, 1.0) for k in range(10)]  # 1.0-1.9 s, on time
    steps += [step(2.0 + 0.1 * k, 30.0, 1200, 0.0) for k in range(5)]  # 2.0-2.4 s, behind the late caption
    comments = [{"captured": 1.0, "at": 1.3, "latency": 0.3}, {"captured": 2.0, "at": 2.6, "latency": 0.6}]
    report = profile_core.tail(steps, comments)
    assert report["comments"] == 2 and report["late_comments"] == 1
    assert report["late_captured_s"] == [1.0, 1.0]  # a second after the first counted chunk's capture
    late, on_time = report["late"], report["on_time"]
    assert late["steps"] == 5 and on_time["steps"] == 10
    assert late["mean_host_ms"] == 30.0 and on_time["mean_host_ms"] == 5.0
    assert late["mean_tokens"] == 1200 and late["eager_passes"] == 5 and on_time["eager_passes"] == 0
    assert late["captures"] == 5 and on_time["captures"] == 0
    assert report["steps_per_s"] == round(15 / 1.4, 1)


def test_the_stages_split_each_comments_latency_by_its_sessions_requests(profile_core):
    # stream 0: captured at 0.0; asks vision at 0.2, prefill at 0.3, its first decode at 0.4; comment at 0.45
    waits = [(0.2, 0, "Encode"), (0.3, 0, "Prefill"), (0.4, 0, "Decode"), (0.5, 0, "IDLE"),
             (1.1, 0, "Encode"), (1.3, 0, "Prefill"), (1.4, 0, "Decode"), (1.5, 0, "Decode"), (1.6, 0, "IDLE"),
             # stream 1: captured at 1.0, its session busy until 1.5; vision 0.1, prefill 0.1, decode 0.3
             (1.5, 1, "Encode"), (1.6, 1, "Prefill"), (1.7, 1, "Prefill"), (1.7, 1, "Decode"),
             (1.8, 1, "Decode"), (1.9, 1, "Decode"), (2.0, 1, "IDLE")]
    comments = [{"stream": 1, "captured": 1.0, "at": 2.0, "latency": 1.0},
                {"stream": 0, "captured": 0.0, "at": 0.45, "latency": 0.45}]  # stream 0's next: not counted
    report = profile_core.stages(comments, waits)
    late, on_time = report["late"], report["on_time"]
    assert late["comments"] == 1 and on_time["comments"] == 1
    assert on_time["wait_ms"]["p50"] == 200.0 and on_time["vision_ms"]["p50"] == 100.0
    assert on_time["prefill_ms"]["p50"] == 100.0 and on_time["decode_ms"]["p50"] == 50.0
    assert on_time["decodes_p50"] == 1  # the stream's later requests are not this comment's
    assert late["wait_ms"]["p50"] == 500.0 and late["vision_ms"]["p50"] == 100.0
    assert late["prefill_ms"]["p50"] == 100.0  # its first prefill request to its first decode request
    assert late["decode_ms"]["p50"] == 300.0 and late["decodes_p50"] == 3
