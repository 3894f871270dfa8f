"""What a step's prefill attention costs the engine core: every piece in one FlashAttention-2 varlen
launch a layer (each over its own slab, in place) against one SDPA call a piece (LIVECC_NO_VARLEN=1),
at the shapes of many live streams (chunk pieces of ~380 tokens over a few thousand cached tokens).
For each: the outputs of the two against each other, GPU ms of one layer, and host µs of one layer's
launches (what the engine thread spends; at 32 streams it is the limit).

    python benchmarks/probe_prefill_attention.py [--pieces 1,4,8,16] [--tokens 384] [--context 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
import bench_streams as streams  # noqa: E402
from probe_quant import eager_ms as gpu_ms  # noqa: E402

from engine.core.batched import BatchedRunner, Piece  # noqa: E402
from engine.core.kv import KVPool  # noqa: E402


def runner(model, slabs: int, capacity: int, varlen: bool) -> BatchedRunner:
    os.environ.pop("LIVECC_NO_VARLEN", None)
    if not varlen:
        os.environ["LIVECC_NO_VARLEN"] = "1"
    try:
        pool = KVPool.for_model(model, capacity, slabs)
        torch.manual_seed(0)
        pool.k.normal_()
        pool.v.normal_()
        return BatchedRunner(model, pool)
    finally:
        os.environ.pop("LIVECC_NO_VARLEN", None)


def attention(run: BatchedRunner, n: int, tokens: int, context: int):
    """Layer 0's attention of n pieces (piece b on slab b, `tokens` new after `context - tokens`
    cached, a little apart so that no two are alike) and random queries."""
    slabs = [run.pool.take() for _ in range(n)]
    pieces = []
    for b, slab in enumerate(slabs):
        size = tokens - 7 * b % 23
        slab.length = context - size - 11 * b
        ids = torch.zeros(size, dtype=torch.long, device=run.device)
        pieces.append(Piece(slab, ids, torch.zeros(3, size, dtype=torch.long), None, 0))
    _, _, attend, _ = run._piece_rows(pieces)
    net = run.net
    q = torch.randn(net.n_heads, sum(p.ids.numel() for p in pieces), net.head_dim, device=run.device,
                    dtype=run.pool.k.dtype, generator=torch.Generator(run.device).manual_seed(1))
    for slab in slabs:
        run.pool.give(slab)
    return lambda: attend(0, q)


def host_us(fn, reps: int = 4) -> float:
    """Launch time alone: the stream is held busy so that no launch waits for the GPU (few
    repetitions: past ~1000 queued kernels a launch waits for a free slot)."""
    torch.cuda.synchronize()
    torch.cuda._sleep(int(2e9))  # ~1 s of spinning ahead of the launches
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    host = (time.perf_counter() - t0) * 1e6 / reps
    torch.cuda.synchronize()
    return host


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pieces", default="1,4,8,16")
    ap.add_argument("--tokens", type=int, default=384)
    ap.add_argument("--context", type=int, default=4096)
    args = ap.parse_args()
    loaded = streams.build("bf16", smoke=False)
    counts = [int(n) for n in args.pieces.split(",")]
    fast = runner(loaded.model, max(counts), args.context, varlen=True)
    slow = runner(loaded.model, max(counts), args.context, varlen=False)
    rows = []
    for n in counts:
        a, b = attention(fast, n, args.tokens, args.context), attention(slow, n, args.tokens, args.context)
        out_a, out_b = a(), b()
        diff = (out_a.float() - out_b.float()).abs()
        row = {"pieces": n, "tokens": args.tokens, "context": args.context,
               "max_abs_diff": round(diff.max().item(), 5), "mean_abs_diff": round(diff.mean().item(), 7),
               "varlen_gpu_ms": round(gpu_ms(a), 3), "per_piece_gpu_ms": round(gpu_ms(b), 3),
               "varlen_host_us": round(host_us(a), 1), "per_piece_host_us": round(host_us(b), 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}))


if __name__ == "__main__":
    main()
