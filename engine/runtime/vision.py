"""The fast path's vision tower: the model's own blocks with attention batched per temporal patch
(one SDPA call for the chunk), CUDA-graphed per frame grid (and chunk count, for the engine core's
batches) once that repeats."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.model.preprocess import VideoInputs

from .decode_ops import apply_rope, fold_sign, fused_on
from .graphs import CUDAGraphed, GraphPool, on_repeat


class TorchVisionOps:
    """The tower's rotary and MLP in torch ops (the CPU, and LIVECC_NO_FUSED=1)."""

    @staticmethod
    def rope_qk(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int) -> torch.Tensor:
        cos32, sin32 = cos.float()[:, None, None, :], fold_sign(sin.float())[:, None, None, :]
        qk = qkv.reshape(qkv.shape[0], 3, heads, -1)[:, :2]
        return apply_rope(qk.float(), cos32, sin32).to(qkv.dtype)  # float32 rotary, as the model

    @staticmethod
    def mlp(mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return mlp(x)


class TritonVisionOps:
    """The same with each elementwise chain as one Triton kernel (engine/runtime/triton_vision.py)."""

    def __init__(self, kernels):
        self.k = kernels

    def rope_qk(self, qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int) -> torch.Tensor:
        return self.k.rope_qk(qkv, cos, sin, heads)

    def mlp(self, mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return mlp.fc2(self.k.quick_gelu(mlp.fc1(x)))


def vision_ops(visual: torch.nn.Module, device: torch.device):
    """Triton kernels on CUDA for Qwen2-VL's tower (QuickGELU MLP), else the torch ops."""
    mlp = visual.blocks[0].mlp
    if device.type != "cuda" or not fused_on() or type(getattr(mlp, "act", None)).__name__ != "QuickGELUActivation":
        return TorchVisionOps()
    try:
        from . import triton_vision
    except ImportError:
        return TorchVisionOps()
    return TritonVisionOps(triton_vision)


class FastVision:
    """Vision encode for `StaticRunner.encode_video`; the eager reference is the model's own
    `get_video_features` (EagerRunner), which it must match (tests/test_fast_path.py)."""

    def __init__(self, model: torch.nn.Module, cuda_graphs: bool, pool: GraphPool | None = None):
        self.model = model
        self.pool = pool  # None: a private memory pool a graph (the single-stream path's side stream needs one)
        self.visual = model.model.visual
        self.cuda_graphs = cuda_graphs
        self._rope: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._graphs: dict[tuple, CUDAGraphed] = {}
        self._grids_seen: set[tuple] = set()
        self.ops = vision_ops(self.visual, self.visual.patch_embed.proj.weight.device)

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
        for block in self.visual.blocks:
            qkv = block.attn.qkv(block.norm1(x))
            qk = self.ops.rope_qk(qkv, cos, sin, heads)
            v = qkv.reshape(n, 3, heads, -1)[:, 2]
            q, k, v = (t.reshape(frames, n // frames, heads, -1).transpose(1, 2) for t in (qk[:, 0], qk[:, 1], v))
            o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, dim)
            x = x + block.attn.proj(o)
            x = x + self.ops.mlp(block.mlp, block.norm2(x))
        return self.visual.merger(x)

    GRAPH_CHUNKS = 4  # chunks of one grid graphed as one pass at most (the engine core's small steps)

    @torch.inference_mode()
    def encode(self, video: VideoInputs) -> torch.Tensor:
        """(n_tokens, hidden) merged visual embeddings for one chunk."""
        return self.encode_stacked(video.pixel_values_videos, video, 1)

    @torch.inference_mode()
    def encode_stacked(self, pixels: torch.Tensor, video: VideoInputs, n: int) -> torch.Tensor:
        """Merged visual embeddings of `n` chunks of `video`'s grid, their patches stacked in
        `pixels`, in one pass: CUDA-graphed per (grid, n) once that repeats (the first chunk's never
        does), for n up to GRAPH_CHUNKS."""
        grid = video.grid
        cos, sin = self.rope_for(video)
        if n > 1:
            cos, sin = cos.repeat(n, 1), sin.repeat(n, 1)
        frames, key = grid[0] * n, (grid, n)
        if not self.cuda_graphs or n > self.GRAPH_CHUNKS:
            return self.run_eager(pixels, cos, sin, frames)
        graph = on_repeat(self._graphs, self._grids_seen, key, lambda: CUDAGraphed(
            lambda p: self.run_eager(p, cos, sin, frames), [pixels],
            pool=self.pool.handle() if self.pool is not None else None))
        if graph is None:
            return self.run_eager(pixels, cos, sin, frames)
        return graph(pixels).clone()
