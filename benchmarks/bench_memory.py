"""Visual-memory benchmark: one command, no download.

    python benchmarks/bench_memory.py [--seconds 90] [--out DIR]      # GPU, the 7B shape, random weights
    python benchmarks/bench_memory.py --smoke --out DIR                # CPU, the tiny model (CI)

Measures, on the LiveCC-7B shape with random bf16 weights (benchmarks/bench_engine.py builds them):
  1. memory after one hour of a changing 1080p stream: 3600 synthetic chunks of the real embedding
     shape (364 tokens x 3584, bf16, every chunk a new scene: the worst case) fed to the memory as
     fast as it takes them, instead of running 3600 chunks through the model; host and GPU bytes;
  2. routing time over that memory (cos_sim_coarse, cos_sim_fine; question embedded by the model);
  3. time to the first answer token with 8 recalled key frames, in a real session after 10 s of
     1080p video (and the same question recalling nothing);
  4. chunk time p99 of the real session on a 1080p stream with the memory fed (every chunk that
     leaves the video window, compactions included) against the same run with --no-memory.
Writes JSON and markdown to --out (and $OUT when set).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from bench_engine import (SyntheticSource, build_random, chunk_totals, device_label, pct, run_engine,  # noqa: E402
                          write_outputs)

from engine.capture.frames import RingBuffer  # noqa: E402
from engine.model.prompt import PromptBuilder  # noqa: E402
from engine.session.context import KeptChunk  # noqa: E402
from engine.session.events import Answer, Stats  # noqa: E402
from engine.session.recall import Recall  # noqa: E402
from engine.session.session import SessionConfig, StreamingSession  # noqa: E402

GRID_1080P = (1, 28, 52)  # 392x728 after smart_resize: 364 merged tokens
PARTIAL = "memory_partial.json"  # what is measured so far, should a later stage fail
QUESTIONS = ["What colour was the car at the start?", "What was written on the whiteboard?",
             "Who scored the goal?", "What happened two minutes ago?", "What is on the table at 12:30?"]


class Profile:
    """The sizes a run uses: the 7B shape on the GPU, or the tiny model on the CPU (--smoke)."""

    def __init__(self, smoke: bool):
        self.smoke = smoke
        self.device = "cpu" if smoke else "cuda"
        self.grid = (1, 4, 4) if smoke else GRID_1080P
        self.frame_size = (112, 160) if smoke else (1080, 1920)
        self.pixels = 112 * 112 if smoke else 384 * 28 * 28

    def sync(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def config(self, **overrides) -> SessionConfig:
        base = dict(ignore_eos=True, max_new_tokens=16, answer_max_new_tokens=32, max_pixels=self.pixels,
                    min_pixels=min(self.pixels, 100 * 28 * 28))
        if self.smoke:
            base.update(kv_budget=1400, memory_tokens=64, video_window_s=2.0, max_new_tokens=4)
        return SessionConfig(**base | overrides)


def synthetic_chunk(i: int, start: float, hidden: int, p: Profile, dtype) -> KeptChunk:
    t, h, w = p.grid
    embeds = torch.randn(t * h * w // 4, hidden, device=p.device, dtype=dtype)  # a new scene every chunk
    return KeptChunk(i, start, start + 1.0, [], p.grid, embeds, [1] * 16)


def host_bytes() -> dict:
    out = {"max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if torch.cuda.is_available() and hasattr(torch.cuda, "host_memory_stats"):
        stats = torch.cuda.host_memory_stats()
        out["pinned_reserved_gb"] = stats.get("reserved_bytes.current", 0) / 2**30
        out["pinned_allocated_gb"] = stats.get("allocated_bytes.current", 0) / 2**30
    return out


def one_hour(loaded, p: Profile, chunks: int) -> tuple[dict, Recall]:
    """Feed an hour of changing video's chunks to the memory at the defaults."""
    recall = Recall.for_model(loaded.model, PromptBuilder(loaded.tokenizer), p.config())
    hidden = loaded.model.config.text_config.hidden_size
    gpu_before = torch.cuda.memory_allocated() if p.device == "cuda" else 0
    times = []
    for i in range(chunks):
        chunk = synthetic_chunk(i, float(i), hidden, p, loaded.dtype)
        t0 = p.sync()
        recall.memory.add(chunk)
        times.append((p.sync() - t0) * 1e3)
        del chunk
    memory = recall.memory
    gpu = (torch.cuda.memory_allocated() - gpu_before) if p.device == "cuda" else memory.device_bytes()
    return {"chunks": chunks, "key_frames": len(memory), "host_gb": memory.nbytes / 2**30,
            "bound_gb": memory.max_bytes / 2**30, "index_gpu_mb": memory.device_bytes() / 2**20,
            "gpu_allocated_delta_mb": gpu / 2**20, "covers_the_hour": memory.covers(0.0, float(chunks)),
            "add_ms_p50": pct(times, 50), "add_ms_p99": pct(times, 99), **host_bytes()}, recall


