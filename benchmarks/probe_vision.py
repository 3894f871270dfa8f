"""What the vision tower costs a chunk, and what fusing its elementwise work would save: the eager
tower (FastVision.run_eager) for 1 and 16 chunks of one grid, the same under a CUDA graph, and under
torch.compile, with the largest difference of the compiled output from the eager one.

    python benchmarks/probe_vision.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent)]
import bench_streams as streams  # noqa: E402

from engine.model.preprocess import preprocess_frames  # noqa: E402
from engine.runtime.vision import FastVision  # noqa: E402


def timed_ms(fn, reps: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3 / reps


def kernel_split(fn) -> dict:
    """ms of GPU time in matrix products, attention and the rest (elementwise, norms, copies)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    split = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for e in prof.key_averages():
        name = e.key.lower()
        kind = "attention" if ("sdpa" in name or "flash" in name or "fmha" in name) else \
            "matmul" if ("gemm" in name or "nvjet" in name or "cutlass" in name) else "other"
        split[kind] += e.self_device_time_total / 1e3
    return {k: round(v, 2) for k, v in split.items()}


@torch.inference_mode()
def main() -> None:
    out = Path(os.environ.get("OUT", "/tmp"))
    loaded = streams.build("bf16", False)
    vision = FastVision(loaded.model, cuda_graphs=False)
    video = preprocess_frames(streams.images(False)[:2], "cuda")
    cos, sin = vision.rope_for(video)
    result = {"grid": list(video.grid)}
    for n in (1, 16):
        pixels = torch.cat([video.pixel_values_videos] * n)
        cn, sn = cos.repeat(n, 1), sin.repeat(n, 1)
        eager = lambda: vision.run_eager(pixels, cn, sn, video.grid[0] * n)  # noqa: E731
        row = {"eager_ms_per_chunk": timed_ms(eager) / n, "eager_kernels_ms": kernel_split(eager)}
        graph = torch.cuda.CUDAGraph()
        eager()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            static = eager()
        row["graphed_ms_per_chunk"] = timed_ms(graph.replay) / n
        reference = eager().float()
        compiled = torch.compile(vision.run_eager, dynamic=False)
        t0 = time.perf_counter()
        got = compiled(pixels, cn, sn, video.grid[0] * n)
        torch.cuda.synchronize()
        row["compile_s"] = time.perf_counter() - t0
        row["compiled_ms_per_chunk"] = timed_ms(lambda: compiled(pixels, cn, sn, video.grid[0] * n)) / n
        row["compiled_max_abs_diff"] = float((got.float() - reference).abs().max())
        row["compiled_equal_fraction"] = float((got.float() == reference).float().mean())
        del static, graph
        result[f"chunks_{n}"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
        print(json.dumps(result[f"chunks_{n}"]), flush=True)
    (out / "probe_vision.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
