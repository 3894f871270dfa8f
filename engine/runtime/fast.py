"""The fast path: a preallocated KV cache (kv_cache.py), a CUDA-graphed one-token decode step,
graphed prefill pieces (prefill_graphs.py) and a vision tower that attends per temporal patch in
one batched call (vision.py), over fused projections (fused_linear.py).

It runs the model's own modules and weights (norms, projections, MLPs, rotary embedding); only
the attention over the static cache and the vision attention are written here. `EagerRunner` is
its reference: on the same weights it must produce the same tokens (tests/test_fast_path.py).

Off switches (environment): LIVECC_NO_FAST=1 uses the eager reference everywhere;
LIVECC_NO_CUDA_GRAPH=1 keeps the static cache but runs every step eagerly; LIVECC_NO_TRITON=1
replaces the Triton flash-decoding attention by batched GEMMs (one graph per 1k of context);
LIVECC_NO_FUSED=1 runs the decode step's norms, rotary, cache writes and activations as separate
torch ops (`_layer`) instead of the fused kernels (`_layer_fused`); LIVECC_NO_DECODE_AHEAD=1 reads
each greedy token back before queuing the next step (`picks`); LIVECC_NO_PREFILL_GRAPH=1 prefills
without CUDA graphs (`PiecewisePrefill`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from engine import flags
from engine.model.memory_plan import PREFILL_GRAPH_TOKENS, prefill_graphs_on
from engine.model.preprocess import VideoInputs

from .decode_ops import apply_rope, decode_ops, fold_sign, fused_on, rms_norm, silu_mul
from .decode_state import DecodeState
from .fused_linear import fuse_layer, gated, linear, linear_add
from .graphs import CUDAGraphed, GraphPool, on_repeat
from .kv_cache import StaticKVCache
from .prefill_graphs import PiecewisePrefill
from .quant_kernels import install_quant_kernels
from .vision import FastVision



class StaticRunner:
    """Drop-in for EagerRunner: same interface, static cache, graphed decode on CUDA."""

    name = "static"
    supports_picks = True  # engine/runtime/runner.py: `picks`, `drop_prefill_graphs`
    supports_prefill_graphs = True

    def __init__(self, model: torch.nn.Module, max_tokens: int, cuda_graphs: bool | None = None):
        self.model = model
        self.lm = model.model.language_model
        cfg = model.config.text_config
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.video_token_id = model.config.video_token_id
        weight = self.lm.embed_tokens.weight  # lm_head may be quantized: the embedding keeps the compute dtype
        install_quant_kernels()
        self.cache = StaticKVCache(len(self.lm.layers), self.n_kv, self.head_dim, max_tokens, weight.dtype, weight.device)
        # Fused once per model: a second runner reuses the views instead of concatenating again.
        self.fused = getattr(model, "_livecc_fused", None) or [fuse_layer(layer) for layer in self.lm.layers]
        model._livecc_fused = self.fused
        if cuda_graphs is None:
            cuda_graphs = weight.device.type == "cuda" and not flags.get("LIVECC_NO_CUDA_GRAPH")
        self.cuda_graphs = cuda_graphs
        self._decode_graphs: dict[int, CUDAGraphed] = {}
        self._pick_graphs: dict[object, dict[int, CUDAGraphed]] = {}
        self._pool = GraphPool()  # decode and prefill graphs never run concurrently: they share memory
        self._flash = self._make_flash_decode()
        self._ops = decode_ops(self.device) if fused_on() else None  # the decode step's fused small ops
        self._prefill_warm = weight.device.type != "cuda"
        on_gpu = self.device.type == "cuda"
        self._state_host = DecodeState.zeros(pin_memory=on_gpu)  # `decode`'s step
        # The greedy run's device state (`_pick_step`), its host staging, and the last two ids read back.
        self._pick_state = DecodeState.zeros(self.device)
        self._pick_host = DecodeState.zeros(pin_memory=on_gpu)
        self._picked = torch.zeros(2, dtype=torch.long, pin_memory=on_gpu)
        self._pick_done = [torch.cuda.Event() for _ in range(2)] if on_gpu else None
        self._ahead = not flags.get("LIVECC_NO_DECODE_AHEAD")
        self._prefill_graphs = cuda_graphs and prefill_graphs_on()
        self._prefills: dict[int, PiecewisePrefill] = {}  # by token count
        self._prefill_sizes: set[int] = set()
        self.vision = FastVision(model, cuda_graphs)

    def _make_flash_decode(self):
        if self.device.type != "cuda" or flags.get("LIVECC_NO_TRITON"):
            return None
        try:
            from .triton_attention import FlashDecode
        except ImportError:
            return None
        return FlashDecode(self.n_kv, self.n_heads // self.n_kv, self.head_dim, self.cache.capacity, self.device)

    # -- runner interface ------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.lm.embed_tokens.weight.device

    @property
    def length(self) -> int:
        return self.cache.length

    def forget_selection(self) -> None:
        """A new session brings its own sampler: drop the decode graphs that captured the old one's."""
        self._pick_graphs.clear()
        if not self._decode_graphs and not self._prefills:
            self._pool.drop()

    def reset(self) -> None:
        self.cache.length = 0

    def drop_prefill_graphs(self) -> None:
        """Prefill eagerly from now on (the memory plan's choice on a card without room for them)."""
        self._prefill_graphs = False
        self._prefills.clear()

    def crop(self, length: int) -> None:
        """Forget every cached token from `length` on: the slots are overwritten by what comes next."""
        self.cache.length = min(self.cache.length, length)

    # -- language model --------------------------------------------------------------------
    def _layer(self, i: int, x: torch.Tensor, cos, signed_sin, write, attend) -> torch.Tensor:
        return self._post_attention(i, x, attend(i, self._pre_attention(i, x, cos, signed_sin, write)))

    def _pre_attention(self, i: int, x: torch.Tensor, cos, signed_sin, write) -> torch.Tensor:
        """Layer i up to its attention: norm, q/k/v, rotary; k and v go to `write`. Returns q (heads, n, d)."""
        layer = self.lm.layers[i]
        qkv_w, qkv_b, _ = self.fused[i]
        b, n, _ = x.shape
        qkv = linear(rms_norm(x, layer.input_layernorm), qkv_w, qkv_b)
        nqk = (self.n_heads + self.n_kv) * self.head_dim
        qk = qkv[..., :nqk].view(b, n, self.n_heads + self.n_kv, self.head_dim).transpose(1, 2)
        qk = apply_rope(qk, cos, signed_sin)  # q and k rotated together
        q, k = qk[:, :self.n_heads], qk[:, self.n_heads:]
        v = qkv[..., nqk:].view(b, n, self.n_kv, self.head_dim).transpose(1, 2)
        write(i, k[0], v[0])
        return q[0]

    def _post_attention(self, i: int, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Layer i from its attention output `out` (n, heads * head_dim) on: o_proj, residual, MLP."""
        layer = self.lm.layers[i]
        b, n, _ = x.shape
        h = linear_add(x.view(n, -1), out, layer.self_attn.o_proj)
        act = silu_mul(linear(rms_norm(h, layer.post_attention_layernorm), self.fused[i][2]))
        return linear_add(h, act, layer.mlp.down_proj).view(b, n, -1)

    def _layer_fused(self, i: int, x: torch.Tensor, cos, signed_sin, slot: torch.Tensor, attend) -> torch.Tensor:
        """`_layer` for one decode token in fewer kernels: norm, rotary + cache write, residual adds
        and SiLU * up each one (engine/runtime/decode_ops.py; the quantized GEMV takes the last two)."""
        layer, ops = self.lm.layers[i], self._ops
        qkv_w, qkv_b, gate_up_w = self.fused[i]
        h = x.view(1, -1)
        qkv = linear(ops.rms_norm(h, layer.input_layernorm), qkv_w, qkv_b)
        q = ops.rope_write(qkv, cos, signed_sin, self.cache.k[i], self.cache.v[i], slot, self.n_heads, self.n_kv)
        h = linear_add(h, attend(i, q), layer.self_attn.o_proj, fused=True)
        act = gated(ops.rms_norm(h, layer.post_attention_layernorm), gate_up_w, ops.silu_mul)
        return linear_add(h, act, layer.mlp.down_proj, fused=True).view(x.shape)

    def _grouped(self, q: torch.Tensor) -> torch.Tensor:
        """(heads, n, d) -> (kv_heads, groups * n, d): GQA as plain attention per KV head."""
        h, n, d = q.shape
        return q.reshape(self.n_kv, (h // self.n_kv) * n, d)

    def _ungrouped(self, o: torch.Tensor, n: int) -> torch.Tensor:
        """(kv_heads, groups * n, d) -> (n, heads * d)."""
        return o.reshape(self.n_heads, n, self.head_dim).transpose(0, 1).reshape(n, -1)

    PREFILL_PIECE = 2048  # tokens per forward: bounds the MLP's transient memory during compactions

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, positions: torch.Tensor, video_embeds: torch.Tensor | None) -> torch.Tensor:
        """Append a segment, in pieces of at most PREFILL_PIECE tokens; logits of its last token."""
        self.cache.room_for(ids.numel())
        if not self._prefill_warm:
            self._warm_up_prefill()
        is_video = ids == self.video_token_id
        used = 0
        for lo in range(0, ids.numel(), self.PREFILL_PIECE):
            hi = min(lo + self.PREFILL_PIECE, ids.numel())
            n_video = int(is_video[lo:hi].sum()) if video_embeds is not None else 0
            piece_embeds = video_embeds[used:used + n_video] if n_video else None
            used += n_video
            logits = self._prefill_piece(ids[lo:hi], positions[:, lo:hi], piece_embeds)
        return logits

    def _warm_up_prefill(self) -> None:
        """Run one full-size piece into free cache slots once, so the first compaction does not pay
        for kernel selection at that size (it tripled that stall; docs/bounded-context.md)."""
        self._prefill_warm = True
        start, n = self.cache.length, self.PREFILL_PIECE
        if start + n > self.cache.capacity:
            return
        ids = torch.zeros(n, dtype=torch.long, device=self.device)
        self._prefill_piece(ids, torch.arange(n, device=self.device).expand(3, -1), None)
        self.cache.length = start  # the slots written are free again

    def _prefill_piece(self, ids: torch.Tensor, positions: torch.Tensor, video_embeds: torch.Tensor | None) -> torch.Tensor:
        n, start = ids.numel(), self.cache.length
        x = self.lm.embed_tokens(ids[None])
        if video_embeds is not None and video_embeds.numel():
            mask = (ids == self.video_token_id)[None, :, None].expand_as(x)
            x = x.masked_scatter(mask, video_embeds.to(x.dtype))
        cos, sin = self.lm.rotary_emb(x, positions[:, None, :])
        cos, sin = cos.unsqueeze(1), fold_sign(sin).unsqueeze(1)
        end = start + n
        causal = causal_lower_right(n, end)  # new tokens see the whole cache and each other causally

        def attend(i, q):
            o = F.scaled_dot_product_attention(q[None], self.cache.k[None, i, :, :end], self.cache.v[None, i, :, :end],
                                               attn_mask=causal, enable_gqa=True)
            return o[0].transpose(0, 1).reshape(n, -1)

        piecewise = self._piecewise(n)
        if piecewise is not None:
            logits = piecewise.run(x, cos, sin, start, attend)
        else:
            def write(i, k, v):
                self.cache.k[i, :, start:end] = k
                self.cache.v[i, :, start:end] = v

            for i in range(len(self.lm.layers)):
                x = self._layer(i, x, cos, sin, write, attend)
            logits = self.model.lm_head(rms_norm(x[:, -1:], self.lm.norm))[0, 0].float()
        self.cache.length = end
        return logits

    PREFILL_GRAPH_SIZES = 4  # token counts with graphed prefills (a stream's chunk turns come in a few sizes)

    def _piecewise(self, n: int) -> PiecewisePrefill | None:
        """The graphed prefill for a piece of `n` tokens, made when n comes the second time (a
        stream's chunk turns come in a few sizes, set by their time stamps and by how the previous
        reply closed); None: eager."""
        if n not in self._prefills and (not self._prefill_graphs or len(self._prefills) >= self.PREFILL_GRAPH_SIZES
                                        or n > PREFILL_GRAPH_TOKENS):
            return None
        return on_repeat(self._prefills, self._prefill_sizes, n, lambda: PiecewisePrefill(self, n, self._pool.handle()))

    def _decode_eager(self, token_slot: torch.Tensor, position: torch.Tensor, width: int) -> torch.Tensor:
        """One token: `token_slot` = [token id, cache slot], `position` its M-RoPE position; attends
        to the first `width` cache slots (a bucket covering the slot). Device tensors only, no host
        sync, so the same code is what the CUDA graph captures."""
        token, slot = token_slot[:1], token_slot[1:2]
        x = self.lm.embed_tokens(token[None])
        cos, sin = self._text_rope(position, x.dtype)
        cos, sin = cos.unsqueeze(1), fold_sign(sin).unsqueeze(1)
        attend = self._attend_flash(slot) if self._flash is not None else self._attend_gemm(slot, width, x.dtype)

        def write(i, k, v):
            self.cache.k[i].index_copy_(1, slot, k)
            self.cache.v[i].index_copy_(1, slot, v)

        for i in range(len(self.lm.layers)):
            if self._ops is not None:
                x = self._layer_fused(i, x, cos, sin, slot, attend)
            else:
                x = self._layer(i, x, cos, sin, write, attend)
        return self.model.lm_head(rms_norm(x, self.lm.norm))[0, 0].float()

    def _attend_flash(self, slot: torch.Tensor):
        length, scale = slot + 1, 1.0 / math.sqrt(self.head_dim)

        def attend(i, q):
            out = self._flash(self._grouped(q), self.cache.k[i], self.cache.v[i], length, scale)
            return self._ungrouped(out, 1)

        return attend

    def _attend_gemm(self, slot: torch.Tensor, width: int, dtype: torch.dtype):
        """The reference decode attention: scores GEMM, softmax, probs x V over `width` slots."""
        scale = 1.0 / math.sqrt(self.head_dim)
        bias = torch.zeros(1, 1, width, dtype=dtype, device=slot.device).masked_fill(
            torch.arange(width, device=slot.device) > slot, float("-inf"))  # unwritten slots

        def attend(i, q):
            keys, values = self.cache.k[i, :, :width], self.cache.v[i, :, :width]
            scores = torch.baddbmm(bias, self._grouped(q), keys.transpose(1, 2), alpha=scale)
            probs = torch.softmax(scores, dim=-1)  # float32 inside the kernel, written in q's dtype
            return self._ungrouped(torch.bmm(probs, values), 1)

        return attend

    def _width(self, slot: int) -> int:
        """Attention width for a decode at `slot`: the next multiple of 1024 (one graph each), or
        the whole cache for flash-decoding, which reads the length from device memory."""
        if self._flash is not None:
            return self.cache.capacity
        return min(self.cache.capacity, (slot // 1024 + 1) * 1024)

    def _text_rope(self, position: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary for one text token: its three M-RoPE axes are equal, so every frequency section
        takes the same angle and the result is plain RoPE (the same float ops as the model's)."""
        rope = self.lm.rotary_emb
        freqs = position.float()[:, None] * rope.inv_freq.float()[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[None]
        return (emb.cos() * rope.attention_scaling).to(dtype), (emb.sin() * rope.attention_scaling).to(dtype)

    def _widths(self) -> list[int]:
        """Every width `_width` can return."""
        return sorted({self._width(slot) for slot in range(0, self.cache.capacity, 1024)})

    def _capture_widths(self, make_step, inputs: list[torch.Tensor] | None = None) -> dict[int, CUDAGraphed]:
        """A graph per attention width (one with flash-decoding), all captured at the rule's first
        use, so a growing context never stalls on a capture. Without `inputs` each graph gets its
        own state buffer; with them, every graph reads those very tensors (the caller fills them
        after the capture). Warm-ups write only the cache's last slot, which real steps overwrite
        before reading."""
        warm = DecodeState.zeros(self.device).set(0, self.cache.capacity - 1, 0, 1).values
        if inputs is not None:
            inputs[0].copy_(warm)
        return {w: CUDAGraphed(make_step(w), inputs or [warm], pool=self._pool.handle(), static=inputs is not None)
                for w in self._widths()}

    def _step_state(self, token: int, position: int, step: int) -> DecodeState:
        """The host state of one step feeding `token` at `position` into the next cache slot."""
        self.cache.room_for(1)
        return self._state_host.set(token, self.cache.length, position, step)

    def _decode_state(self, state: DecodeState, width: int) -> torch.Tensor:
        return self._decode_eager(state.token_slot, state.position, width)

    @torch.inference_mode()
    def decode(self, token: int, position: int) -> torch.Tensor:
        """Logits after feeding `token` (the sampling path: selection then runs eagerly)."""
        state = self._step_state(token, position, 0)
        width = self._width(self.cache.length)
        if self.cuda_graphs:
            if not self._decode_graphs:
                self._decode_graphs = self._capture_widths(
                    lambda w: lambda values: self._decode_state(DecodeState(values), w))
            logits = self._decode_graphs[width](state.values)
        else:
            logits = self._decode_state(DecodeState(state.values.to(self.device)), width)
        self.cache.length += 1
        return logits

    @torch.inference_mode()
    def picks(self, token: int, position: int, step: int, count: int, choose, key, seen: torch.Tensor) -> Iterator[int]:
        """Greedy decoding as a run of self-feeding steps, one CUDA-graph replay each (graphs per
        selection rule `key` and attention width): the first feeds `token` at `position`; each marks
        the token it feeds in `seen` (the sampler's repetition-penalty set), picks the next with
        `choose(logits, step)` and leaves it in device memory for the step after. So step i + 1 is
        queued before step i's id is read back, and the GPU never waits for the host between tokens
        (LIVECC_NO_DECODE_AHEAD=1: it does). Yields up to `count` ids, each fed token counted in
        the cache. Closing the run early undoes the step queued ahead: its cache slot lies past the
        length (the next write overwrites it) and its mark in `seen` is put back."""
        if count <= 0:
            return
        self.cache.room_for(count)
        steps = self._pick_steps(key, choose, seen)  # captured first: a capture rewrites the state
        start = self.cache.length
        self._pick_host.set(token, start, position, step)
        self._pick_state.values.copy_(self._pick_host.values, non_blocking=True)
        launched = read = 0

        def launch() -> None:
            nonlocal launched
            chosen = steps(self._width(start + launched))
            self._picked[launched % 2].copy_(chosen, non_blocking=True)
            if self._pick_done is not None:
                self._pick_done[launched % 2].record()
            launched += 1

        try:
            while read < count:
                if launched == read:
                    launch()
                if self._ahead and launched < count:
                    launch()
                if self._pick_done is not None:
                    self._pick_done[read % 2].synchronize()
                chosen = int(self._picked[read % 2])
                read += 1
                self.cache.length += 1
                yield chosen
        finally:
            if launched > read:  # the step queued ahead fed the last id yielded: unmark it
                state = self._pick_state
                seen.index_put_((state.fed,), state.was_seen.bool())

    def _pick_steps(self, key, choose, seen: torch.Tensor):
        """A function of the attention width that runs one `_pick_step` on the run's state."""
        if not self.cuda_graphs:
            return lambda width: self._pick_step(self._pick_state, seen, width, choose)
        if key not in self._pick_graphs:
            self._pick_graphs[key] = self._capture_widths(
                lambda w: lambda values, marks: self._pick_step(DecodeState(values), marks, w, choose),
                [self._pick_state.values, seen])
        graphs = self._pick_graphs[key]
        return lambda width: graphs[width]()

    def _pick_step(self, state: DecodeState, seen: torch.Tensor, width: int, choose) -> torch.Tensor:
        """One greedy step on `state`: mark its token in `seen` (keeping what it was in `fed` and
        `was_seen`, so a step run ahead can be undone), decode it, choose the next and advance the
        state to feed that one. Device tensors only (what the graph captures)."""
        fed = state.token
        state.fed.copy_(fed)
        state.was_seen.copy_(seen.index_select(0, fed))
        seen.index_fill_(0, fed, True)
        chosen = choose(self._decode_state(state, width), state.step)
        state.token.copy_(chosen)
        state.counters.add_(1)
        return chosen

    @torch.inference_mode()
    def encode_video(self, video: VideoInputs) -> torch.Tensor:
        """(n_tokens, hidden) merged visual embeddings for one chunk (engine/runtime/vision.py)."""
        return self.vision.encode(video)
