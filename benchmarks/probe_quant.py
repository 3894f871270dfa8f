"""Which kernel runs a decode token's quantized linears fastest: one probe, no download.

    python benchmarks/probe_quant.py [--smoke] [--decode-step] [--out DIR]

The language model's linears at the LiveCC-7B shape (28 layers of fused q/k/v with bias, o_proj
plus the residual, fused gate/up then SiLU(gate) * up, down_proj plus the residual, then
lm_head), random weights, batch 1, each set CUDA-graphed as one decode token's worth and called
as the fast path's fused decode layer calls them: bf16 cuBLAS (addmm for the residuals, the
Triton SiLU * up), our Triton dequantize-GEMVs for int8 and int4 (engine/runtime/triton_quant.py:
residual and SiLU * up in their epilogues), and torch's int4 tinygemm (`_weight_int4pack_mm`,
group 128, plain products) for reference. Also per layer kind, the prefill side (dequantize to
bf16, then a 400-token GEMM), each kernel's error against the same ops on the plain-torch
dequantization, and the autotuner's pick per shape. Each precision's floor is its bytes over this
device's measured copy bandwidth (bench_engine.device_ceilings). --decode-step adds the whole
CUDA-graphed decode step of the fast path on random 7B weights at 8192 tokens of context, per
precision, with the fused small ops and without (LIVECC_NO_FUSED's path), and bench_engine's
check that the fast path emits the reference's greedy tokens per precision. --smoke runs the same
code at a toy shape on the CPU (plain torch only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_engine import applied, device_ceilings, device_label, write_outputs  # noqa: E402
from engine.model.quantize import GROUP, QuantLinear, dequantize  # noqa: E402

SHAPE_7B = dict(hidden=3584, inter=18944, kv=512, layers=28, vocab=152064)
SHAPE_TOY = dict(hidden=256, inter=512, kv=64, layers=2, vocab=1024)
KINDS = ("qkv", "o_proj", "gate_up", "down", "lm_head")


def linears(shape: dict, device: str) -> list[tuple[str, torch.nn.Linear]]:
    h, i, kv = shape["hidden"], shape["inter"], shape["kv"]
    dims = {"qkv": (h, h + 2 * kv), "o_proj": (h, h), "gate_up": (h, 2 * i), "down": (i, h), "lm_head": (h, shape["vocab"])}
    kinds = list(KINDS[:4]) * shape["layers"] + ["lm_head"]
    torch.manual_seed(0)
    out = []
    for kind in kinds:
        k, n = dims[kind]
        lin = torch.nn.Linear(k, n, bias=kind == "qkv", device=device, dtype=torch.bfloat16)
        torch.nn.init.normal_(lin.weight, 0.0, 0.02)
        out.append((kind, lin))
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
    """torch's int4 tinygemm on the same int4 values: nibbles to its order, zero 0."""
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


class Token:
    """One decode token's inputs per linear: x, and the residual for o_proj / down."""

    def __init__(self, layers: list[tuple[str, torch.nn.Linear]], device: str):
        torch.manual_seed(1)
        self.kinds = [kind for kind, _ in layers]
        self.xs = [torch.randn(1, lin.in_features, device=device, dtype=torch.bfloat16) for _, lin in layers]
        self.res = [torch.randn(1, lin.out_features, device=device, dtype=torch.bfloat16) for _, lin in layers]

    def run_quant(self, qs: list[QuantLinear], only: str | None = None) -> list[torch.Tensor]:
        """The calls of StaticRunner._layer_fused (the kernels' epilogues, or the same torch ops)."""
        out = []
        for kind, x, r, q in zip(self.kinds, self.xs, self.res, qs):
            if only is None or kind == only:
                out.append(q(x, residual=r) if kind in ("o_proj", "down") else q(x, glu=kind == "gate_up"))
        return out

    def run_bf16(self, lins: list[torch.nn.Linear], silu_mul, only: str | None = None) -> list[torch.Tensor]:
        out = []
        for kind, x, r, lin in zip(self.kinds, self.xs, self.res, lins):
            if only is not None and kind != only:
                continue
            if kind in ("o_proj", "down"):
                out.append(torch.addmm(r, x, lin.weight.t()))
            else:
                y = F.linear(x, lin.weight, lin.bias)
                out.append(silu_mul(y) if kind == "gate_up" else y)
        return out


def plain(fn):
    """fn() with the quantized layers on the plain-torch dequantization."""
    with applied("LIVECC_NO_QUANT_KERNEL=1"):
        return fn()


