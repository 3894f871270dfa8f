"""Preprocessing equals transformers' Qwen2-VL image processor where no resize is needed
(acceptance 3), and smart_resize gives the documented sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.model.preprocess import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, preprocess_frames, smart_resize


def test_smart_resize_1080p():
    assert smart_resize(1080, 1920) == (392, 728)
    h, w = smart_resize(1080, 1920)
    assert (h // 28) * (w // 28) // 1 * 2 * 2 // 4 == 364  # visual tokens of a 2-frame chunk


@pytest.mark.parametrize("hw", [(280, 308), (336, 448), (392, 728)])
def test_patches_equal_transformers_image_processor(hw):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    h, w = hw
    assert smart_resize(h, w) == (h, w)  # a size that needs no resize
    rng = np.random.default_rng(h * w)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    processor = Qwen2VLImageProcessorPil(min_pixels=DEFAULT_MIN_PIXELS, max_pixels=DEFAULT_MAX_PIXELS)
    expected = processor(images=[image], return_tensors="pt")
    ours = preprocess_frames([image, image], "cpu")  # one image = a 2-frame still video
    assert torch.equal(ours.video_grid_thw, expected["image_grid_thw"])
    assert torch.equal(ours.pixel_values_videos, expected["pixel_values"].float())


def test_frames_of_other_sizes_are_resized_to_multiples_of_28():
    frames = [np.zeros((1080, 1920, 3), np.uint8)] * 2
    out = preprocess_frames(frames, "cpu")
    assert out.resized_hw == (392, 728)
    assert out.video_grid_thw.tolist() == [[1, 28, 52]]
    assert out.num_tokens == 364
    assert out.pixel_values_videos.shape == (28 * 52, 3 * 2 * 14 * 14)
