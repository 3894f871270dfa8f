"""Throughput of `livecc eval ovobench`: the mini benchmark through the real harness, no download.

    python benchmarks/bench_eval.py [--long 60] [--out DIR]      # GPU: random weights at the 7B shape
    python benchmarks/bench_eval.py --smoke [--out DIR]            # CPU: the tiny model, same code path

Builds the mini OVO-Bench of the tests (tests/eval_data.py: every group, forward probes included) with
720p 30 fps generated videos, plays every item through StreamingSession and the fast path (on CUDA)
with the CLI's defaults (16 tokens a chunk, 128 an answer), and reports items per hour. Random
weights never stop early, so every comment and answer decodes to its limit: an upper bound on time.
`--long N` also times one item asked at N s, the stream rate (video seconds per wall second) that
sets the runtime of the real benchmark. Writes JSON and markdown to --out (and $OUT when set).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from bench_engine import build_random, device_label, write_outputs  # noqa: E402
from engine.eval.harness import run_ovobench  # noqa: E402
from engine.eval.ovobench import load_ovobench, video_path  # noqa: E402
from engine.eval.records import RunSettings, open_run  # noqa: E402
from engine.eval.streaming import StreamAnswerer  # noqa: E402
from engine.session.session import SessionConfig  # noqa: E402
from eval_data import build_ovobench  # noqa: E402
from videos import write_video  # noqa: E402


def load(smoke: bool, work: Path, model: str | None):
    import torch

    if smoke:
        from engine.model.loading import load_model
        from engine.model.tiny import make_tiny_model

        return load_model(model or str(make_tiny_model(work / "tiny")), device="cpu")
    return build_random("7b", torch.bfloat16, "cuda")


def mini(work: Path, smoke: bool) -> Path:
    if smoke:
        return build_ovobench(work / "ovo")
    return build_ovobench(work / "ovo", seconds=5.0, size=(1280, 720), fps=30)  # decoding costs what real videos cost


def run(smoke: bool, long_s: float, work: Path, limit: int | None = None, model: str | None = None) -> dict:
    config = SessionConfig(max_new_tokens=2, answer_max_new_tokens=4, max_pixels=20000, min_pixels=20000) \
        if smoke else SessionConfig(answer_max_new_tokens=128)
    data = mini(work, smoke)
    loaded = load(smoke, work, model)
    answer = StreamAnswerer(loaded, config)
    items = load_ovobench(data)[:limit]
    video_of = lambda item: video_path(data, item.video)  # noqa: E731
    answer(video_of(items[0]), [(4.0, "warm-up")])  # fast path: weights fused, graphs captured
    out = work / "out"
    open_run(out, RunSettings.of("ovobench", loaded.name, config))
    t0 = time.perf_counter()
    summary = run_ovobench(items, answer, video_of, out, json.loads((out / "run.json").read_text()))
    wall = time.perf_counter() - t0
    probes = sum(len(item.probes) for item in items)
    watched = sum(max(p.watch_until for p in item.probes) for item in items)
    result = {"date": dt.date.today().isoformat(), "device": device_label(loaded.device), "model": loaded.name,
              "runner": type(answer_runner(loaded)).__name__, "items": len(items), "answered": summary["answered"],
              "probes": probes, "video_seconds": watched, "wall_s": round(wall, 2),
              "items_per_hour": round(3600 * len(items) / wall, 1), "seconds_per_item": round(wall / len(items), 2),
              "settings": {k: getattr(config, k) for k in ("max_new_tokens", "answer_max_new_tokens", "max_pixels",
                                                           "kv_budget", "positions")}}
    if long_s:
        video = write_video(work / "long.mp4", seconds=long_s, fps=30, width=96 if smoke else 1280,
                            height=64 if smoke else 720)
        t0 = time.perf_counter()
        answer(video, [(long_s, "What happened?")])
        seconds = time.perf_counter() - t0
        result["long_item"] = {"video_s": long_s, "wall_s": round(seconds, 2),
                               "stream_rate_x": round(long_s / seconds, 2)}
    return result


def answer_runner(loaded):
    return getattr(loaded.model, "_livecc_static_runner", None) or object()


def markdown(r: dict) -> str:
    lines = [f"# livecc eval ovobench throughput, {r['device']}, {r['date']}, {r['model']}", "",
             "| items | probes | video s | wall s | s/item | items/hour | runner |", "|---|---|---|---|---|---|---|",
             f"| {r['items']} | {r['probes']} | {r['video_seconds']:.0f} | {r['wall_s']} | {r['seconds_per_item']} | "
             f"{r['items_per_hour']} | {r['runner']} |"]
    if "long_item" in r:
        li = r["long_item"]
        lines += ["", f"One item asked at {li['video_s']:.0f} s: {li['wall_s']} s wall, "
                      f"stream rate {li['stream_rate_x']}x real time."]
    return "\n".join(lines) + f"\n\nSettings: {r['settings']}\n"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny model: check the script, measure nothing")
    ap.add_argument("--long", type=float, default=0.0, help="also time one item asked at this many seconds")
    ap.add_argument("--limit", type=int, default=None, help="only the first N items of the mini benchmark")
    ap.add_argument("--model", default=None, help="with --smoke: a tiny model folder to use instead of building one")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.smoke, args.long, Path(tmp), args.limit, args.model)
    stamp = f"eval_{result['date']}_{result['device'].replace(' ', '-')}"
    write_outputs(args.out, {f"{stamp}.json": json.dumps(result, indent=1), f"{stamp}.md": markdown(result)})
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
