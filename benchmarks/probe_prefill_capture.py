"""The prefill graphs' capture in a cold stream: the fast path against the reference with CUDA
graphs (a small fp32 model, bf16 and int4), then bf16 and int4 at the 7B shape streaming 60 s
twice over one runner (cold: the prefill graphs captured a few steps per chunk as sizes repeat;
warm: all captured). One GPU call: `python benchmarks/probe_prefill_capture.py` writes
benchmarks/results/prefill_capture_DATE_DEVICE.json (and to $OUT when set)."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine as b  # noqa: E402

from engine.session.session import SessionConfig  # noqa: E402


def stream_twice(precision: str, started: float) -> dict:
    loaded = b.quantized_model(precision, "7b", torch.bfloat16, "cuda") if precision != "none" \
        else b.build_random("7b", torch.bfloat16, "cuda")
    cfg = SessionConfig(ignore_eos=True, max_new_tokens=16, kv_budget=16384)
    stats, stalls, _, session, cold = b.run_cold_then_warm(loaded, 60, cfg)
    warm = b.summarize(stats, stalls)
    row = {"cold": {k: round(v, 1) for k, v in cold.items()}, "warm_p50": round(warm["total_ms_p50"], 1),
           "warm_p95": round(warm["total_ms_p95"], 1), "prefill_p50": round(warm["prefill_ms_p50"], 1),
           "graphed": {n: sum(g is not None for g in p.graphs) for n, p in session.runner._prefills.items()},
           "elapsed": round(time.time() - started)}  # graphed: captured steps per piece size
    del session, loaded
    b._free()
    return row


def main() -> None:
    started, result = time.time(), {}
    for precision in ("none", "int4"):
        result[f"same_{precision}"] = b.same_tokens_check(precision)
        result[precision] = stream_twice(precision, started)
        print(precision, result[precision], flush=True)
    name = f"prefill_capture_{dt.date.today().isoformat()}_{b.device_label('cuda').replace(' ', '-')}.json"
    b.write_outputs(b.ROOT / "benchmarks" / "results", {name: json.dumps(result)})


if __name__ == "__main__":
    main()
