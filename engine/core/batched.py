"""The model work of many sessions in few launches (vLLM's `GPUModelRunner`, for video sessions).

- vision: every pending chunk of one frame size in one pass (Qwen2-VL attends within a temporal
  patch, so chunks stack along the temporal axis), CUDA-graphed for a few chunks;
- prefill: a step's lone piece of a token count seen before as CUDA graphs between its attentions
  (the fast runner's PiecewisePrefill, writing into its slab); several pieces in one varlen pass:
  the linears, rotary and cache writes run over all their tokens at once, and on CUDA one
  FlashAttention-2 varlen call a layer attends every piece over its own slab, in place;
- decode: one step for every decoding session, each token a row, CUDA-graphed per padded row count;
  a step that also has prefill pieces carries the rows in the pieces' pass instead (vLLM's chunked
  prefill): the rows' linears then cost nothing more than the pieces' read of the weights.

Each row's rotary, cache write and attention read only its own slab, so what a session gets does
not depend on who else is in the batch, up to rounding: of the shared matrix products, and of a
piece's attention kernel (SDPA alone in its step, the varlen launch with other pieces). The
layer arithmetic is the single-stream fast runner's (engine/runtime/fast.py), reused, not copied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from engine import flags
from engine.model.memory_plan import PREFILL_GRAPH_TOKENS, prefill_graphs_on
from engine.model.preprocess import VideoInputs
from engine.runtime.decode_ops import decode_ops, fold_sign, fused_on, rms_norm, upload
from engine.runtime.fast import StaticRunner
from engine.runtime.fused_linear import gated, linear, linear_add
from engine.runtime.graphs import CUDAGraphed, GraphPool, on_repeat
from engine.runtime.prefill_graphs import PiecewisePrefill
from engine.runtime.vision import FastVision

from .kv import KVPool, Slab

NET_CACHE = 16  # tokens of the layer runner's own cache, which the core never uses (slabs hold the KV)
BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128)  # decode batch sizes with a CUDA graph each (rows padded up)
PREFILL_GRAPH_SIZES = 8  # piece token counts with graphed prefills (chunk turns come in a few sizes a grid)
PASS_BUCKET = 32  # a graphed pass of several pieces, or rows with pieces, is padded to a multiple of this


def padded_size(n: int) -> int:
    """The token count a graphed pass of `n` tokens is padded to: the next multiple of PASS_BUCKET."""
    return -(-n // PASS_BUCKET) * PASS_BUCKET


@dataclass(frozen=True)
class Piece:
    """Part of one session's prefill: `ids` at `positions` (3, n), with the visual embeddings of its video tokens."""

    slab: Slab
    ids: torch.Tensor
    positions: torch.Tensor
    embeds: torch.Tensor | None
    video_slots: int | None = None  # video tokens among `ids`, counted on the host (None: count on the device)


