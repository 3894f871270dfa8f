"""What the vision tower costs a chunk, and what fusing its elementwise work saves: the tower
(FastVision.run_eager) for 1 and 16 chunks of one grid with the torch ops and with the Triton kernels
(engine/runtime/triton_vision.py), eager and under a CUDA graph; the kernels' outputs against the
model's own arithmetic, bit for bit (QuickGELU over every bfloat16 value); `--compile`: also under
torch.compile, with how many outputs it leaves bit-equal.

    python benchmarks/probe_vision.py [--compile]
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
from engine.runtime import triton_vision  # noqa: E402
from engine.runtime.vision import FastVision, TorchVisionOps, TritonVisionOps  # noqa: E402


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


def same(a: torch.Tensor, b: torch.Tensor) -> dict:
    a, b = a.float(), b.float()
    return {"equal_fraction": round(float((a == b).float().mean()), 6), "max_abs_diff": float((a - b).abs().max())}


def kernels_exact(vision: FastVision, cos: torch.Tensor, sin: torch.Tensor) -> dict:
    """The Triton kernels against the model's own torch arithmetic."""
    from transformers.models.qwen2_vl.modeling_qwen2_vl import apply_rotary_pos_emb_vision

    values = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(torch.bfloat16).cuda()
    values = values[torch.isfinite(values)]
    act = vision.visual.blocks[0].mlp.act
    block = vision.visual.blocks[0]
    heads = block.attn.num_heads
    qkv = torch.randn(cos.shape[0], 3 * block.attn.qkv.in_features, dtype=torch.bfloat16, device="cuda") * 4
    q, k = qkv.reshape(cos.shape[0], 3, heads, -1)[:, 0], qkv.reshape(cos.shape[0], 3, heads, -1)[:, 1]
    want_q, want_k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    got = triton_vision.rope_qk(qkv, cos, sin, heads)
    return {"quick_gelu_all_bf16": same(triton_vision.quick_gelu(values), act(values)),
            "quick_gelu_fast_exp_all_bf16": same(triton_vision.quick_gelu(values, approx_exp=True), act(values)),
            "rope_q": same(got[:, 0], want_q), "rope_k": same(got[:, 1], want_k)}


def graphed_ms(fn, n: int) -> float:
    graph = torch.cuda.CUDAGraph()
    fn()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        fn()
    ms = timed_ms(graph.replay) / n
    del graph
    return ms


@torch.inference_mode()
def main() -> None:
    out = Path(os.environ.get("OUT", "/tmp"))
    loaded = streams.build("bf16", False)
    vision = FastVision(loaded.model, cuda_graphs=False)
    video = preprocess_frames(streams.images(False)[:2], "cuda")
    cos, sin = vision.rope_for(video)
    result = {"grid": list(video.grid), "kernels_vs_model": kernels_exact(vision, cos, sin)}
    model_out = loaded.model.model.get_video_features(video.pixel_values_videos, video.video_grid_thw)
    model_out = torch.cat(list(model_out.pooler_output), dim=0)
    print(json.dumps(result), flush=True)
    for n in (1, 16):
        pixels = torch.cat([video.pixel_values_videos] * n)
        cn, sn = cos.repeat(n, 1), sin.repeat(n, 1)
        run = lambda: vision.run_eager(pixels, cn, sn, video.grid[0] * n)  # noqa: E731
        row = {}
        for name, ops in (("torch", TorchVisionOps()), ("triton", TritonVisionOps(triton_vision))):
            vision.ops = ops
            row[name] = {"eager_ms_per_chunk": timed_ms(run) / n, "graphed_ms_per_chunk": graphed_ms(run, n),
                         "kernels_ms": kernel_split(run),
                         "vs_model_first_chunk": same(run()[: model_out.shape[0]], model_out)}
        if "--compile" in sys.argv:
            vision.ops = TorchVisionOps()
            reference = run()
            compiled = torch.compile(vision.run_eager, dynamic=False)
            t0 = time.perf_counter()
            got = compiled(pixels, cn, sn, video.grid[0] * n)
            torch.cuda.synchronize()
            row["compiled"] = {"compile_s": time.perf_counter() - t0, **same(got, reference),
                               "ms_per_chunk": timed_ms(lambda: compiled(pixels, cn, sn, video.grid[0] * n)) / n}
        result[f"chunks_{n}"] = row
        print(json.dumps(row), flush=True)
    (out / "probe_vision.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
