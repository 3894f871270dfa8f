"""The small ops of a one-token decode step, as the fast path's fused layer uses them: Triton
kernels on CUDA (engine/runtime/triton_fused.py), the same arithmetic in plain torch elsewhere.
LIVECC_NO_FUSED=1 keeps the fast path on its unfused layer (fast.StaticRunner._layer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from engine import flags
import torch.nn.functional as F


def fused_on() -> bool:
    return not flags.get("LIVECC_NO_FUSED")


def upload(values, device: torch.device | str, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """Host values (a list or a CPU tensor) as a tensor on `device` without waiting for the GPU: a
    plain copy to CUDA first synchronizes the stream; this one goes through pinned memory, asynchronously."""
    host = values.to(dtype) if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=dtype)
    if torch.device(device).type != "cuda":
        return host
    return host.pin_memory().to(device, non_blocking=True)


def read_later(values: torch.Tensor) -> Callable[[], list]:
    """Start copying device `values` to the host now; the returned call waits for that copy only,
    not for the work queued after it (a plain read back waits for the whole stream)."""
    if values.device.type != "cuda":
        return values.tolist
    host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    host.copy_(values, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record(torch.cuda.current_stream(values.device))  # the copy's device, which may not be the current one

    def read() -> list:
        copied.synchronize()
        return host.tolist()

    return read


def rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """Qwen2VLRMSNorm's arithmetic: the fused kernel keeps float32 statistics and rounds once to
    x's dtype, as the module does; the weight multiplies after the rounding, as in the module."""
    return norm.weight * F.rms_norm(x, (x.shape[-1],), eps=norm.variance_epsilon)


def fold_sign(sin: torch.Tensor) -> torch.Tensor:
    """sin with rotate_half's sign folded in, computed once per step for every layer."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x*cos + rotate_half(x)*sin as swap-halves, mul, addcmul (signed_sin: sin with
    rotate_half's sign folded in)."""
    half = x.shape[-1] // 2
    swapped = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    return torch.addcmul(x * cos, swapped, signed_sin)


def rope_write(qkv: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, k_cache: torch.Tensor,
               v_cache: torch.Tensor, slot: torch.Tensor, n_heads: int, n_kv: int) -> torch.Tensor:
    """qkv (1, (heads + 2 kv) * D) -> rotated q (heads, 1, D); rotated k and v written to
    k_cache / v_cache (kv, capacity, D) at `slot` (a one-element device tensor)."""
    d = k_cache.shape[-1]
    nqk = (n_heads + n_kv) * d
    qk = apply_rope(qkv[..., :nqk].view(n_heads + n_kv, 1, d), cos[0], signed_sin[0])  # q and k rotated together
    k_cache.index_copy_(1, slot, qk[n_heads:])
    v_cache.index_copy_(1, slot, qkv[..., nqk:].view(n_kv, 1, d))
    return qk[:n_heads]


def rope_write_rows(qkv: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, k_pool: torch.Tensor,
                    v_pool: torch.Tensor, index: torch.Tensor, slots: torch.Tensor, n_heads: int,
                    n_kv: int) -> torch.Tensor:
    """`rope_write` for many rows (the engine core's decode step): qkv (rows, (heads + 2 kv) * D),
    cos / signed_sin (rows, D) -> q (heads, rows, D); row r's k and v go to slot slots[r] of slab
    index[r] of k_pool / v_pool (slabs, kv, capacity, D)."""
    rows, d = qkv.shape[0], k_pool.shape[-1]
    nqk = (n_heads + n_kv) * d
    qk = apply_rope(qkv[:, :nqk].view(rows, n_heads + n_kv, d).transpose(0, 1), cos, signed_sin)
    k_pool.permute(0, 2, 1, 3)[index, slots] = qk[n_heads:].transpose(0, 1)
    v_pool.permute(0, 2, 1, 3)[index, slots] = qkv[:, nqk:].view(rows, n_kv, d)
    return qk[:n_heads]


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@dataclass(frozen=True)
class DecodeOps:
    rms_norm: Callable
    rope_write: Callable
    silu_mul: Callable
    rope_write_rows: Callable


TORCH_OPS = DecodeOps(rms_norm, rope_write, silu_mul, rope_write_rows)


def decode_ops(device: torch.device) -> DecodeOps:
    """The Triton kernels on CUDA when Triton imports, else the torch ops above."""
    if device.type != "cuda":
        return TORCH_OPS
    try:
        from . import triton_fused
    except ImportError:
        return TORCH_OPS
    return DecodeOps(triton_fused.rms_norm, triton_fused.rope_write, triton_fused.silu_mul,
                     triton_fused.rope_write_rows)