class BatchedRunner:
    """Vision, prefill and decode for many sessions, each on its own KV slab of one pool."""

    def __init__(self, model: torch.nn.Module, pool: KVPool):
        self.net = StaticRunner(model, NET_CACHE, cuda_graphs=False)  # fused weights and the layer functions
        self.model, self.lm, self.pool = model, self.net.lm, pool
        self.video_token_id = model.config.video_token_id
        self.n_layers = len(self.lm.layers)
        self.buckets = [b for b in BUCKETS if b < pool.slabs] + [next(b for b in BUCKETS + (pool.slabs,)
                                                                      if b >= pool.slabs)]
        self._flash = self._make_flash()
        self._graphs: dict[int, CUDAGraphed] = {}
        graphs = self.device.type == "cuda" and not flags.get("LIVECC_NO_CUDA_GRAPH")
        self._graph_on = self._flash is not None and graphs
        # Decode, prefill and vision graphs run one at a time on the engine thread, each output copied
        # at once: they share one memory pool (a pool each held ~0.9 GB for one grid's vision graphs).
        self._pool = GraphPool()
        self.vision = FastVision(model, graphs, pool=self._pool)
        self._prefill_on = graphs and prefill_graphs_on()
        self._prefills: dict[int, PiecewisePrefill] = {}  # by token count
        self._prefill_sizes: set[int] = set()
        bf16 = isinstance(self.net.fused[0][0], torch.Tensor)  # (quantized weights keep the unfused layer)
        self._ops = decode_ops(self.device) if fused_on() and bf16 else None  # the decode step's fused small ops
        self.carries = not flags.get("LIVECC_NO_MIXED_STEP")  # decode rows and prefill pieces in one pass
        self._slab_rows = self._rows_views() if self._varlen_on() else None  # None: a SDPA call a piece
        # Passes of several pieces, or of rows with pieces, as padded piecewise graphs (fused layer only).
        self._pass_on = self._prefill_on and self._ops is not None and not flags.get("LIVECC_NO_PASS_GRAPH")
        self._passes: dict[int, PaddedPass] = {}  # by padded token count
        self._pass_sizes: set[int] = set()

    def _make_flash(self):
        """The Triton flash-decoding kernel over every slab at once (CUDA; LIVECC_NO_TRITON=1: per-row SDPA)."""
        if self.device.type != "cuda" or flags.get("LIVECC_NO_TRITON"):
            return None
        from engine.runtime.triton_attention import FlashDecode

        net = self.net
        return FlashDecode(net.n_kv, net.n_heads // net.n_kv, net.head_dim, self.pool.capacity, self.device,
                           rows=self.buckets[-1])

    def _varlen_on(self) -> bool:
        """FlashAttention-2's varlen kernel runs on Ampere and newer, in half precision (LIVECC_NO_VARLEN=1: off)."""
        return (self.device.type == "cuda" and not flags.get("LIVECC_NO_VARLEN")
                and torch.version.hip is None  # (ROCm's varlen call takes no seqused_k)
                and torch.backends.cuda.is_flash_attention_available()
                and self.pool.k.dtype in (torch.float16, torch.bfloat16)
                and torch.cuda.get_device_capability(self.device) >= (8, 0))

    def _rows_views(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's K and V pool as one (rows, kv_heads, head_dim) tensor, a row per slot: slab s's
        slot t is row s * kv_heads * capacity + t (the heads `capacity` rows apart). A varlen kernel
        then reads every slab in place, each sequence starting at its slab's first row."""
        pool = self.pool
        _, kv_heads, capacity, head_dim = pool.k[0].shape
        rows = (pool.k[0].shape[0] * kv_heads - (kv_heads - 1)) * capacity  # the last slab's last head ends the storage
        size, stride = (rows, kv_heads, head_dim), (head_dim, capacity * head_dim, 1)
        return [(k.as_strided(size, stride), v.as_strided(size, stride)) for k, v in zip(pool.k, pool.v)]

    @property
    def device(self) -> torch.device:
        return self.net.device

    # -- vision --------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, videos: list[VideoInputs]) -> list[torch.Tensor]:
        """Merged visual embeddings of each chunk; chunks of one grid go through the tower together."""
        out: list[torch.Tensor | None] = [None] * len(videos)
        by_grid: dict[tuple, list[int]] = {}
        for i, video in enumerate(videos):
            by_grid.setdefault(video.grid, []).append(i)
        for rows in by_grid.values():
            n = len(rows)
            pixels = torch.cat([videos[i].pixel_values_videos for i in rows])
            merged = self.vision.encode_stacked(pixels, videos[rows[0]], n)
            for i, part in zip(rows, merged.chunk(n)):
                out[i] = part
        return out

    # -- prefill -------------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, pieces: list[Piece]) -> torch.Tensor:
        """Append each piece to its slab; float logits of each piece's last token (pieces, vocab)."""
        for piece in pieces:
            piece.slab.room_for(piece.ids.numel())
        # A lone piece replays its graphs; several share one eager pass (their linears read the weights
        # once: a graphed pass each cost more GPU time at 24 streams on an H100).
        graph = self._piecewise(pieces[0].ids.numel()) if len(pieces) == 1 else None
        logits = self._prefill_graphed(pieces[0], graph)[None] if graph is not None else self._prefill_eager(pieces)
        for p in pieces:
            p.slab.length += p.ids.numel()
        return logits

    def _piecewise(self, n: int) -> PiecewisePrefill | None:
        """The graphed prefill of an `n`-token piece, made when n comes the second time, for at most
        PREFILL_GRAPH_SIZES counts; None: eager."""
        if n not in self._prefills and (not self._prefill_on or len(self._prefills) >= PREFILL_GRAPH_SIZES
                                        or n > PREFILL_GRAPH_TOKENS):
            return None
        return on_repeat(self._prefills, self._prefill_sizes, n, lambda: PiecewisePrefill(
            self.net, n, self._pool.handle(), write=self._write, on_failure=self.drop_prefill_graphs))

    def drop_prefill_graphs(self) -> None:
        """Prefill eagerly from now on (a failed capture, or a memory plan without room for them)."""
        self._prefill_on = self._pass_on = False
        self._prefills.clear()
        self._passes.clear()

    def _padded(self, n: int) -> PaddedPass | None:
        """The padded graphed pass for `n` tokens, made when its size comes the second time, up to
        PREFILL_GRAPH_TOKENS (what the memory plan leaves room for); None: eager."""
        size = padded_size(n)
        if not self._pass_on or size > PREFILL_GRAPH_TOKENS:
            return None
        pool = self._pool.handle() if self.device.type == "cuda" else None  # (none: eager, the CPU tests)
        return on_repeat(self._passes, self._pass_sizes, size, lambda: PaddedPass(
            self, size, pool, on_failure=self.drop_prefill_graphs))

    def _pass(self, x: torch.Tensor, cos, sin, index, slots, attend) -> torch.Tensor:
        """`_layers` for a pass of several pieces, or of rows with pieces: as padded piecewise graphs
        when there are some for its size, else eagerly."""
        graphed = self._padded(x.shape[1])
        if graphed is None:
            return self._layers(x, cos, sin, index, slots, attend)
        return graphed.run(x, cos, sin, index, slots, attend)

    def _prefill_graphed(self, piece: Piece, graph: PiecewisePrefill) -> torch.Tensor:
        x, cos, sin = self._inputs([piece])
        n, start, slab = piece.ids.numel(), piece.slab.length, piece.slab
        attend = self._attend_pieces([(slab, 0, n, start + n, causal_lower_right(n, start + n))])
        return graph.run(x, cos, sin, start, attend, slab=slab.index)

    def _inputs(self, pieces: list[Piece]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pieces' token embeddings, visual ones in their video slots, and their rotary (cos, signed sin)."""
        ids = torch.cat([p.ids for p in pieces]) if len(pieces) > 1 else pieces[0].ids
        x = self.lm.embed_tokens(ids[None])
        video = [p.embeds for p in pieces if p.embeds is not None and p.embeds.numel()]
        if video:
            is_video = ids == self.video_token_id
            embeds = torch.cat(video)
            slots = self._video_slots(pieces, is_video)
            if slots != embeds.shape[0]:  # on CUDA, masked_scatter would read past the embeddings
                raise RuntimeError(f"{slots} video slots for {embeds.shape[0]} visual embeddings")
            x = x.masked_scatter(is_video[None, :, None].expand_as(x), embeds.to(x.dtype))
        cos, sin = self.lm.rotary_emb(x, torch.cat([p.positions for p in pieces], dim=1)[:, None, :])
        return x, cos.unsqueeze(1), fold_sign(sin).unsqueeze(1)

    def _prefill_eager(self, pieces: list[Piece]) -> torch.Tensor:
        """The pieces in one pass: linears over all their tokens, attention per piece."""
        x, cos, sin = self._inputs(pieces)
        index, slots, attend, ends = self._piece_rows(pieces)
        x = self._pass(x, cos, sin, index, slots, attend)
        return self._logits(x[0, upload(ends, self.device)])

    def _piece_rows(self, pieces: list[Piece], offset: int = 0):
        """Each piece token's slab and slot (device), the pieces' attention over queries from
        `offset` on, and the row of each piece's last token."""
        sizes = [p.ids.numel() for p in pieces]
        spans, starts = self._spans(sizes), [p.slab.length for p in pieces]
        ends = [start + n for start, n in zip(starts, sizes)]  # each piece's slab length after it
        index, slots = [], []  # each token's slab and slot: one scattered write a layer for all pieces
        for p, start, end in zip(pieces, starts, ends):
            index += [p.slab.index] * (end - start)
            slots += range(start, end)
        index, slots = upload([index, slots], self.device)
        if self._slab_rows is not None and len(pieces) > 1 and max(sizes) > 1:
            # (a lone piece: SDPA splits its keys over more blocks, 0.10 against 0.13 ms a layer on an H100;
            # all of one token: FlashAttention's varlen call reshapes such queries as if contiguous)
            attend = self._attend_varlen(pieces, spans, ends, offset)
        else:  # New tokens see the whole slab and each other causally; the masks are made once, not per layer.
            attend = self._attend_pieces([(p.slab, offset + lo, offset + hi, end, causal_lower_right(hi - lo, end))
                                          for p, (lo, hi), end in zip(pieces, spans, ends)])
        return index, slots, attend, [offset + hi - 1 for _, hi in spans]

    def _layers(self, x: torch.Tensor, cos, sin, index, slots, attend) -> torch.Tensor:
        """Every layer over x (1, rows, hidden): row r's K and V to slot slots[r] of slab index[r]
        (cos, sin: (1, 1, rows, head_dim)); the fused layer when the weights are bf16 and it is on."""
        def write(i, k, v):
            self._write(i, k, v, index, slots)

        for i in range(self.n_layers):
            if self._ops is not None:
                x = self._layer_rows(i, x, cos[0, 0], sin[0, 0], index, slots, attend)
            else:
                x = self.net._layer(i, x, cos, sin, write, attend)
        return x

    def _logits(self, last: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(rms_norm(last, self.lm.norm)).float()

    def _write(self, i: int, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor, slots: torch.Tensor) -> None:
        """Layer i's K and V (kv_heads, tokens, head_dim): token t to slot slots[t] of slab index[t]."""
        self.pool.k[i].permute(0, 2, 1, 3)[index, slots] = k.transpose(0, 1)
        self.pool.v[i].permute(0, 2, 1, 3)[index, slots] = v.transpose(0, 1)

    @staticmethod
    def _attend_pieces(views: list[tuple]):
        """Attention of each piece's queries (slab, lo, hi, end, mask) over its slab's first `end` slots."""
        def attend(i, q):
            outs = []
            for slab, lo, hi, end, mask in views:
                o = F.scaled_dot_product_attention(q[None, :, lo:hi], slab.k[None, i, :, :end],
                                                   slab.v[None, i, :, :end], attn_mask=mask, enable_gqa=True)
                outs.append(o[0].transpose(0, 1).reshape(hi - lo, -1))
            return torch.cat(outs) if len(outs) > 1 else outs[0]

        return attend

    def _attend_varlen(self, pieces: list[Piece], spans: list[tuple[int, int]], ends: list[int], offset: int):
        """Every piece's attention in one FlashAttention-2 varlen launch a layer (queries from `offset`
        on): piece b's queries over its slab's rows up to its end (`seqused_k`), causal from the bottom
        right, so new tokens see the whole slab and each other causally, as `_attend_pieces` does."""
        net = self.net
        per_slab = net.n_kv * self.pool.capacity
        cu_q = [lo for lo, _ in spans] + [spans[-1][1]]
        cu_k = [p.slab.index * per_slab for p in pieces] + [0]  # sequence starts; seqused_k gives the lengths
        cu_q, cu_k, used = upload([cu_q, cu_k, ends + [0]], self.device, torch.int32)  # one copy to the GPU
        used = used[:len(pieces)]
        max_q, max_k, scale = max(hi - lo for lo, hi in spans), max(ends), 1.0 / math.sqrt(net.head_dim)
        tokens = spans[-1][1]

        def attend(i, q):  # q: (heads, queries, head_dim) -> (piece tokens, hidden)
            k, v = self._slab_rows[i]
            out = torch.ops.aten._flash_attention_forward(
                q[:, offset:].transpose(0, 1), k, v, cu_q, cu_k, max_q, max_k, 0.0, True, False, scale=scale,
                seqused_k=used)[0]
            return out.reshape(tokens, -1)

        return attend

    def _video_slots(self, pieces: list[Piece], is_video: torch.Tensor) -> int:
        if all(p.video_slots is not None for p in pieces):
            return sum(p.video_slots for p in pieces)
        return int(is_video.sum())  # a read back: the step waits for the GPU here

    @staticmethod
    def _spans(sizes: list[int]) -> list[tuple[int, int]]:
        spans, lo = [], 0
        for n in sizes:
            spans.append((lo, lo + n))
            lo += n
        return spans

    # -- warm start ----------------------------------------------------------------------
    @torch.inference_mode()
    def warm_up(self, passes_at_most: int = 8) -> None:
        """Run, on the pool's free slabs, the decode step of every row bucket and, with the pass graphs,
        a pass of rows and a piece at every padded size until its graphs are captured (at most
        `passes_at_most` passes a size): the captures a core's first streams would otherwise wait for,
        done before any stream joins (off: LIVECC_NO_WARM_START=1). The writes land in slots the slabs'
        next sessions overwrite; every slab is left empty. Nothing runs where nothing would be captured
        (the CPU, LIVECC_NO_CUDA_GRAPH=1 with the pass graphs off)."""
        if not (self._graph_on or self._pass_on):
            return
        slabs = [self.pool.take() for _ in range(self.pool.free)]
        try:
            for size in self.buckets:
                self.decode([(slab, 0, 0) for slab in slabs[:size]])
            if not (self._pass_on and self.carries and len(slabs) > 1):
                return
            top = min(PREFILL_GRAPH_TOKENS, slabs[1].capacity + 1)
            for size in range(PASS_BUCKET, top + 1, PASS_BUCKET):
                ids = torch.zeros(size - 1, dtype=torch.long, device=self.device)
                piece = Piece(slabs[1], ids, torch.arange(size - 1, device=self.device).expand(3, -1), None, 0)
                for _ in range(passes_at_most):
                    graphed = self._passes.get(size)
                    if graphed is not None and graphed.captured:
                        break
                    self.decode([(slabs[0], 0, 0)], pieces=[piece])
                    slabs[1].length = 0
        finally:
            for slab in slabs:
                self.pool.give(slab)

    # -- decode --------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, rows: list[tuple[Slab, int | None, int]], fill: tuple[list[int], torch.Tensor] | None = None,
               pieces: list[Piece] = ()) -> torch.Tensor:
        """Feed one token to each (slab, token, position), written at the slab's `length`; float
        logits (rows, vocab). The caller moves the lengths (a row run ahead counts only once taken).
        `fill`: (row indices, device token ids) for rows whose token is None: picks not read yet.
        `pieces`: prefill pieces of other sessions to carry in the same pass (`carries`); their
        logits follow the rows' (rows + pieces, vocab), and their slabs' lengths move here."""
        slabs = [slab for slab, _, _ in rows]
        for slab in slabs:
            slab.room_for(1)
        state = torch.tensor([[token or 0, position, slab.index, slab.length] for slab, token, position in rows])
        state = state.t().contiguous()  # rows of (token, position, slab, slot): the kernel reads dense rows
        if pieces:
            return self._mixed(state, fill, slabs, pieces)
        if self._flash is None:
            state = self._filled(state.to(self.device), fill)
            return self._step(state, self._attend_rows(slabs, [s.length + 1 for s in slabs]))
        if self._graph_on:
            return self._replay(state, fill)
        return self._step(self._filled(upload(state, self.device), fill))

    @staticmethod
    def _filled(state: torch.Tensor, fill: tuple[list[int], torch.Tensor] | None) -> torch.Tensor:
        if fill is not None:
            state[0, upload(fill[0], state.device)] = fill[1]
        return state

    def _replay(self, state: torch.Tensor, fill=None) -> torch.Tensor:
        """The step as the CUDA graph of the next bucket size up; padded rows feed token 0 into
        the scratch slab. (LIVECC_NO_CUDA_GRAPH=1: eager.)"""
        rows = state.shape[1]
        size = next(b for b in self.buckets if b >= rows)
        padded = torch.zeros(4, size, dtype=torch.long)
        padded[2] = self.pool.scratch
        padded[:, :rows] = state
        padded = self._filled(upload(padded, self.device), fill)  # without waiting for the GPU
        if size not in self._graphs:
            self._graphs[size] = CUDAGraphed(self._step, [padded], pool=self._pool.handle())
        return self._graphs[size](padded)[:rows].clone()  # the graph rewrites its output

    def _step(self, state: torch.Tensor, attend=None) -> torch.Tensor:
        """One decode step on device `state` (4, rows): device tensors only, so a graph can hold it."""
        tokens, positions, index, slots = state
        x = self.lm.embed_tokens(tokens[None])
        cos, sin = self._row_rope(positions, x.dtype)
        x = self._layers(x, cos, sin, index, slots, attend or self._attend_flash(index, slots + 1))
        return self._logits(x[0])

    def _row_rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, signed sin) (1, 1, rows, head_dim) of decode rows at text `positions`."""
        cos, sin = self.net._text_rope(positions, dtype)
        return cos.unsqueeze(1), fold_sign(sin).unsqueeze(1)

    def _mixed(self, state: torch.Tensor, fill, slabs: list[Slab], pieces: list[Piece]) -> torch.Tensor:
        """Decode rows and prefill pieces in one eager pass: the rows ride in the pieces' linears,
        which read the weights once for both. Each row attends as in a decode step (its slab up to
        its slot), each piece as in a prefill; logits of the rows, then of each piece's last token."""
        for piece in pieces:
            piece.slab.room_for(piece.ids.numel())
        rows = state.shape[1]
        tokens, positions, index, slots = self._filled(upload(state, self.device), fill)
        px, pcos, psin = self._inputs(pieces)
        rcos, rsin = self._row_rope(positions, px.dtype)
        x = torch.cat([self.lm.embed_tokens(tokens[None]), px], dim=1)
        cos, sin = torch.cat([rcos, pcos], dim=2), torch.cat([rsin, psin], dim=2)
        p_index, p_slots, attend_pieces, ends = self._piece_rows(pieces, offset=rows)
        attend_rows = (self._attend_flash(index, slots + 1) if self._flash is not None
                       else self._attend_rows(slabs, [s.length + 1 for s in slabs]))

        def attend(i, q):  # q: (heads, rows + piece tokens, head_dim)
            return torch.cat([attend_rows(i, q[:, :rows]), attend_pieces(i, q)])

        x = self._pass(x, cos, sin, torch.cat([index, p_index]), torch.cat([slots, p_slots]), attend)
        logits = self._logits(x[0, upload(list(range(rows)) + ends, self.device)])
        for p in pieces:
            p.slab.length += p.ids.numel()
        return logits

    def _layer_rows(self, i: int, x: torch.Tensor, cos, signed_sin, index, slots, attend) -> torch.Tensor:
        """The fast runner's fused decode layer (`_layer_fused`) for many rows, each row's K and V
        into its own slab: norm, rotary + cache write and SiLU * up one kernel each, every row
        rounded as alone (engine/runtime/triton_fused.py). cos, signed_sin: (rows, head_dim)."""
        return self._post_rows(i, x, attend(i, self._pre_rows(i, x, cos, signed_sin, index, slots)))

    def _pre_rows(self, i: int, x: torch.Tensor, cos, signed_sin, index, slots) -> torch.Tensor:
        """`_layer_rows` up to its attention: q (heads, rows, head_dim); K and V into the slabs."""
        layer, ops, net = self.lm.layers[i], self._ops, self.net
        qkv_w, qkv_b, _ = net.fused[i]
        qkv = linear(ops.rms_norm(x.view(x.shape[-2], -1), layer.input_layernorm), qkv_w, qkv_b)
        return ops.rope_write_rows(qkv, cos, signed_sin, self.pool.k[i], self.pool.v[i], index, slots, net.n_heads,
                                   net.n_kv)

    def _post_rows(self, i: int, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """`_layer_rows` from its attention output `out` (rows, hidden) on."""
        layer, ops = self.lm.layers[i], self._ops
        h = linear_add(x.view(x.shape[-2], -1), out, layer.self_attn.o_proj)
        act = gated(ops.rms_norm(h, layer.post_attention_layernorm), self.net.fused[i][2], ops.silu_mul)
        return linear_add(h, act, layer.mlp.down_proj).view(x.shape)

    def _attend_flash(self, index: torch.Tensor, lengths: torch.Tensor):
        net = self.net
        scale, groups = 1.0 / math.sqrt(net.head_dim), net.n_heads // net.n_kv

        def attend(i, q):  # q: (heads, rows, head_dim) -> (rows, kv_heads, groups, head_dim)
            rows = q.shape[1]
            grouped = q.reshape(net.n_kv, groups, rows, net.head_dim).permute(2, 0, 1, 3)
            out = self._flash.batched(grouped, self.pool.k[i], self.pool.v[i], lengths, index, scale)
            return out.reshape(rows, -1)

        return attend

    @staticmethod
    def _attend_rows(slabs: list[Slab], ends: list[int]):
        def attend(i, q):  # q: (heads, rows, head_dim); each row over its own slab
            outs = []
            for b, (slab, end) in enumerate(zip(slabs, ends)):
                o = F.scaled_dot_product_attention(q[None, :, b:b + 1], slab.k[None, i, :, :end],
                                                   slab.v[None, i, :, :end], enable_gqa=True)
                outs.append(o[0].transpose(0, 1).reshape(1, -1))
            return torch.cat(outs)

        return attend


class PaddedPass(PiecewisePrefill):
    """A pass of up to `size` tokens of the engine core (several prefill pieces, or decode rows with
    pieces) as the piecewise graphs of the single-stream prefill, on the core's fused rows layer:
    graph i runs the rest of layer i - 1 and layer i up to its attention, and the attention, whose
    shape is each step's own, runs eagerly between (a layer's ~10 launches become a replay and the
    attention's few). A pass of n tokens is padded to `size`: the padding rows are zeros, write
    their K and V to the pool's scratch slab, and are left out of the attention and the result.
    Graphs are captured from the second run on (the first compiles and tunes at this size)."""

    def __init__(self, core: BatchedRunner, size: int, pool, on_failure):
        self.core, self.runs = core, 0
        super().__init__(core.net, size, pool, write=core._write, on_failure=on_failure)

    @property
    def captured(self) -> bool:
        """Whether every graph is captured (or none can be: no graph pool, as on the CPU)."""
        return self.pool is None or all(graph is not None for graph in self.graphs)

    def _step(self, i: int):
        core, last = self.core, self.core.n_layers

        def step():
            if i > 0:
                self.x.copy_(core._post_rows(i - 1, self.x, self.o))
            if i < last:
                self.q.copy_(core._pre_rows(i, self.x, self.cos[0, 0], self.sin[0, 0], self.slab, self.slots))
                return None
            return self.x

        return step

    def run(self, x: torch.Tensor, cos, signed_sin, index, slots, attend) -> torch.Tensor:
        """The pass's hidden states after the last layer (1, n, hidden): a view of the graphs' buffer,
        which the next run rewrites."""
        n = x.shape[1]
        for buf, value, pad in ((self.x[0], x[0], 0), (self.cos[0, 0], cos[0, 0], 0), (self.sin[0, 0], signed_sin[0, 0], 0),
                                (self.slab, index, self.core.pool.scratch), (self.slots, slots, 0)):
            buf[:n].copy_(value)
            buf[n:].fill_(pad)
        if self.runs:
            self._capture_some()
        self.runs += 1
        return self._run_steps(attend, n)[:, :n]
