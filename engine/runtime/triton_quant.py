"""Triton kernels for QuantLinear on CUDA: a fused dequantize-GEMV for one token (decode) and a
dequantize-to-bf16 kernel for many tokens (prefill, vision: then cuBLAS does the GEMM).

Our own because the library kernels were slower for one token or wanted the weights a second time in
their own layout; these read QuantLinear's one packed layout, so fused q/k/v and gate/up rows, the CUDA-
graphed decode step and the reference runner all use the same bytes. Hopper converts integers to floats
at a quarter of the FMA rate, so the GEMV makes a nibble or byte a float by OR-ing it into the mantissa
of 2^23 and one subtraction; each thread holds several rows so one converted x serves them all, and the
next tile is loaded before the current one is used. The epilogue can add the residual (o_proj,
down_proj) or apply SiLU(gate) * up to fused gate/up rows, with the rounding of the separate torch ops.
Measurements and the rejected variants: docs/quantization.md. Autotuning results are cached on disk
with Triton's kernels (cache_results), so a later start does not tune again. LIVECC_NO_QUANT_KERNEL=1
falls back to plain-torch dequantization.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from engine.model.quantize import QuantLinear

_MAGIC = 0x4B000000  # the bits of 2^23: OR-ing n < 2^23 into the mantissa gives 2^23 + n exactly


def _bench(kernel_call, quantiles):
    """Autotuning's timer, shorter than Triton's default (25 + 100 ms a config and shape)."""
    return triton.testing.do_bench(kernel_call, warmup=5, rep=25, quantiles=quantiles)


# int4 (rows, groups of 128 per step, warps): threads spread over a step's words (16 a group,
# 4 a thread) and groups, so GROUPS >= 8 * warps; each thread keeps PAIR * BLOCK_N rows (and
# reuses x for them). Few rows suit the small-N layers (o_proj, down_proj: parallelism), many
# the large ones. int8 (rows, columns per step, warps).
_INT4_CONFIGS = [triton.Config({"BLOCK_N": n, "GROUPS": g}, num_warps=w)
                 for n, g, w in ((1, 8, 1), (2, 8, 1), (4, 8, 1), (8, 8, 1), (16, 8, 1), (4, 16, 1), (2, 16, 2),
                                 (4, 16, 2), (8, 16, 2), (1, 32, 4), (2, 32, 4), (4, 32, 4))]
_INT8_CONFIGS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)
                 for n, k, w in ((8, 512, 2), (16, 512, 4), (32, 512, 8), (8, 512, 4), (16, 512, 8), (4, 512, 1),
                                 (4, 256, 1), (8, 256, 2), (16, 256, 2), (4, 1024, 2), (2, 2048, 4), (32, 256, 4))]


def _fits(bytes_per_thread: int):
    """Autotuning skips tiles whose rows would not fit a thread's registers (a fused gate/up
    tile holds twice the rows)."""
    def prune(configs, named_args, **kwargs):
        def load(cfg):
            width = cfg.kwargs["GROUPS"] * 64 if "GROUPS" in cfg.kwargs else cfg.kwargs["BLOCK_K"]
            return kwargs["PAIR"] * cfg.kwargs["BLOCK_N"] * width // (32 * cfg.num_warps)
        return [cfg for cfg in configs if load(cfg) <= bytes_per_thread] or configs[:1]
    return {"early_config_prune": prune}


@triton.jit
def _epilogue(acc, rows, out_rows, live, b_ptr, r_ptr, out_ptr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr,
              PAIR: tl.constexpr):
    """acc (PAIR, BLOCK_N): float32 row sums. Rounds as the separate torch ops would: the linear's
    output, then SiLU(gate) (PAIR == 2: rows and rows + N/2 are gate and up), then the product,
    then the residual sum."""
    dtype = out_ptr.dtype.element_ty
    if HAS_BIAS:
        acc += tl.load(b_ptr + rows, mask=live[None, :], other=0).to(tl.float32)
    y = acc.to(dtype).to(tl.float32)
    if PAIR == 2:
        which = tl.arange(0, 2)[:, None]
        gate = tl.sum(tl.where(which == 0, y, 0.0), axis=0)
        up = tl.sum(tl.where(which == 1, y, 0.0), axis=0)
        act = tl.math.div_rn(gate, 1.0 + tl.exp(-gate))  # F.silu's float arithmetic (exp within 2 ulp)
        out = act.to(dtype).to(tl.float32) * up
    else:
        out = tl.sum(y, axis=0)
    if HAS_RES:
        out = out.to(dtype).to(tl.float32) + tl.load(r_ptr + out_rows, mask=live, other=0).to(tl.float32)
    tl.store(out_ptr + out_rows, out.to(dtype), mask=live)


@triton.jit
def _x_pair(x_ptr, m, inside, X_WORDS: tl.constexpr):
    """x at columns 2m and 2m + 1 in float32: one 32-bit load and two bit operations for bf16."""
    if X_WORDS:
        v = tl.load(x_ptr + m, mask=inside, other=0)
        return (v << 16).to(tl.float32, bitcast=True), (v & -65536).to(tl.float32, bitcast=True)
    else:
        even = tl.load(x_ptr + 2 * m, mask=inside, other=0).to(tl.float32)
        return even, tl.load(x_ptr + 2 * m + 1, mask=inside, other=0).to(tl.float32)


@triton.jit
def _nibble(word, magic, POS: tl.constexpr):
    """The nibble q at bits 4 POS.. of `word` as 16^POS (q - 8), exactly: masked in place and OR-ed
    into 2^23's mantissa (one LOP3), minus 2^23 + 8 16^POS. Its x is scaled by 16^-POS instead (exact)."""
    return ((word & (0xF << (4 * POS))) | magic).to(tl.float32, bitcast=True) - (8388608.0 + 8.0 * 16 ** POS)


