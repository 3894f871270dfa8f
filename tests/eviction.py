"""Design (b) of issue 6, as a measured prototype (the engine uses design (a), engine/session/context.py):
StreamingVLM-style in-place eviction on the eager DynamicCache. Drop the KV of a span of old
tokens, keep the head (attention sinks: system prompt, instruction) and the recent tail, and
rotate the tail's keys back by the position shift so positions stay contiguous.

For M-RoPE a shift of t, h and w by the same delta rotates every frequency pair by delta * theta,
which is a plain 1-D RoPE rotation: the re-rotated keys carry exactly the positions a fresh
forward would give them. What cannot be fixed in place: every kept key and value from layer 1 on
was computed attending to the evicted tokens.
"""

from __future__ import annotations

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def shift_keys(keys: torch.Tensor, delta: int, inv_freq: torch.Tensor) -> torch.Tensor:
    """Keys (B, H, L, D) rotated at positions p, re-rotated to positions p - delta (all 3 axes)."""
    angles = -delta * inv_freq.to(torch.float64)
    emb = torch.cat((angles, angles)).to(keys.dtype)
    return keys * emb.cos() + rotate_half(keys) * emb.sin()


@torch.inference_mode()
def evict_span(cache, start: int, stop: int, delta: int, inv_freq: torch.Tensor) -> None:
    """Drop cache positions [start, stop) in every layer; shift the keys after them by -delta."""
    for layer in cache.layers:
        keys, values = layer.keys, layer.values
        tail = shift_keys(keys[:, :, stop:], delta, inv_freq)
        layer.keys = torch.cat((keys[:, :, :start], tail), dim=2)
        layer.values = torch.cat((values[:, :, :start], values[:, :, stop:]), dim=2)
