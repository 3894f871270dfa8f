"""The fast path's KV cache: preallocated once, written by slot, cropped by moving its length."""

from __future__ import annotations

import torch


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
