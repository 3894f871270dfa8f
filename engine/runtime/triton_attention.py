"""Flash-decoding for one query token over the static KV cache (CUDA, Triton).

The decode step's attention is tiny (7 query heads per KV head, one token) but reads the whole
cache; as three library kernels (scores GEMM, softmax, probs x V) it costs ~30 us a layer, mostly
fixed overhead. Here: split the cache into S slices, one program per (KV head, slice) keeps an
online softmax over its keys, a second kernel merges the slices. The valid length is read from
device memory, so one CUDA graph serves every context length.

Used by engine/runtime/fast.py on CUDA unless LIVECC_NO_TRITON=1; the batched-GEMM attention there is
its reference (benchmarks/bench_engine.py checks the two agree on the GPU).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

SPLITS = 128
BLOCK_N = 64


@triton.jit
def _split_kernel(q_ptr, k_ptr, v_ptr, len_ptr, slab_ptr, part_ptr, m_ptr, l_ptr, scale,
                  stride_qb, stride_qh, stride_qg, stride_kb, stride_kh, stride_kn, stride_vb, stride_vh, stride_vn,
                  H: tl.constexpr, G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr, CHUNK: tl.constexpr,
                  BLOCK: tl.constexpr, S: tl.constexpr):
    h = tl.program_id(0)
    s = tl.program_id(1)
    b = tl.program_id(2)  # the row: one session's query, over the cache slab `slab_ptr[b]`
    length = tl.load(len_ptr + b)
    slab = tl.load(slab_ptr + b)
    q_ptr += b * stride_qb
    k_ptr += slab * stride_kb
    v_ptr += slab * stride_vb
    start = s * CHUNK
    end = tl.minimum(start + CHUNK, length)
    offs_g = tl.arange(0, GP)
    offs_d = tl.arange(0, D)
    q = tl.load(q_ptr + h * stride_qh + offs_g[:, None] * stride_qg + offs_d[None, :],
                mask=offs_g[:, None] < G, other=0.0)
    m_i = tl.full([GP], float("-inf"), tl.float32)
    l_i = tl.zeros([GP], tl.float32)
    acc = tl.zeros([GP, D], tl.float32)
    for n0 in range(start, end, BLOCK):
        offs_n = n0 + tl.arange(0, BLOCK)
        valid = offs_n < end
        k = tl.load(k_ptr + h * stride_kh + offs_n[:, None] * stride_kn + offs_d[None, :],
                    mask=valid[:, None], other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        scores = tl.where(valid[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, 1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(scores - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_ptr + h * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :],
                    mask=valid[:, None], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        m_i = m_new
    # Only the real groups of a slice that holds keys: the merge reads nothing else.
    row = ((b * H + h) * S + s) * GP + offs_g
    live = (offs_g < G) & (start < length)
    tl.store(m_ptr + row, m_i, mask=live)
    tl.store(l_ptr + row, l_i, mask=live)
    tl.store(part_ptr + row[:, None] * D + offs_d[None, :], acc, mask=live[:, None])


@triton.jit
def _merge_kernel(part_ptr, m_ptr, l_ptr, len_ptr, out_ptr, H: tl.constexpr, G: tl.constexpr, GP: tl.constexpr,
                  D: tl.constexpr, S: tl.constexpr, CHUNK: tl.constexpr):
    h = tl.program_id(0)
    g = tl.program_id(1)
    b = tl.program_id(2)
    offs_s = tl.arange(0, S)
    offs_d = tl.arange(0, D)
    rows = ((b * H + h) * S + offs_s) * GP + g
    held = offs_s * CHUNK < tl.load(len_ptr + b)  # slices past the length were not written: they weigh nothing
    m = tl.load(m_ptr + rows, mask=held, other=float("-inf"))
    l = tl.load(l_ptr + rows, mask=held, other=0.0)
    m_max = tl.max(m, 0)
    w = tl.where(l > 0, tl.exp(m - m_max), 0.0)
    acc = tl.load(part_ptr + rows[:, None] * D + offs_d[None, :], mask=held[:, None], other=0.0)
    out = tl.sum(acc * w[:, None], 0) / tl.sum(w * l, 0)
    tl.store(out_ptr + ((b * H + h) * G + g) * D + offs_d, out.to(out_ptr.dtype.element_ty))


class FlashDecode:
    """Attention of grouped queries (kv_heads, groups, d) over keys/values (kv_heads, capacity, d)
    up to a device-side length; or, batched, of queries (rows, kv_heads, groups, d), row b over the
    slab `slabs[b]` of keys/values (slabs, kv_heads, capacity, d) up to `lengths[b]` (the engine
    core's decode step). Scratch buffers are allocated once, so calls can be graph-captured."""

    def __init__(self, kv_heads: int, groups: int, head_dim: int, capacity: int, device: torch.device,
                 rows: int = 1):
        self.kv_heads, self.groups, self.head_dim, self.rows = kv_heads, groups, head_dim, rows
        self.gp = max(16, triton.next_power_of_2(groups))  # tl.dot needs 16 rows
        self.chunk = triton.cdiv(triton.cdiv(capacity, SPLITS), BLOCK_N) * BLOCK_N
        n = rows * kv_heads * SPLITS * self.gp
        self.part = torch.empty(n, head_dim, dtype=torch.float32, device=device)
        self.m = torch.empty(n, dtype=torch.float32, device=device)
        self.l = torch.empty(n, dtype=torch.float32, device=device)
        self._slab0 = torch.zeros(1, dtype=torch.long, device=device)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: torch.Tensor,
                 scale: float) -> torch.Tensor:
        """One query's groups (kv_heads, groups, d) over one cache (kv_heads, capacity, d)."""
        return self.batched(q[None], k[None], v[None], length, self._slab0, scale)[0]

    def batched(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: torch.Tensor,
                slabs: torch.Tensor, scale: float) -> torch.Tensor:
        rows = q.shape[0]
        if rows > self.rows:
            raise ValueError(f"{rows} rows, scratch for {self.rows}")
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # the merge writes it densely
        _split_kernel[(self.kv_heads, SPLITS, rows)](
            q, k, v, lengths, slabs, self.part, self.m, self.l, scale,
            q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
            v.stride(0), v.stride(1), v.stride(2),
            H=self.kv_heads, G=self.groups, GP=self.gp, D=self.head_dim, CHUNK=self.chunk, BLOCK=BLOCK_N, S=SPLITS)
        _merge_kernel[(self.kv_heads, self.groups, rows)](self.part, self.m, self.l, lengths, out, H=self.kv_heads,
                                                          G=self.groups, GP=self.gp, D=self.head_dim, S=SPLITS,
                                                          CHUNK=self.chunk)
        return out
