"""Triton kernels for QuantLinear on CUDA: a fused dequantize-GEMV for one token (decode) and a
dequantize-to-bf16 kernel for many tokens (prefill, vision: then cuBLAS does the GEMM).

Why our own: torchao 0.18's int8 weight-only ran at 22 ms per decode token (bf16: 3.9 ms) and
its int4 layouts need the `mslk` package; torch's int4 tinygemm is faster for one token (2.3 vs
3.0 ms) but wants its own tiled layout, and at prefill size it takes 192 ms where dequantize +
cuBLAS takes 16 ms, so using it would mean holding the int4 weights twice; its int8 counterpart
(`_weight_int8pack_mm`) takes 62 ms. These read QuantLinear's one packed layout, so fused q/k/v and gate/up rows, the CUDA-
graphed decode step and the reference runner all use the same bytes. Measured against those in
benchmarks/probe_quant.py. Tried and slower there: int4 through tl.dot on a zero-padded x (5.9 ms),
gathered per-element scales (5.6 ms), and int-to-float by the 2^23 mantissa trick (int8 2.66 ms,
int4 3.37 ms): the int4 GEMV stays arithmetic bound at 3.0 ms against a 0.9 ms floor.
LIVECC_NO_QUANT_KERNEL=1 falls back to plain-torch dequantization.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.model.quantize import QuantLinear

_CONFIGS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)
            for n, k, w in ((1, 1024, 2), (1, 2048, 4), (2, 1024, 4), (2, 2048, 4), (4, 512, 4), (4, 1024, 4),
                            (8, 512, 4), (8, 1024, 8), (16, 256, 4), (16, 512, 8), (32, 256, 8), (4, 2048, 8))]


_INT4_CONFIGS = [triton.Config({"BLOCK_N": n, "GROUPS": g}, num_warps=w)
                 for n, g, w in ((2, 4, 4), (2, 8, 4), (4, 2, 4), (4, 4, 4), (8, 2, 4), (8, 4, 8), (16, 1, 4),
                                 (16, 2, 8), (32, 1, 8), (1, 8, 4))]


@triton.autotune(_INT4_CONFIGS, key=["N", "K"])
@triton.jit
def _gemv_int4(x_ptr, w_ptr, s_ptr, b_ptr, out_ptr, N, K, stride_w, stride_s, GROUP: tl.constexpr,
               HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, GROUPS: tl.constexpr):
    """A (rows, groups, half-group) tile per step: both halves of x load contiguously, each group
    reduces to one number before its scale. The row strides come in as arguments so Triton sees
    them divisible by 16 and vectorizes the byte loads (computed in the kernel, they were not:
    1.5x-2.5x slower, benchmarks/probe_quant.py)."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    live = rows < N
    g = tl.arange(0, GROUPS)
    j = tl.arange(0, GROUP // 2)
    n_groups = K // GROUP
    acc = tl.zeros((BLOCK_N, GROUPS), tl.float32)
    for g0 in range(0, n_groups, GROUPS):
        grp = g0 + g
        inside = grp < n_groups
        both = live[:, None] & inside[None, :]
        byte = grp[:, None] * (GROUP // 2) + j[None, :]  # (groups, half): contiguous along j
        packed = tl.load(w_ptr + rows[:, None, None] * stride_w + byte[None, :, :], mask=both[:, :, None], other=0)
        xa = tl.load(x_ptr + grp[:, None] * GROUP + j[None, :], mask=inside[:, None], other=0).to(tl.float32)
        xb = tl.load(x_ptr + grp[:, None] * GROUP + GROUP // 2 + j[None, :], mask=inside[:, None], other=0).to(tl.float32)
        lo = (packed & 0xF).to(tl.float32)
        hi = (packed >> 4).to(tl.float32)
        offset = 8.0 * tl.sum(xa + xb, axis=1)  # sum((q - 8) x) = sum(q x) - 8 sum(x): two ALU ops fewer per byte
        part = tl.sum(lo * xa[None, :, :] + hi * xb[None, :, :], axis=2) - offset[None, :]
        s = tl.load(s_ptr + rows[:, None] * stride_s + grp[None, :], mask=both, other=0).to(tl.float32)
        acc += part * s
    out = tl.sum(acc, axis=1)
    if HAS_BIAS:
        out += tl.load(b_ptr + rows, mask=live, other=0).to(tl.float32)
    tl.store(out_ptr + rows, out.to(out_ptr.dtype.element_ty), mask=live)


@triton.autotune(_CONFIGS, key=["N", "K"])
@triton.jit
def _gemv_int8(x_ptr, w_ptr, s_ptr, b_ptr, out_ptr, N, K, GROUP: tl.constexpr, HAS_BIAS: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    live = rows < N
    span = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + span
        inside = cols < K
        q = tl.load(w_ptr + rows[:, None] * K + cols[None, :], mask=live[:, None] & inside[None, :], other=0)
        acc += q.to(tl.float32) * tl.load(x_ptr + cols, mask=inside, other=0).to(tl.float32)[None, :]
    out = tl.sum(acc, axis=1) * tl.load(s_ptr + rows, mask=live, other=0).to(tl.float32)
    if HAS_BIAS:
        out += tl.load(b_ptr + rows, mask=live, other=0).to(tl.float32)
    tl.store(out_ptr + rows, out.to(out_ptr.dtype.element_ty), mask=live)


@triton.jit
def _dequant(w_ptr, s_ptr, out_ptr, N, K, BITS: tl.constexpr, GROUP: tl.constexpr, BLOCK: tl.constexpr):
    """One row block of the weight in out's dtype, with the plain-torch dequantization's arithmetic."""
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    live = cols < K
    if BITS == 8:
        q = tl.load(w_ptr + row * K + cols, mask=live, other=0).to(out_ptr.dtype.element_ty)
        s = tl.load(s_ptr + row)
    else:
        within = cols % GROUP  # byte j of a group holds columns j (low nibble) and j + GROUP/2 (high)
        high = within >= GROUP // 2
        packed = tl.load(w_ptr + row * (K // 2) + (cols // GROUP) * (GROUP // 2) + within % (GROUP // 2), mask=live,
                         other=0)
        q = tl.where(high, packed >> 4, packed & 0xF).to(out_ptr.dtype.element_ty) - 8
        s = tl.load(s_ptr + row * (K // GROUP) + cols // GROUP, mask=live, other=0)
    tl.store(out_ptr + row * K + cols, (q * s).to(out_ptr.dtype.element_ty), mask=live)


def _group(layer: QuantLinear) -> int:
    return layer.in_features // layer.scales.shape[1] if layer.bits == 4 else 1


def gemv(x: torch.Tensor, layer: QuantLinear) -> torch.Tensor:
    """x (..., K) holding one token -> (..., N)."""
    n, k = layer.out_features, layer.in_features
    out = torch.empty(*x.shape[:-1], n, dtype=x.dtype, device=x.device)
    bias = layer.bias if layer.bias is not None else layer.scales
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
    args = (x.contiguous(), layer.qweight, layer.scales, bias, out, n, k)
    if layer.bits == 4:
        _gemv_int4[grid](*args, layer.qweight.stride(0), layer.scales.stride(0), GROUP=_group(layer),
                         HAS_BIAS=layer.bias is not None)
    else:
        _gemv_int8[grid](*args, GROUP=1, HAS_BIAS=layer.bias is not None)
    return out


def dequantize(layer: QuantLinear, dtype: torch.dtype) -> torch.Tensor:
    n, k = layer.out_features, layer.in_features
    out = torch.empty(n, k, dtype=dtype, device=layer.qweight.device)
    block = 1024
    _dequant[(n, triton.cdiv(k, block))](layer.qweight, layer.scales, out, n, k, BITS=layer.bits, GROUP=_group(layer),
                                         BLOCK=block)
    return out


def install() -> None:
    """Make QuantLinear use these kernels on CUDA tensors."""
    QuantLinear.kernels[8] = (gemv, dequantize)
    QuantLinear.kernels[4] = (gemv, dequantize)
