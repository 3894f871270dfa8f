"""The frame sizes Qwen2-VL takes: pure arithmetic, without torch, so a client-only install sizes its
frames as the engine does (engine/model/preprocess.py resizes to them)."""

from __future__ import annotations

import math

from engine.defaults import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, MAX_ASPECT_RATIO

PATCH_SIZE = 14
MERGE_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE  # 28


def smart_resize(height: int, width: int, factor: int = FACTOR, min_pixels: int = DEFAULT_MIN_PIXELS,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Target (height, width): multiples of `factor`, area in [min_pixels, max_pixels], aspect kept."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"aspect ratio over {MAX_ASPECT_RATIO} is not supported: {width}x{height}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def capture_size(height: int, width: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_pixels: int = DEFAULT_MIN_PIXELS) -> tuple[int, int] | None:
    """The size a capture-side resize makes a (height, width) frame, or None when it should not
    resize: the frame is already that size, or preprocessing would resize the result again."""
    size = smart_resize(height, width, min_pixels=min_pixels, max_pixels=max_pixels)
    if size == (height, width):
        return None
    try:
        again = smart_resize(*size, min_pixels=min_pixels, max_pixels=max_pixels)
    except ValueError:  # rounding took it past 200:1 (9000x50 -> 7336x28): preprocessing resizes the original
        return None
    return size if again == size else None
