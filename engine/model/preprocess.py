"""Frame preprocessing for Qwen2-VL video input, in torch on the model's device.

Mirrors the training pipeline (qwen_vl_utils + Qwen2-VL image processor): `smart_resize` to
multiples of 28, bicubic antialiased resize rounded back to uint8, rescale 1/255, CLIP
normalisation, and the (grid_t, grid_h, grid_w) patch layout with temporal patch 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.capture.frames import Frame
from engine.defaults import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS
from engine.model.sizes import MERGE_SIZE, PATCH_SIZE, capture_size, smart_resize

TEMPORAL_PATCH = 2
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VideoInputs:
    """What the vision tower takes for one chunk."""

    pixel_values_videos: torch.Tensor  # (grid_t*grid_h*grid_w, 3*2*14*14) float32
    resized_hw: tuple[int, int]
    grid: tuple[int, int, int]  # (t, h, w) in patches

    @property
    def video_grid_thw(self) -> torch.Tensor:
        """The grid as the model's own vision forward takes it: (1, 3) int64 on the pixels' device.
        Made when asked (the reference runner, once a grid for the fast one's rotary tables): a
        plain copy to the GPU waits for everything queued there, which the fast paths never do."""
        return torch.tensor([self.grid], dtype=torch.int64, device=self.pixel_values_videos.device)

    @property
    def num_tokens(self) -> int:
        """Visual tokens after the 2x2 spatial merge."""
        t, h, w = self.grid
        return t * h * w // (MERGE_SIZE * MERGE_SIZE)


def frames_to_tensor(frames: list[Frame] | list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB uint8 frames -> a (T, 3, H, W) uint8 tensor on `device`. On CUDA each frame is copied
    once into pinned memory and uploaded asynchronously."""
    arrays = [f.image if isinstance(f, Frame) else f for f in frames]
    device = torch.device(device)
    if device.type != "cuda":
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    # Pinned memory from torch's caching host allocator, reused only once its upload has run: no wait
    # here for the GPU (the engine core's steps run on while the next chunk is prepared).
    staging = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.uint8, pin_memory=True)
    for i, array in enumerate(arrays):
        staging[i].numpy()[...] = array
    video = staging.to(device, non_blocking=True)
    return video.permute(0, 3, 1, 2)


def resize_frames(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic antialiased resize of (T, 3, H, W) uint8 frames, rounded back to uint8 like
    torchvision does on uint8 tensors (the training pipeline resized that way)."""
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    out = F.interpolate(video.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def frame_resizer(height: int, width: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                  min_pixels: int = DEFAULT_MIN_PIXELS) -> Callable[[np.ndarray], np.ndarray] | None:
    """A capture-side resize of (H, W, 3) uint8 frames to the size the model takes, done exactly as
    `preprocess_frames` would (so the tokens do not change), or None when no resize is needed. Per
    channel: it works on BGR as on RGB. Sources that use it hold frames at model size, not at 4K."""
    size = capture_size(height, width, max_pixels, min_pixels)
    if size is None:
        return None  # nothing to do, or a size preprocess would resize again: leave it all to preprocess

    def resize(image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != (height, width):
            return image  # a stream that changes size mid-way: preprocess resizes it
        video = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        return resize_frames(video, size)[0].permute(1, 2, 0).contiguous().numpy()

    return resize


_TABLES: dict[torch.device, torch.Tensor] = {}


def _normalise_table(device: torch.device) -> torch.Tensor:
    """(3, 256) lookup: uint8 -> normalised float32, with the image processor's exact rounding
    (rescale in float64 then float32, normalise in float32). One gather instead of three passes."""
    if device not in _TABLES:
        scaled = (torch.arange(256, dtype=torch.float64) * (1.0 / 255.0)).float()
        mean = torch.tensor(CLIP_MEAN, dtype=torch.float32).view(3, 1)
        std = torch.tensor(CLIP_STD, dtype=torch.float32).view(3, 1)
        _TABLES[device] = ((scaled.view(1, 256) - mean) / std).to(device)
    return _TABLES[device]


def patchify(video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Normalise and cut (T, 3, H, W) frames into Qwen2-VL patches, and their (t, h, w) grid. T must
    be even (temporal patch 2)."""
    t, c, h, w = video.shape
    if t % TEMPORAL_PATCH:
        raise ValueError(f"a chunk needs an even number of frames, got {t}")
    x = _normalise_table(video.device)[torch.arange(3, device=video.device).view(1, 3, 1, 1), video.long()]
    gt, gh, gw = t // TEMPORAL_PATCH, h // PATCH_SIZE, w // PATCH_SIZE
    x = x.reshape(gt, TEMPORAL_PATCH, c, gh // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE, gw // MERGE_SIZE, MERGE_SIZE, PATCH_SIZE)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * TEMPORAL_PATCH * PATCH_SIZE * PATCH_SIZE), (gt, gh, gw)


def preprocess_frames(frames: list[Frame] | list[np.ndarray], device: torch.device | str = "cpu",
                      max_pixels: int = DEFAULT_MAX_PIXELS, min_pixels: int = DEFAULT_MIN_PIXELS) -> VideoInputs:
    """Frames of one chunk -> VideoInputs on `device`. All frames are resized to the first one's target size."""
    video = frames_to_tensor(frames, device)
    size = smart_resize(video.shape[-2], video.shape[-1], min_pixels=min_pixels, max_pixels=max_pixels)
    flat, grid = patchify(resize_frames(video, size))
    return VideoInputs(flat, size, grid)
