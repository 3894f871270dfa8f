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
    """weight * F.rms_norm(x) of row `program_id(0)`: float32 statistics, x's dtype after the
    normalisation, then the weight's product rounded to out's dtype."""
    row = tl.program_id(0).to(tl.int64)
    x_ptr = x_ptr + row * H
    out_ptr = out_ptr + row * H
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
def _rope_write_rows(qkv_ptr, cos_ptr, sin_ptr, q_ptr, k_ptr, v_ptr, index_ptr, slot_ptr, rows, qkv_stride,
                     stride_kb, stride_kh, stride_ks, stride_vb, stride_vh, stride_vs,
                     N_HEADS: tl.constexpr, N_KV: tl.constexpr, D: tl.constexpr):
    """`_rope_write` for many decode rows (the engine core's step): program (r, h) rotates head h of
    row r with row r's cos and sin, into q (heads, rows, D) or into slot slot[r] of slab index[r] of
    a KV pool (slabs, kv heads, capacity, D); the same arithmetic, so each row rounds as alone."""
    r = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    d = tl.arange(0, D)
    row = qkv_ptr + r * qkv_stride
    x = tl.load(row + h * D + d)
    dtype = x.dtype
    if h < N_HEADS + N_KV:
        swapped = tl.load(row + h * D + (d + D // 2) % D).to(tl.float32)
        a = (x.to(tl.float32) * tl.load(cos_ptr + r * D + d).to(tl.float32)).to(dtype).to(tl.float32)
        rot = (a + swapped * tl.load(sin_ptr + r * D + d).to(tl.float32)).to(dtype)
        if h < N_HEADS:
            tl.store(q_ptr + (h * rows + r) * D + d, rot)
        else:
            slab, slot = tl.load(index_ptr + r), tl.load(slot_ptr + r)
            tl.store(k_ptr + slab * stride_kb + (h - N_HEADS) * stride_kh + slot * stride_ks + d, rot)
    else:
        slab, slot = tl.load(index_ptr + r), tl.load(slot_ptr + r)
        tl.store(v_ptr + slab * stride_vb + (h - N_HEADS - N_KV) * stride_vh + slot * stride_vs + d, x)


@triton.jit
def _silu_mul(gu_ptr, out_ptr, N, BLOCK: tl.constexpr):
    """F.silu(gate) * up over the halves of a fused gate/up output row (`program_id(1)`), each op rounded."""
    row = tl.program_id(1).to(tl.int64)
    gu_ptr = gu_ptr + row * 2 * N
    out_ptr = out_ptr + row * N
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    live = i < N
    gate = tl.load(gu_ptr + i, mask=live, other=0).to(tl.float32)
    up = tl.load(gu_ptr + N + i, mask=live, other=0).to(tl.float32)
    dtype = out_ptr.dtype.element_ty
    act = tl.math.div_rn(gate, 1.0 + tl.exp(-gate)).to(dtype).to(tl.float32)
    tl.store(out_ptr + i, (act * up).to(dtype), mask=live)


def rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """x (..., H), contiguous -> norm(x), one program a token (row)."""
    h = x.shape[-1]
    out = torch.empty(x.shape, dtype=torch.result_type(norm.weight, x), device=x.device)
    block = triton.next_power_of_2(h)
    _rms_norm[(x.numel() // h,)](x, norm.weight, out, h, norm.variance_epsilon, BLOCK=block,
                                 num_warps=min(16, max(1, block // 256)))
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


def rope_write_rows(qkv: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, k_pool: torch.Tensor,
                    v_pool: torch.Tensor, index: torch.Tensor, slots: torch.Tensor, n_heads: int,
                    n_kv: int) -> torch.Tensor:
    """qkv (rows, (heads + 2 kv) * D), cos / signed_sin (rows, D) -> rotated q (heads, rows, D); row r's
    rotated k and its v land in k_pool / v_pool (slabs, kv, capacity, D) at slab index[r], slot slots[r]."""
    rows, d = qkv.shape[0], k_pool.shape[-1]
    q = torch.empty(n_heads, rows, d, dtype=qkv.dtype, device=qkv.device)
    _rope_write_rows[(rows, n_heads + 2 * n_kv)](qkv, cos.contiguous(), signed_sin.contiguous(), q, k_pool, v_pool,
                                                 index, slots, rows, qkv.stride(0), *k_pool.stride()[:3],
                                                 *v_pool.stride()[:3], N_HEADS=n_heads, N_KV=n_kv, D=d, num_warps=1)
    return q


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """(..., 2 I) fused gate/up outputs -> SiLU(gate) * up (..., I), row by row."""
    n = gate_up.shape[-1] // 2
    out = torch.empty(*gate_up.shape[:-1], n, dtype=gate_up.dtype, device=gate_up.device)
    block = 1024
    _silu_mul[(triton.cdiv(n, block), gate_up.numel() // (2 * n))](gate_up, out, n, BLOCK=block, num_warps=4)
    return out