def probe(shape: dict, device: str) -> dict:
    layers = linears(shape, device)
    base = [lin for _, lin in layers]
    token = Token(layers, device)
    q8 = [QuantLinear.from_linear(lin, 8) for lin in base]
    q4 = [QuantLinear.from_linear(lin, 4) for lin in base]
    result = {"bytes_gb": {"bf16": sum(lin.weight.numel() * 2 for lin in base) / 1e9,
                           "int8": sum(q.nbytes() for q in q8) / 1e9, "int4": sum(q.nbytes() for q in q4) / 1e9}}
    if device == "cpu":
        from engine.runtime.decode_ops import silu_mul

        result["plain_int4_error_vs_bf16"] = rel(torch.cat(token.run_quant(q4), 1),
                                                 torch.cat(token.run_bf16(base, silu_mul), 1))
        return result
    from engine.runtime.triton_fused import silu_mul
    from engine.runtime.triton_quant import _gemv_int4, _gemv_int8, dequantize as tq_dequant, install

    install()
    runs = {"bf16 cuBLAS": lambda only=None: token.run_bf16(base, silu_mul, only),
            "int8 triton GEMV": lambda only=None: token.run_quant(q8, only),
            "int4 triton GEMV": lambda only=None: token.run_quant(q4, only)}
    reference = {"int8 triton GEMV": plain(lambda: token.run_quant(q8)),
                 "int4 triton GEMV": plain(lambda: token.run_quant(q4))}
    result["errors_vs_plain_dequant"] = {name: rel(torch.cat(runs[name](), 1), torch.cat(ref, 1))
                                         for name, ref in reference.items()}
    print(result, flush=True)
    try:
        tg = tinygemm(q4)
        runs["int4 torch tinygemm (plain products)"] = lambda only=None: tg(token.xs)
    except RuntimeError as exc:
        result["tinygemm_error"] = str(exc).splitlines()[0]
    result["decode_token_ms"] = {name: graphed_ms(fn) for name, fn in runs.items()}
    print(result["decode_token_ms"], flush=True)
    result["per_kind_ms"] = {name: {kind: graphed_ms(lambda fn=fn, kind=kind: fn(kind)) for kind in KINDS}
                             for name, fn in runs.items() if "tinygemm" not in name}
    result["autotuned"] = {name: {str(key): str(cfg) for key, cfg in kernel.cache.items()}
                           for name, kernel in (("int8", _gemv_int8), ("int4", _gemv_int4))}
    print(result["per_kind_ms"], flush=True)
    x400 = [torch.randn(400, lin.in_features, device=device, dtype=torch.bfloat16) for lin in base]
    result["prefill_400_ms"] = {
        "bf16": eager_ms(lambda: [lin(x) for x, lin in zip(x400, base)]),
        "int8 dequant+GEMM": eager_ms(lambda: [q(x) for x, q in zip(x400, q8)]),
        "int4 dequant+GEMM": eager_ms(lambda: [q(x) for x, q in zip(x400, q4)]),
        "int8 dequant only": eager_ms(lambda: [tq_dequant(q, torch.bfloat16) for q in q8]),
        "int4 dequant only": eager_ms(lambda: [tq_dequant(q, torch.bfloat16) for q in q4]),
    }
    result["ceilings"] = device_ceilings()  # this device's measured copy bandwidth: the floors' divisor
    floor_bw = result["ceilings"]["copy_tb_s"] * 1e12
    result["floors_ms"] = {k: v * 1e9 / floor_bw * 1e3 for k, v in result["bytes_gb"].items()}
    return result


def decode_step(context: int = 8192) -> dict:
    """The fast path's CUDA-graphed decode step on random 7B weights, attending to `context`
    slots, per precision, with the fused small ops and with the separate torch ops."""
    from bench_engine import _free, build_random, timed
    from engine.model.quantize import quantize_model
    from engine.runtime.decode_state import DecodeState
    from engine.runtime.fast import StaticRunner

    out = {}
    for precision in ("none", "int8", "int4"):
        loaded = build_random("7b", torch.bfloat16, "cuda")
        quantize_model(loaded.model, precision)
        _free()
        runner = StaticRunner(loaded.model, context + 8)
        state = DecodeState.zeros("cuda").set(0, context - 1, context - 1, 0).values
        for label, ops in (("fused", runner._ops), ("unfused", None)):
            runner._ops = ops
            runner._pool.drop()
            graphs = runner._capture_widths(lambda w: lambda st: runner._decode_state(DecodeState(st), w))
            graph = graphs[runner._width(context - 1)]
            graph.inputs[0].copy_(state)
            out[f"{precision} {label}"] = timed(graph.graph.replay, reps=50)
            del graphs, graph
        print("decode step ms", out, flush=True)
        del runner, loaded
        _free()
    return out


def same_tokens() -> dict:
    """Fast path (fused decode layer, CUDA graphs) against the reference, per precision, on a
    small fp32 model: bench_engine's check."""
    from bench_engine import same_tokens_check

    return {p: same_tokens_check(p)["same_tokens"] for p in ("none", "int8", "int4")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="toy shape on the CPU: checks the script, measures nothing")
    ap.add_argument("--decode-step", action="store_true", help="also time the fast path's whole decode step per precision")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    device = "cpu" if args.smoke else "cuda"
    result = probe(SHAPE_TOY if args.smoke else SHAPE_7B, device)
    result |= {"date": dt.date.today().isoformat(), "torch": torch.__version__,
               "device": device_label(device) if device == "cuda" else "cpu (smoke)",
               "weights": "random weights at the 7B shape" if not args.smoke else "toy shape"}
    name = "quant_probe_smoke.json" if args.smoke else f"quant_probe_{result['date']}.json"
    write_outputs(args.out, {name: json.dumps(result, indent=1)})
    if args.decode_step and device == "cuda":
        result["same_tokens_fast_vs_reference"] = same_tokens()
        print("same tokens", result["same_tokens_fast_vs_reference"], flush=True)
        result["decode_step_ms_at_8192"] = decode_step()
        write_outputs(args.out, {name: json.dumps(result, indent=1)})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