def routing(recall: Recall, p: Profile, reps: int = 20) -> dict:
    out = {}
    for strategy in ("cos_sim_coarse", "cos_sim_fine"):
        recall.router.strategy = strategy
        times = []
        for r in range(reps + 2):
            t0 = p.sync()
            recall.choose(QUESTIONS[r % len(QUESTIONS)], 3600.0, 3600.0, 4096)
            if r >= 2:  # the first two warm up the tokenizer and kernels
                times.append((p.sync() - t0) * 1e3)
        out[strategy] = {"ms_p50": pct(times, 50), "ms_p99": pct(times, 99), "key_frames": len(recall.memory)}
    return out


def first_token(loaded, p: Profile, seconds: float) -> dict:
    """A real session: 64 key frames of past video in memory, `seconds` of 1080p streamed, then questions."""
    session = StreamingSession(loaded, p.config(topk=8))
    hidden = loaded.model.config.text_config.hidden_size
    for i in range(64):  # the past: video older than anything in the cache
        session.recall.memory.add(synthetic_chunk(i, -640.0 + 10 * i, hidden, p, loaded.dtype))
    buffer = RingBuffer(64)
    SyntheticSource(seconds, size=p.frame_size).start(buffer)
    for _ in session.run(buffer):
        pass

    def ask(question: str) -> tuple[float, Answer]:
        t0 = p.sync()
        events = session.answer(question)
        first = next(e for e in events if isinstance(e, Answer))
        ms = (p.sync() - t0) * 1e3
        last = [e for e in events if isinstance(e, Answer)]
        return ms, (last[-1] if last else first)

    session.recall.router.strategy = "none"
    ask("Warm up the answer path.")
    plain = [ask(QUESTIONS[i])[0] for i in range(3)]
    session.recall.router.strategy = "cos_sim_fine"
    recalled = [ask(QUESTIONS[i]) for i in range(3)]
    return {"ttft_ms_8_key_frames_p50": pct([ms for ms, _ in recalled], 50),
            "ttft_ms_no_recall_p50": pct(plain, 50),
            "key_frames_recalled": [len(a.recalled) for _, a in recalled],
            "cache_tokens_after": session.runner.length}


def run_session(loaded, p: Profile, seconds: float, config: SessionConfig) -> tuple[list[Stats], list[float]]:
    stats, stalls, _, _ = run_engine(loaded, seconds, config, size=p.frame_size)
    return stats, stalls


def chunk_p99(loaded, p: Profile, seconds: float) -> dict:
    out = {}
    run_session(loaded, p, min(seconds / 2, 10.0), p.config(memory=False))  # warm-up: graphs, kernels
    for name, memory in (("no_memory", False), ("memory", True)):
        stats, stalls = run_session(loaded, p, seconds, p.config(memory=memory))
        total = chunk_totals(stats, stalls)[1:]
        out[name] = {"chunks": len(stats), "compactions": stats[-1].compactions, "total_ms_p50": pct(total, 50),
                     "total_ms_p99": pct(total, 99), "key_frames": stats[-1].memory_key_frames,
                     "memory_mb": stats[-1].memory_mb}
    out["p99_ratio"] = out["memory"]["total_ms_p99"] / out["no_memory"]["total_ms_p99"]
    return out


