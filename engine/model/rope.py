"""Exact 3-D M-RoPE positions for a segment appended to a running conversation.

transformers computes 3-D positions only when the cache is empty; on later calls it falls back to
1-D `arange + rope_deltas`, which gives every chunk after the first text-like positions the model
never saw in training. We compute positions ourselves for each new segment, starting at the next
free position of the conversation.

Rule (the one LiveCC trained with, transformers 4.50): a vision block of grid (t, h, w) after
merging starts at position p; its tokens get (p+ti, p+hi, p+wi); text after it resumes at the
largest position used + 1. (transformers 5.x resumes at p + max(h, w), which differs when t is the
largest dimension, e.g. 6 frames at tiny resolution.)

`demo_positions` reproduces LiveCC's demo instead (`--positions demo`, for measuring what exact
positions are worth): with a persistent cache transformers gives every later token the 1-D position
cache index + rope_deltas on all three axes, video tokens included.
"""

from __future__ import annotations

import torch

from engine.defaults import POSITION_RULES  # noqa: F401  (defined there: the CLI reads it without torch)


def segment_positions(ids: torch.Tensor, video_grids: list[tuple[int, int, int]], start: int,
                      video_token_id: int, spatial_merge: int = 2) -> tuple[torch.Tensor, int]:
    """Positions (3, L) for token ids `ids` (1-D) whose video blocks have the given (t, h, w) patch
    grids, in order. Returns the positions and the next free position."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    out = torch.empty(3, len(ids), dtype=torch.long)
    grids = iter(video_grids)
    pos, i = start, 0
    while i < len(ids):
        if ids[i] != video_token_id:
            out[:, i] = pos
            pos += 1
            i += 1
            continue
        t, h, w = next(grids)
        h, w = h // spatial_merge, w // spatial_merge
        n = t * h * w
        if ids[i:i + n] != [video_token_id] * n:
            raise ValueError(f"video block at {i} is shorter than its grid {t}x{h}x{w}")
        tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
        out[:, i:i + n] = torch.stack([tt.flatten(), hh.flatten(), ww.flatten()]) + pos
        pos += max(t, h, w)
        i += n
    if next(grids, None) is not None:
        raise ValueError("more video grids than video blocks in the segment")
    return out, pos


def demo_positions(length: int, start: int) -> tuple[torch.Tensor, int]:
    """LiveCC demo's positions for a segment appended to a non-empty cache: the same 1-D position on
    all three axes, counting on from `start`. Returns the positions (3, L) and the next free position."""
    row = torch.arange(start, start + length, dtype=torch.long)
    return row.expand(3, length).clone(), start + length