@triton.autotune(_INT4_CONFIGS, key=["N", "K", "PAIR", "HAS_RES", "HAS_BIAS"], prune_configs_by=_fits(256),
                 do_bench=_bench, cache_results=True)
@triton.jit
def _gemv_int4(x_ptr, w_ptr, s_ptr, b_ptr, r_ptr, out_ptr, N, K, stride_w, stride_s, magic, GROUP: tl.constexpr,
               X_WORDS: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RES: tl.constexpr, PAIR: tl.constexpr,
               BLOCK_N: tl.constexpr, GROUPS: tl.constexpr):
    """A tile of 32-bit words per step (quantize_int4's layout: byte t of word c holds columns 2m
    and 2m + 1, m = t * WORDS + c), so byte lane t meets one contiguous run of x pairs. Five of a
    word's eight nibbles convert in place and the other three after one shift (see _nibble): nine
    integer operations per eight weights. `magic` (2^23's bits) comes in as an argument so that
    mask-and-OR is one LOP3 with it in a register."""
    WORDS: tl.constexpr = GROUP // 8
    n_out = N // PAIR
    out_rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    live = out_rows < n_out
    rows = tl.arange(0, PAIR)[:, None] * n_out + out_rows[None, :]  # (PAIR, BLOCK_N)
    # Tiles are (groups, pair, rows, words): Triton orders the dimensions after the contiguous
    # one by index, so threads spread over words then groups and each thread keeps its rows in
    # registers; x, indexed (groups, 1, 1, words), then loads in that very layout (no shuffle).
    g = tl.arange(0, GROUPS)
    c = tl.arange(0, WORDS)[None, None, None, :]
    n_groups = K // GROUP
    w_rows = w_ptr + rows[None, :, :, None] * stride_w
    s_rows = s_ptr + rows[None, :, :] * stride_s
    row_live = live[None, None, :, None]
    first = g[:, None, None, None]
    nxt = tl.load(w_rows + first * WORDS + c, mask=row_live & (first < n_groups), other=0,
                  eviction_policy="evict_first")
    acc = tl.zeros((GROUPS, PAIR, BLOCK_N), tl.float32)
    for g0 in range(0, n_groups, GROUPS):
        w = nxt
        grp = g0 + g
        grp4 = grp[:, None, None, None]
        ahead = grp4 + GROUPS  # the next step's words are in flight while this one computes
        nxt = tl.load(w_rows + ahead * WORDS + c, mask=row_live & (ahead < n_groups), other=0,
                      eviction_policy="evict_first")
        inside = grp4 < n_groups
        base = grp4 * (GROUP // 2) + c
        xe, xo = _x_pair(x_ptr, base, inside, X_WORDS)  # byte lane 0
        part = _nibble(w, magic, 0) * xe
        part += _nibble(w, magic, 1) * (xo * 0.0625)
        xe, xo = _x_pair(x_ptr, base + WORDS, inside, X_WORDS)  # lane 1
        part += _nibble(w, magic, 2) * (xe * 0.00390625)
        part += _nibble(w, magic, 3) * (xo * 0.000244140625)
        xe, xo = _x_pair(x_ptr, base + 2 * WORDS, inside, X_WORDS)  # lane 2: the last nibble in place
        part += _nibble(w, magic, 4) * (xe * 0.0000152587890625)
        w = w >> 16
        part += _nibble(w, magic, 1) * (xo * 0.0625)
        xe, xo = _x_pair(x_ptr, base + 3 * WORDS, inside, X_WORDS)  # lane 3
        part += _nibble(w, magic, 2) * (xe * 0.00390625)
        part += _nibble(w, magic, 3) * (xo * 0.000244140625)
        s = tl.load(s_rows + grp[:, None, None], mask=live[None, None, :] & (grp < n_groups)[:, None, None],
                    other=0)
        acc += tl.sum(part, axis=3) * s.to(tl.float32)
    _epilogue(tl.sum(acc, axis=0), rows, out_rows, live, b_ptr, r_ptr, out_ptr, HAS_BIAS, HAS_RES, PAIR)

@triton.autotune(_INT8_CONFIGS, key=["N", "K", "PAIR", "HAS_RES", "HAS_BIAS"], prune_configs_by=_fits(64),
                 do_bench=_bench, cache_results=True)
@triton.jit
def _gemv_int8(x_ptr, w_ptr, s_ptr, b_ptr, r_ptr, out_ptr, N, K, stride_w, magic, HAS_BIAS: tl.constexpr,
               HAS_RES: tl.constexpr, PAIR: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """A (pair, rows, columns) tile per step, summed elementwise and reduced once at the end. The
    byte q + 128 (q's bits with the sign flipped) goes into the mantissa of 2^23."""
    n_out = N // PAIR
    out_rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    live = out_rows < n_out
    rows = tl.arange(0, PAIR)[:, None] * n_out + out_rows[None, :]
    cols = tl.arange(0, BLOCK_K)
    w_rows = w_ptr + rows[:, :, None] * stride_w
    row_live = live[None, :, None]
    nxt = tl.load(w_rows + cols[None, None, :], mask=row_live & (cols < K)[None, None, :], other=0,
                  eviction_policy="evict_first")
    acc = tl.zeros((PAIR, BLOCK_N, BLOCK_K), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        q = nxt
        c = k0 + cols
        ahead = c + BLOCK_K
        nxt = tl.load(w_rows + ahead[None, None, :], mask=row_live & (ahead < K)[None, None, :], other=0,
                      eviction_policy="evict_first")
        x = tl.load(x_ptr + c, mask=c < K, other=0).to(tl.float32)
        w = (((q.to(tl.uint8, bitcast=True) ^ 0x80).to(tl.int32) | magic).to(tl.float32, bitcast=True)
             - 8388736.0)  # 2^23 + q + 128 - (2^23 + 128)
        acc += w * x[None, None, :]
    scale = tl.load(s_ptr + rows, mask=live[None, :], other=0).to(tl.float32)
    _epilogue(tl.sum(acc, axis=2) * scale, rows, out_rows, live, b_ptr, r_ptr, out_ptr, HAS_BIAS, HAS_RES, PAIR)


@triton.jit
def _dequant_pair(w, magic, s, out, live, LO: tl.constexpr, HI: tl.constexpr, dtype: tl.constexpr):
    """One byte lane of a word tile as its columns 2m, 2m + 1 side by side, rounded once as the
    plain-torch (q - 8) * scale is (the product of two bf16 is exact in float32)."""
    even = _nibble(w, magic, LO) * (s * (1.0 / 16 ** LO))
    odd = _nibble(w, magic, HI) * (s * (1.0 / 16 ** HI))
    pairs = tl.join(even, odd)  # (..., words, 2): columns interleave
    tl.store(out, tl.reshape(pairs, (pairs.shape[0], pairs.shape[1], 2 * pairs.shape[2])).to(dtype), mask=live)


@triton.jit
def _dequant_int4(w_ptr, s_ptr, out_ptr, N, K, stride_w, stride_s, magic, GROUP: tl.constexpr, BLOCK_N: tl.constexpr,
                  GROUPS: tl.constexpr):
    """(rows, groups) of the weight in out's dtype with the plain-torch dequantization's arithmetic."""
    WORDS: tl.constexpr = GROUP // 8
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    grp = tl.program_id(1) * GROUPS + tl.arange(0, GROUPS)
    c = tl.arange(0, WORDS)
    live2 = (rows < N)[:, None] & (grp < K // GROUP)[None, :]
    live = live2[:, :, None]
    w = tl.load(w_ptr + rows[:, None, None] * stride_w + (grp[:, None] * WORDS + c[None, :])[None], mask=live, other=0)
    s = tl.load(s_ptr + rows[:, None] * stride_s + grp[None, :], mask=live2, other=0).to(tl.float32)[:, :, None]
    dtype = out_ptr.dtype.element_ty
    lane = out_ptr + rows[:, None, None] * K + (grp[:, None] * GROUP + tl.arange(0, 2 * WORDS)[None, :])[None]
    _dequant_pair(w, magic, s, lane, live, 0, 1, dtype)
    _dequant_pair(w, magic, s, lane + 2 * WORDS, live, 2, 3, dtype)
    even = _nibble(w, magic, 4) * (s * (1.0 / 65536))  # lane 2: its low nibble in place, its high one shifted
    odd = _nibble(w >> 16, magic, 1) * (s * 0.0625)
    pairs = tl.join(even, odd)
    tl.store(lane + 4 * WORDS, tl.reshape(pairs, (BLOCK_N, GROUPS, 2 * WORDS)).to(dtype), mask=live)
    _dequant_pair(w >> 16, magic, s, lane + 6 * WORDS, live, 2, 3, dtype)


@triton.jit
def _dequant_int8(w_ptr, s_ptr, out_ptr, N, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    live = (rows < N)[:, None] & (cols < K)[None, :]
    dtype = out_ptr.dtype.element_ty
    q = tl.load(w_ptr + rows[:, None] * K + cols[None, :], mask=live, other=0).to(dtype)
    s = tl.load(s_ptr + rows, mask=rows < N, other=0).to(dtype)
    tl.store(out_ptr + rows[:, None] * K + cols[None, :], q * s[:, None], mask=live)


def _group(layer: QuantLinear) -> int:
    return layer.in_features // layer.scales.shape[1] if layer.bits == 4 else 1


def gemv(x: torch.Tensor, layer: QuantLinear, residual: torch.Tensor | None = None, glu: bool = False) -> torch.Tensor:
    """x (..., K) holding one token -> (..., N); plus `residual` (..., N) when given; with `glu`,
    the layer is fused gate/up rows and the result SiLU(gate) * up (..., N/2)."""
    n, k = layer.out_features, layer.in_features
    pair = 2 if glu else 1
    out = torch.empty(*x.shape[:-1], n // pair, dtype=x.dtype, device=x.device)
    bias = layer.bias if layer.bias is not None else layer.scales  # a placeholder pointer, never read
    res = residual.contiguous() if residual is not None else out
    grid = lambda meta: (triton.cdiv(n // pair, meta["BLOCK_N"]),)  # noqa: E731
    flags = dict(HAS_BIAS=layer.bias is not None, HAS_RES=residual is not None, PAIR=pair)
    x = x.contiguous()
    if layer.bits == 4:
        words = x.dtype == torch.bfloat16  # read x as bf16 pairs
        w32 = layer.qweight.view(torch.int32)
        _gemv_int4[grid](x.view(torch.int32) if words else x, w32, layer.scales, bias, res, out, n, k, w32.stride(0),
                         layer.scales.stride(0), _MAGIC, GROUP=_group(layer), X_WORDS=words, **flags)
    else:
        _gemv_int8[grid](x, layer.qweight, layer.scales, bias, res, out, n, k, layer.qweight.stride(0), _MAGIC, **flags)
    return out


def dequantize(layer: QuantLinear, dtype: torch.dtype) -> torch.Tensor:
    n, k = layer.out_features, layer.in_features
    out = torch.empty(n, k, dtype=dtype, device=layer.qweight.device)
    if layer.bits == 4:
        group, w32 = _group(layer), layer.qweight.view(torch.int32)
        block_n, groups = 16, max(1, 512 // group)
        _dequant_int4[(triton.cdiv(n, block_n), triton.cdiv(k // group, groups))](
            w32, layer.scales, out, n, k, w32.stride(0), layer.scales.stride(0), _MAGIC, GROUP=group,
            BLOCK_N=block_n, GROUPS=groups, num_warps=4)
    else:
        _dequant_int8[(triton.cdiv(n, 8), triton.cdiv(k, 1024))](layer.qweight, layer.scales, out, n, k, BLOCK_N=8,
                                                                 BLOCK_K=1024, num_warps=8)
    return out


def install() -> None:
    """Make QuantLinear use these kernels on CUDA tensors."""
    QuantLinear.kernels[8] = (gemv, dequantize)
    QuantLinear.kernels[4] = (gemv, dequantize)
