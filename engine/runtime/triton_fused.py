"""Triton kernels for the small ops of a one-token decode step (engine/runtime/decode_ops.py):
RMSNorm with its weight, rotary embedding of q and k with the KV-cache write, SiLU(gate) * up.

A decode step at the 7B shape spent ~1.5 ms outside its linears, mostly in ~12 tiny kernels a
layer; these replace 2, 5 and 2 of them with one each (and the quantized GEMV takes the residual
adds and SiLU * up; the measured step is in docs/architecture.md, "The fast path").
Each rounds where the torch ops it replaces round (to the activations' dtype after every op), so
the tokens match the unfused path (on the GPU: bench_engine's same-tokens check per precision).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm(x_ptr, w_ptr, out_ptr, H, eps, BLOCK: tl.constexpr):
    """weight * F.rms_norm(x): float32 statistics, x's dtype after the normalisation, then the
    weight's product rounded to out's dtype."""
    cols = tl.arange(0, BLOCK)
    live = cols < H
    x = tl.load(x_ptr + cols, mask=live, other=0).to(tl.float32)
    rstd = tl.math.rsqrt(tl.sum(x * x, axis=0) / H + eps)
    y = (x * rstd).to(x_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=live, other=0).to(tl.float32)
    tl.store(out_ptr + cols, (w * y).to(out_ptr.dtype.element_ty), mask=live)


@triton.jit
def _rope_write(qkv_ptr, cos_ptr, sin_ptr, q_ptr, k_ptr, v_ptr, slot_ptr, stride_kh, stride_ks, stride_vh, stride_vs,
                N_HEADS: tl.constexpr, N_KV: tl.constexpr, D: tl.constexpr):
    """One head per program: q heads rotated into q, k heads rotated into the cache's slot, v
    heads copied there. x * cos rounds before + rotate_half(x) * signed_sin, as in decode_ops.apply_rope."""
    h = tl.program_id(0)
    d = tl.arange(0, D)
    x = tl.load(qkv_ptr + h * D + d)
    dtype = x.dtype
    if h < N_HEADS + N_KV:
        swapped = tl.load(qkv_ptr + h * D + (d + D // 2) % D).to(tl.float32)
        a = (x.to(tl.float32) * tl.load(cos_ptr + d).to(tl.float32)).to(dtype).to(tl.float32)
        rot = (a + swapped * tl.load(sin_ptr + d).to(tl.float32)).to(dtype)
        if h < N_HEADS:
            tl.store(q_ptr + h * D + d, rot)
        else:
            slot = tl.load(slot_ptr)
            tl.store(k_ptr + (h - N_HEADS) * stride_kh + slot * stride_ks + d, rot)
    else:
        slot = tl.load(slot_ptr)
        tl.store(v_ptr + (h - N_HEADS - N_KV) * stride_vh + slot * stride_vs + d, x)


@triton.jit
def _silu_mul(gu_ptr, out_ptr, N, BLOCK: tl.constexpr):
    """F.silu(gate) * up over the halves of a fused gate/up output, each op rounded."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = i < N
    gate = tl.load(gu_ptr + i, mask=live, other=0).to(tl.float32)
    up = tl.load(gu_ptr + N + i, mask=live, other=0).to(tl.float32)
    dtype = out_ptr.dtype.element_ty
    act = tl.math.div_rn(gate, 1.0 + tl.exp(-gate)).to(dtype).to(tl.float32)
    tl.store(out_ptr + i, (act * up).to(dtype), mask=live)


def rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """x (1, H) -> norm(x) (1, H) for one token."""
    h = x.shape[-1]
    out = torch.empty(x.shape, dtype=torch.result_type(norm.weight, x), device=x.device)
    block = triton.next_power_of_2(h)
    _rms_norm[(1,)](x, norm.weight, out, h, norm.variance_epsilon, BLOCK=block, num_warps=min(16, max(1, block // 256)))
    return out


def rope_write(qkv: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, k_cache: torch.Tensor,
               v_cache: torch.Tensor, slot: torch.Tensor, n_heads: int, n_kv: int) -> torch.Tensor:
    """qkv (1, (heads + 2 kv) * D) -> rotated q (heads, 1, D); rotated k and v land in
    k_cache / v_cache (kv, capacity, D) at `slot` (a one-element device tensor)."""
    d = k_cache.shape[-1]
    q = torch.empty(n_heads, 1, d, dtype=qkv.dtype, device=qkv.device)
    _rope_write[(n_heads + 2 * n_kv,)](qkv, cos, signed_sin, q, k_cache, v_cache, slot, k_cache.stride(0),
                                       k_cache.stride(1), v_cache.stride(0), v_cache.stride(1), N_HEADS=n_heads,
                                       N_KV=n_kv, D=d, num_warps=1)
    return q


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """(1, 2 I) fused gate/up output -> SiLU(gate) * up (1, I)."""
    n = gate_up.shape[-1] // 2
    out = torch.empty(*gate_up.shape[:-1], n, dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    _silu_mul[(triton.cdiv(n, block),)](gate_up, out, n, BLOCK=block, num_warps=4)
    return out
