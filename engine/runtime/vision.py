"""The fast path's vision tower: the model's own blocks with attention batched per temporal patch
(one SDPA call for the chunk), CUDA-graphed per frame grid once that grid repeats."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.model.preprocess import VideoInputs

from .decode_ops import apply_rope, fold_sign
from .graphs import CUDAGraphed


class FastVision:
    """Vision encode for `StaticRunner.encode_video`; the eager reference is the model's own
    `get_video_features` (EagerRunner), which it must match (tests/test_fast_path.py)."""

    def __init__(self, model: torch.nn.Module, cuda_graphs: bool):
        self.model = model
        self.visual = model.model.visual
        self.cuda_graphs = cuda_graphs
        self._rope: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._graphs: dict[tuple, CUDAGraphed] = {}
        self._grids_seen: set[tuple] = set()

    def rope_for(self, video: VideoInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The vision rotary (cos, sin) exactly as the model computes it for this grid, captured
        once per grid from the model's own forward (robust across transformers versions)."""
        grid = video.grid
        if grid not in self._rope:
            captured = {}

            def grab(_module, _args, kwargs):
                captured["rope"] = kwargs["position_embeddings"]

            handle = self.visual.blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
            try:
                self.model.model.get_video_features(video.pixel_values_videos, video.video_grid_thw)
            finally:
                handle.remove()
            self._rope[grid] = tuple(t.clone() for t in captured["rope"])
        return self._rope[grid]

    def run_eager(self, pixels: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, frames: int) -> torch.Tensor:
        """The vision tower with attention batched per temporal patch: Qwen2-VL attends within
        each temporal patch, and every patch of a chunk has the same size."""
        x = self.visual.patch_embed(pixels.to(self.visual.patch_embed.proj.weight.dtype))
        n, dim = x.shape
        heads = self.visual.blocks[0].attn.num_heads
        cos32, sin32 = cos.float()[:, None, None, :], fold_sign(sin.float())[:, None, None, :]
        for block in self.visual.blocks:
            qkv = block.attn.qkv(block.norm1(x)).reshape(n, 3, heads, -1)
            qk = apply_rope(qkv[:, :2].float(), cos32, sin32).to(qkv.dtype)  # float32 rotary, as the model
            q, k, v = (t.reshape(frames, n // frames, heads, -1).transpose(1, 2) for t in (qk[:, 0], qk[:, 1], qkv[:, 2]))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, dim)
            x = x + block.attn.proj(o)
            x = x + block.mlp(block.norm2(x))
        return self.visual.merger(x)

    @torch.inference_mode()
    def encode(self, video: VideoInputs) -> torch.Tensor:
        """(n_tokens, hidden) merged visual embeddings for one chunk."""
        grid = video.grid
        cos, sin = self.rope_for(video)
        pixels = video.pixel_values_videos
        if not self.cuda_graphs:
            return self.run_eager(pixels, cos, sin, grid[0])
        if grid not in self._graphs:
            if grid not in self._grids_seen:  # graph a grid once it repeats (the first chunk's never does)
                self._grids_seen.add(grid)
                return self.run_eager(pixels, cos, sin, grid[0])
            self._graphs[grid] = CUDAGraphed(lambda p: self.run_eager(p, cos, sin, grid[0]), [pixels])
        return self._graphs[grid](pixels).clone()
