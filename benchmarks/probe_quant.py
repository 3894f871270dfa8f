"""Which kernel runs a decode token's quantized linears fastest: one probe, no download.

    python benchmarks/probe_quant.py [--smoke] [--out DIR]

The language model's linears at the LiveCC-7B shape (28 layers of fused q/k/v, o, fused
gate/up, down, then lm_head), random weights, batch 1, each set of kernels CUDA-graphed as one
decode token's worth: bf16 cuBLAS, torch's int4 tinygemm (`_weight_int4pack_mm`, group 128), and
our Triton dequantize-GEMV for int8 and int4 (engine/runtime/triton_quant.py). Also the prefill
side (dequantize to bf16, then a 400-token GEMM) and each kernel's error against the plain-torch
dequantization; each precision's floor is its bytes over this device's measured copy bandwidth
(bench_engine.device_ceilings). --smoke runs the same code at a toy shape on the CPU (plain torch only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_engine import device_ceilings, device_label, write_outputs  # noqa: E402
from engine.model.quantize import GROUP, QuantLinear, dequantize  # noqa: E402

SHAPE_7B = dict(hidden=3584, inter=18944, kv=512, layers=28, vocab=152064)
SHAPE_TOY = dict(hidden=256, inter=512, kv=64, layers=2, vocab=1024)


def linears(shape: dict, device: str) -> list[torch.nn.Linear]:
    h, i, kv = shape["hidden"], shape["inter"], shape["kv"]
    dims = [(h, h + 2 * kv), (h, h), (h, 2 * i), (i, h)] * shape["layers"] + [(h, shape["vocab"])]
    torch.manual_seed(0)
    out = []
    for k, n in dims:
        lin = torch.nn.Linear(k, n, bias=False, device=device, dtype=torch.bfloat16)
        torch.nn.init.normal_(lin.weight, 0.0, 0.02)
        out.append(lin)
    return out


def graphed_ms(fn, reps: int = 30) -> float:
    """Median ms of fn() replayed as one CUDA graph (warm-ups first: Triton autotunes there)."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def eager_ms(fn, reps: int = 10) -> float:
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(reps):
        fn()
    b.record()
    b.synchronize()
    return a.elapsed_time(b) / reps


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def tinygemm(layers: list[QuantLinear]):
    """torch's int4 tinygemm on the same int4 values: nibbles swapped to its order, zero 0."""
    packed = []
    for q in layers:
        vals = (dequantize(q.qweight, torch.ones_like(q.scales), 4, torch.float32) + 8).to(torch.uint8)
        tiny = (vals[:, 0::2] << 4) | vals[:, 1::2]  # tinygemm: even column in the high nibble
        w = torch.ops.aten._convert_weight_to_int4pack(tiny.contiguous(), 8)
        sz = torch.stack((q.scales.t(), torch.zeros_like(q.scales.t())), dim=-1).contiguous()
        packed.append((w, sz))

    def run(xs):
        return [torch.ops.aten._weight_int4pack_mm(x, w, GROUP, sz) for x, (w, sz) in zip(xs, packed)]

    return run


def probe(shape: dict, device: str) -> dict:
    base = linears(shape, device)
    xs = [torch.randn(1, lin.in_features, device=device, dtype=torch.bfloat16) for lin in base]
    q8 = [QuantLinear.from_linear(lin, 8) for lin in base]
    q4 = [QuantLinear.from_linear(lin, 4) for lin in base]
    result = {"bytes_gb": {"bf16": sum(lin.weight.numel() * 2 for lin in base) / 1e9,
                           "int8": sum(q.nbytes() for q in q8) / 1e9, "int4": sum(q.nbytes() for q in q4) / 1e9}}
    plain = {8: [x @ dequantize(q.qweight, q.scales, 8, x.dtype).t() for x, q in zip(xs, q8)],
             4: [x @ dequantize(q.qweight, q.scales, 4, x.dtype).t() for x, q in zip(xs, q4)]}
    if device == "cpu":
        result["plain_int4_error_vs_bf16"] = rel(torch.cat(plain[4], 1), torch.cat([lin(x) for x, lin in zip(xs, base)], 1))
        return result
    from engine.runtime.triton_quant import dequantize as tq_dequant, gemv, install

    install()
    runs = {"bf16 cuBLAS": lambda: [lin(x) for x, lin in zip(xs, base)],
            "int8 triton GEMV": lambda: [gemv(x, q) for x, q in zip(xs, q8)],
            "int4 triton GEMV": lambda: [gemv(x, q) for x, q in zip(xs, q4)]}
    try:
        tg = tinygemm(q4)
        runs["int4 torch tinygemm"] = lambda: tg(xs)
    except RuntimeError as exc:
        result["tinygemm_error"] = str(exc).splitlines()[0]
    result["errors_vs_plain_dequant"] = {name: rel(torch.cat(fn(), 1), torch.cat(plain[8 if "int8" in name else 4], 1))
                                         for name, fn in runs.items() if name != "bf16 cuBLAS"}
    result["decode_token_ms"] = {name: graphed_ms(fn) for name, fn in runs.items()}
    print(result, flush=True)
    x400 = [torch.randn(400, lin.in_features, device=device, dtype=torch.bfloat16) for lin in base]
    result["prefill_400_ms"] = {
        "bf16": eager_ms(lambda: [lin(x) for x, lin in zip(x400, base)]),
        "int8 dequant+GEMM": eager_ms(lambda: [q(x) for x, q in zip(x400, q8)]),
        "int4 dequant+GEMM": eager_ms(lambda: [q(x) for x, q in zip(x400, q4)]),
        "int4 dequant only": eager_ms(lambda: [tq_dequant(q, torch.bfloat16) for q in q4]),
    }
    if "int4 torch tinygemm" in runs:
        result["prefill_400_ms"]["int4 torch tinygemm"] = eager_ms(lambda: tg(x400))
    result["ceilings"] = device_ceilings()  # this device's measured copy bandwidth: the floors' divisor
    floor_bw = result["ceilings"]["copy_tb_s"] * 1e12
    result["floors_ms"] = {k: v * 1e9 / floor_bw * 1e3 for k, v in result["bytes_gb"].items()}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="toy shape on the CPU: checks the script, measures nothing")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    device = "cpu" if args.smoke else "cuda"
    result = probe(SHAPE_TOY if args.smoke else SHAPE_7B, device)
    result |= {"date": dt.date.today().isoformat(), "torch": torch.__version__,
               "device": device_label(device) if device == "cuda" else "cpu (smoke)",
               "weights": "random weights at the 7B shape" if not args.smoke else "toy shape"}
    name = "quant_probe_smoke.json" if args.smoke else f"quant_probe_{result['date']}.json"
    write_outputs(args.out, {name: json.dumps(result, indent=1)})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