def markdown(r: dict) -> str:
    h, rt, f, c = r["hour"], r["routing"], r["first_token"], r["chunks"]
    label = f"{r['device']}, {r['date']}, {r['model']}"
    return "\n".join([
        f"Visual memory benchmark ({label}).", "",
        "| measure | value | goal |", "|---|---|---|",
        f"| host memory after 1 h of changing 1080p ({h['chunks']} chunks, {h['key_frames']} key frames) | "
        f"{h['host_gb']:.2f} GB (bound {h['bound_gb']:.2f} GB; pinned reserved {h.get('pinned_reserved_gb', 0):.2f} GB) "
        "| <= 4 GB |",
        f"| GPU memory of the routing index | {h['index_gpu_mb']:.0f} MB (allocated delta {h['gpu_allocated_delta_mb']:.0f} MB) | |",
        f"| memory add per chunk p50 / p99 | {h['add_ms_p50']:.2f} / {h['add_ms_p99']:.2f} ms | |",
        f"| routing, cos_sim_coarse p50 / p99 | {rt['cos_sim_coarse']['ms_p50']:.2f} / {rt['cos_sim_coarse']['ms_p99']:.2f} ms | <= 5 ms |",
        f"| routing, cos_sim_fine p50 / p99 | {rt['cos_sim_fine']['ms_p50']:.2f} / {rt['cos_sim_fine']['ms_p99']:.2f} ms | <= 5 ms |",
        f"| first answer token, 8 recalled key frames (p50) | {f['ttft_ms_8_key_frames_p50']:.0f} ms "
        f"(no recall: {f['ttft_ms_no_recall_p50']:.0f} ms; recalled {f['key_frames_recalled']}) | <= 250 ms |",
        f"| chunk p99, memory fed / --no-memory | {c['memory']['total_ms_p99']:.0f} / {c['no_memory']['total_ms_p99']:.0f} ms "
        f"(x{c['p99_ratio']:.3f}; {c['memory']['compactions']} compactions, {c['memory']['key_frames']} key frames) "
        "| within 10% |",
        "", "The hour is synthetic chunks of the real embedding shape fed straight to the memory (every chunk a "
        "new scene), not 3600 chunks through the model; routing, first token and chunk times are the real session.",
    ]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model, small sizes: checks the script runs")
    ap.add_argument("--seconds", type=float, default=90.0, help="video per chunk-time run (default 90)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    p = Profile(args.smoke)
    if args.smoke:
        torch.set_num_threads(1)
    loaded = build_random("small" if p.smoke else "7b", torch.float32 if p.smoke else torch.bfloat16, p.device)
    seconds = 6.0 if p.smoke else args.seconds
    result = {"date": dt.date.today().isoformat(), "model": f"{loaded.name} (random weights)",
              "device": "CPU (smoke)" if p.smoke else device_label(p.device)}
    result["hour"], recall = one_hour(loaded, p, 120 if p.smoke else 3600)
    stage(result, "hour", args.out)
    result["routing"] = routing(recall, p)
    stage(result, "routing", args.out)
    del recall
    result["first_token"] = first_token(loaded, p, 4.0 if p.smoke else 10.0)
    stage(result, "first_token", args.out)
    result["chunks"] = chunk_p99(loaded, p, seconds)
    stage(result, "chunks", args.out)
    write(result, args.out)


def stage(result: dict, name: str, out: Path) -> None:
    """Print a stage's figures and keep what is measured so far, should a later stage fail."""
    print(name, result[name], flush=True)
    write_outputs(out, {PARTIAL: json.dumps(result, indent=1, default=float)})


def write(result: dict, out: Path) -> None:
    stamp = f"{result['date']}_{result['device'].replace(' ', '-').replace('(', '').replace(')', '')}"
    write_outputs(out, {f"memory_{stamp}.json": json.dumps(result, indent=1, default=float),
                        f"memory_{stamp}.md": markdown(result)}, remove=(PARTIAL,))
    print(markdown(result))


if __name__ == "__main__":
    main()
