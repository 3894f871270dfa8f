"""The KV cache of many sessions: one preallocated pool, a slab per session.

The pool is (layers, slabs, kv_heads, capacity, head_dim) for K and for V, so layer i's caches of
every session are one tensor (what a batched attention kernel indexes by slab), and a session's
slab for layer i is a contiguous (kv_heads, capacity, head_dim) block, the shape the single-stream
runner's cache has. Crop and compaction stay per session: they only move a slab's length.
"""

from __future__ import annotations

import torch

from engine.errors import LiveCCError


class PoolFullError(LiveCCError):
    """Every slab of the KV pool holds a session."""

    code = "busy"


class Slab:
    """One session's KV cache in the pool, and the runner-facing view the session holds
    (`length`, `reset`, `crop`): the model work itself goes through the engine core."""

    name = "core"
    supports_picks = False  # engine/runtime/runner.py: the core decodes every session in one batched step
    supports_prefill_graphs = False

    def __init__(self, pool: "KVPool", index: int):
        self.pool, self.index = pool, index
        self.k, self.v = pool.k[:, index], pool.v[:, index]  # (layers, kv_heads, capacity, head_dim) views
        self.capacity = pool.capacity
        self.length = 0

    @property
    def device(self) -> torch.device:
        return self.k.device

    def room_for(self, n: int) -> None:
        if self.length + n > self.capacity:
            raise RuntimeError(f"KV slab full ({self.length}+{n} > {self.capacity}): the context budget "
                               "must keep the session below the slab capacity")

    def reset(self) -> None:
        self.length = 0

    def crop(self, length: int) -> None:
        """Forget every cached token from `length` on: the slots are overwritten by what comes next."""
        self.length = min(self.length, length)


class KVPool:
    """`slabs` session caches of `capacity` tokens each, allocated once."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, capacity: int, slabs: int, dtype, device):
        shape = (layers, slabs + 1, kv_heads, capacity, head_dim)  # + a scratch slab: padded rows write there
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.capacity, self.slabs = capacity, slabs
        self.scratch = slabs  # the index of the slab no session holds
        self._free = list(range(slabs - 1, -1, -1))  # slab 0 first

    @classmethod
    def for_model(cls, model: torch.nn.Module, capacity: int, slabs: int) -> "KVPool":
        cfg = model.config.text_config
        weight = model.model.language_model.embed_tokens.weight  # the compute dtype even when lm_head is quantized
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        return cls(cfg.num_hidden_layers, cfg.num_key_value_heads, head_dim, capacity, slabs, weight.dtype,
                   weight.device)

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def slab_bytes(self) -> int:
        """GPU memory one session's K and V take."""
        return 2 * self.k[:, 0].numel() * self.k.element_size()

    def take(self) -> Slab:
        if not self._free:
            raise PoolFullError(f"all {self.slabs} session slots are in use", "wait for a session to end, or start "
                                "the engine with more sessions (--sessions) if its memory plan allows")
        return Slab(self, self._free.pop())

    def give(self, slab: Slab) -> None:
        slab.length = 0
        self._free.append(slab.index)
