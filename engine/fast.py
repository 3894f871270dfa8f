"""The fast path: a preallocated KV cache, a CUDA-graphed one-token decode step and a vision
tower that attends per temporal patch in one batched call.

It runs the model's own modules and weights (norms, projections, MLPs, rotary embedding); only
the attention over the static cache and the vision attention are written here. `EagerRunner` is
its reference: on the same weights it must produce the same tokens (tests/test_fast_path.py).

Off switches (environment): LIVECC_NO_FAST=1 uses the eager reference everywhere;
LIVECC_NO_CUDA_GRAPH=1 keeps the static cache but runs every step eagerly.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from .preprocess import VideoInputs


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _fuse_rows(*linears: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concatenate the weights (and biases) of linears sharing an input, then make each linear's
    parameters views into the fused tensor: one matmul instead of several, no extra memory."""
    weight = torch.cat([lin.weight.data for lin in linears])
    has_bias = all(lin.bias is not None for lin in linears)
    bias = torch.cat([lin.bias.data for lin in linears]) if has_bias else None
    row = 0
    for lin in linears:
        n = lin.weight.shape[0]
        lin.weight.data = weight[row:row + n]
        if has_bias:
            lin.bias.data = bias[row:row + n]
        row += n
    return weight, bias


class StaticKVCache:
    """K and V for every layer in one preallocated tensor each: (layers, kv_heads, capacity, head_dim)."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, capacity: int, dtype, device):
        shape = (layers, kv_heads, capacity, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.capacity = capacity
        self.length = 0

    def room_for(self, n: int) -> None:
        if self.length + n > self.capacity:
            raise RuntimeError(f"KV cache full ({self.length}+{n} > {self.capacity}): the context budget "
                               "must keep the session below the cache capacity")


class StaticRunner:
    """Drop-in for EagerRunner: same interface, static cache, graphed decode on CUDA."""

    name = "static"

    def __init__(self, model: torch.nn.Module, max_tokens: int, cuda_graphs: bool | None = None):
        self.model = model
        self.lm = model.model.language_model
        self.visual = model.model.visual
        cfg = model.config.text_config
        self.n_heads, self.n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.video_token_id = model.config.video_token_id
        weight = model.lm_head.weight
        self.cache = StaticKVCache(len(self.lm.layers), self.n_kv, self.head_dim, max_tokens, weight.dtype, weight.device)
        self.fused = [self._fuse_layer(layer) for layer in self.lm.layers]
        if cuda_graphs is None:
            cuda_graphs = weight.device.type == "cuda" and os.environ.get("LIVECC_NO_CUDA_GRAPH") != "1"
        self.cuda_graphs = cuda_graphs
        self._decode_graph: _GraphedStep | None = None
        self._vision_rope: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._vision_graphs: dict[tuple, _GraphedStep] = {}
        self._grids_seen: set[tuple] = set()

    # -- runner interface ------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @property
    def length(self) -> int:
        return self.cache.length

    def reset(self) -> None:
        self.cache.length = 0

    def crop(self, length: int) -> None:
        self.cache.length = min(self.cache.length, length)

    @staticmethod
    def _fuse_layer(layer) -> tuple:
        attn, mlp = layer.self_attn, layer.mlp
        qkv_w, qkv_b = _fuse_rows(attn.q_proj, attn.k_proj, attn.v_proj)
        gate_up_w, _ = _fuse_rows(mlp.gate_proj, mlp.up_proj)
        return qkv_w, qkv_b, gate_up_w

    # -- language model --------------------------------------------------------------------
    def _layer(self, i: int, x: torch.Tensor, cos, sin, write, attend) -> torch.Tensor:
        layer = self.lm.layers[i]
        qkv_w, qkv_b, gate_up_w = self.fused[i]
        b, n, _ = x.shape
        qkv = F.linear(layer.input_layernorm(x), qkv_w, qkv_b)
        nq, nk = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        q = qkv[..., :nq].view(b, n, self.n_heads, self.head_dim).transpose(1, 2)
        k = qkv[..., nq:nq + nk].view(b, n, self.n_kv, self.head_dim).transpose(1, 2)
        v = qkv[..., nq + nk:].view(b, n, self.n_kv, self.head_dim).transpose(1, 2)
        cos_, sin_ = cos.unsqueeze(1), sin.unsqueeze(1)
        q = q * cos_ + _rotate_half(q) * sin_
        k = k * cos_ + _rotate_half(k) * sin_
        write(i, k[0], v[0])
        out = attend(i, q[0])  # (n, heads * head_dim)
        x = x + layer.self_attn.o_proj(out[None])
        gate, up = F.linear(layer.post_attention_layernorm(x), gate_up_w).chunk(2, dim=-1)
        return x + layer.mlp.down_proj(F.silu(gate) * up)

    def _grouped(self, q: torch.Tensor) -> torch.Tensor:
        """(heads, n, d) -> (kv_heads, groups * n, d): GQA as plain attention per KV head."""
        h, n, d = q.shape
        return q.reshape(self.n_kv, (h // self.n_kv) * n, d)

    def _ungrouped(self, o: torch.Tensor, n: int) -> torch.Tensor:
        """(kv_heads, groups * n, d) -> (n, heads * d)."""
        return o.reshape(self.n_heads, n, self.head_dim).transpose(0, 1).reshape(n, -1)

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, positions: torch.Tensor, video_embeds: torch.Tensor | None) -> torch.Tensor:
        n, start = ids.numel(), self.cache.length
        self.cache.room_for(n)
        x = self.lm.embed_tokens(ids[None])
        if video_embeds is not None:
            mask = (ids == self.video_token_id)[None, :, None].expand_as(x)
            x = x.masked_scatter(mask, video_embeds.to(x.dtype))
        cos, sin = self.lm.rotary_emb(x, positions[:, None, :])
        end = start + n
        keys = torch.arange(end, device=ids.device)
        causal = keys[None, :] <= (start + torch.arange(n, device=ids.device))[:, None]
        mask = causal.repeat(self.n_heads // self.n_kv, 1)  # rows follow _grouped's (group, token) order

        def write(i, k, v):
            self.cache.k[i, :, start:end] = k
            self.cache.v[i, :, start:end] = v

        def attend(i, q):
            o = F.scaled_dot_product_attention(self._grouped(q), self.cache.k[i, :, :end], self.cache.v[i, :, :end],
                                               attn_mask=mask)
            return self._ungrouped(o, n)

        for i in range(len(self.lm.layers)):
            x = self._layer(i, x, cos, sin, write, attend)
        self.cache.length = end
        return self.model.lm_head(self.lm.norm(x[:, -1:]))[0, 0].float()

    def _decode_eager(self, token_slot: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One token: `token_slot` = [token id, cache slot], `position` its M-RoPE position. Device
        tensors only, no host sync, so the same code is what the CUDA graph captures."""
        token, slot = token_slot[:1], token_slot[1:2]
        x = self.lm.embed_tokens(token[None])
        cos, sin = self.lm.rotary_emb(x, position.view(1, 1, 1).expand(3, 1, 1))
        valid = torch.arange(self.cache.capacity, device=x.device) <= slot
        scale = 1.0 / math.sqrt(self.head_dim)

        def write(i, k, v):
            self.cache.k[i].index_copy_(1, slot, k)
            self.cache.v[i].index_copy_(1, slot, v)

        def attend(i, q):
            scores = torch.matmul(self._grouped(q), self.cache.k[i].transpose(1, 2)) * scale
            probs = torch.softmax(scores.float().masked_fill(~valid, float("-inf")), dim=-1).to(q.dtype)
            return self._ungrouped(torch.matmul(probs, self.cache.v[i]), 1)

        for i in range(len(self.lm.layers)):
            x = self._layer(i, x, cos, sin, write, attend)
        return self.model.lm_head(self.lm.norm(x))[0, 0].float()

    @torch.inference_mode()
    def decode(self, token: int, position: int) -> torch.Tensor:
        self.cache.room_for(1)
        host = torch.tensor([token, self.cache.length], dtype=torch.long)
        pos = torch.tensor([position], dtype=torch.long)
        if self.cuda_graphs:
            if self._decode_graph is None:
                self._decode_graph = _GraphedStep(self._decode_eager, [host.to(self.device), pos.to(self.device)])
            logits = self._decode_graph(host, pos)
        else:
            logits = self._decode_eager(host.to(self.device), pos.to(self.device))
        self.cache.length += 1
        return logits

    # -- vision ----------------------------------------------------------------------------
    def _rope_for(self, video: VideoInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The vision rotary (cos, sin) exactly as the model computes it for this grid, captured
        once per grid from the model's own forward (robust across transformers versions)."""
        grid = tuple(int(v) for v in video.video_grid_thw[0])
        if grid not in self._vision_rope:
            captured = {}

            def grab(_module, _args, kwargs):
                captured["rope"] = kwargs["position_embeddings"]

            handle = self.visual.blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
            try:
                self.model.model.get_video_features(video.pixel_values_videos, video.video_grid_thw)
            finally:
                handle.remove()
            self._vision_rope[grid] = tuple(t.clone() for t in captured["rope"])
        return self._vision_rope[grid]

    def _vision_eager(self, pixels: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, frames: int) -> torch.Tensor:
        """The vision tower with attention batched per temporal patch: Qwen2-VL attends within
        each temporal patch, and every patch of a chunk has the same size."""
        x = self.visual.patch_embed(pixels.to(self.visual.patch_embed.proj.weight.dtype))
        n, dim = x.shape
        heads = self.visual.blocks[0].attn.num_heads
        cos32, sin32 = cos.float()[:, None, :], sin.float()[:, None, :]
        for block in self.visual.blocks:
            q, k, v = block.attn.qkv(block.norm1(x)).reshape(n, 3, heads, -1).unbind(1)
            q = (q.float() * cos32 + _rotate_half(q.float()) * sin32).to(v.dtype)
            k = (k.float() * cos32 + _rotate_half(k.float()) * sin32).to(v.dtype)
            q, k, v = (t.reshape(frames, n // frames, heads, -1).transpose(1, 2) for t in (q, k, v))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, dim)
            x = x + block.attn.proj(o)
            x = x + block.mlp(block.norm2(x))
        return self.visual.merger(x)

    @torch.inference_mode()
    def encode_video(self, video: VideoInputs) -> torch.Tensor:
        grid = tuple(int(v) for v in video.video_grid_thw[0])
        cos, sin = self._rope_for(video)
        pixels = video.pixel_values_videos
        if not self.cuda_graphs:
            return self._vision_eager(pixels, cos, sin, grid[0])
        if grid not in self._vision_graphs:
            if grid not in self._grids_seen:  # graph a grid once it repeats (the first chunk's never does)
                self._grids_seen.add(grid)
                return self._vision_eager(pixels, cos, sin, grid[0])
            self._vision_graphs[grid] = _GraphedStep(lambda p: self._vision_eager(p, cos, sin, grid[0]), [pixels])
        return self._vision_graphs[grid](pixels).clone()


class _GraphedStep:
    """A function of fixed-shape tensors captured as a CUDA graph (gpt-fast / moshi style).
    Calling it copies the inputs into the static buffers and replays; a shape change raises."""

    def __init__(self, fn, example_inputs: list[torch.Tensor]):
        self.inputs = [t.clone() for t in example_inputs]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(2):  # warm-up outside the graph: allocator and library handles
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.output = fn(*self.inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for buf, value in zip(self.inputs, inputs):
            if buf.shape != value.shape:
                raise ValueError(f"graphed step got shape {tuple(value.shape)}, captured {tuple(buf.shape)}; "
                                 "set LIVECC_NO_CUDA_GRAPH=1 to run without graphs")
            buf.copy_(value, non_blocking=True)
        self.graph.replay()
        return self.output
