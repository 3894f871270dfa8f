"""The fast runner's graphed prefill: a piece of a fixed token count as CUDA graphs between its
attentions, captured a few per run (LIVECC_NO_PREFILL_GRAPH=1: never)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from .decode_ops import rms_norm
from .graphs import CUDAGraphed

if TYPE_CHECKING:
    from .fast import StaticRunner

log = logging.getLogger(__name__)


class PiecewisePrefill:
    """A prefill piece of `n` tokens as CUDA graphs between its attentions (vLLM's piecewise
    graphs): graph 0 runs layer 0 up to its attention, graph i the rest of layer i - 1 and layer i
    up to its attention, the last the rest of the last layer and the last token's logits. Attention
    reads the cache's first `end` slots, a length that changes every chunk, so it runs eagerly in
    between (one SDPA call and a copy per layer instead of a layer's ~20 launches: the prefill was
    bound by the host's launches). The steps read and write static buffers and write K and V to
    the cache slots in `slots`. Each run captures up to CAPTURES_PER_RUN more steps (the rest run
    eagerly, on the same buffers), so no single chunk pays for a whole capture; a capture records
    without running (this size already ran eagerly: kernels compiled and tuned), so it needs no
    warm-up and changes no buffer. With `pool` None nothing is captured (the CPU tests).

    K and V go to the runner's own cache, or, given `write` (the engine core), to
    `write(layer, k, v, slab, slots)` with `slab` the device buffer `run` fills with its slab index."""

    CAPTURES_PER_RUN = 8

    def __init__(self, runner: StaticRunner, n: int, pool=None, write=None, on_failure=None):
        self.runner, self.pool = runner, pool
        dtype, device = runner.cache.k.dtype, runner.device
        heads, d = runner.n_heads, runner.head_dim
        self.x = torch.zeros(1, n, runner.lm.config.hidden_size, dtype=dtype, device=device)
        self.cos = torch.zeros(1, 1, n, d, dtype=dtype, device=device)
        self.sin = torch.zeros_like(self.cos)
        self.q = torch.zeros(heads, n, d, dtype=dtype, device=device)
        self.o = torch.zeros(n, heads * d, dtype=dtype, device=device)
        self.base = torch.arange(n, device=device)
        self.slots = torch.empty_like(self.base)  # set by each run before anything reads it
        self.slab = torch.zeros_like(self.base)  # each token's slab of a KV pool (with `write`)
        self.write = write or self._cache_write
        self.on_failure = on_failure or self._no_new_sizes
        self.steps = [self._step(i) for i in range(len(runner.lm.layers) + 1)]
        self.graphs: list[CUDAGraphed | None] = [None] * len(self.steps)

    def _capture_some(self) -> None:
        if self.pool is None:
            return
        todo = [i for i, graph in enumerate(self.graphs) if graph is None][:self.CAPTURES_PER_RUN]
        try:
            for i in todo:
                self.graphs[i] = CUDAGraphed(self.steps[i], pool=self.pool, static=True, warmups=0)
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:  # a kernel that cannot be captured: this piece stays eager
            log.warning("prefill CUDA graphs off after a failed capture (%s)", exc)
            self.pool, self.graphs = None, [None] * len(self.steps)
            self.on_failure()

    def _no_new_sizes(self) -> None:
        self.runner._prefill_graphs = False  # the sizes graphed already keep their graphs

    def _cache_write(self, j: int, k: torch.Tensor, v: torch.Tensor, _slab, slots: torch.Tensor) -> None:
        self.runner.cache.k[j].index_copy_(1, slots, k)
        self.runner.cache.v[j].index_copy_(1, slots, v)

    def _step(self, i: int):
        runner, last = self.runner, len(self.runner.lm.layers)

        def write(j, k, v):
            self.write(j, k, v, self.slab, self.slots)

        def step():
            if i > 0:
                self.x.copy_(runner._post_attention(i - 1, self.x, self.o))
            if i < last:
                self.q.copy_(runner._pre_attention(i, self.x, self.cos, self.sin, write))
                return None
            return runner.model.lm_head(rms_norm(self.x[:, -1:], runner.lm.norm))[0, 0].float()

        return step

    def run(self, x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, start: int, attend,
            slab: int = 0) -> torch.Tensor:
        """The last token's logits (a copy: the graph's buffer is rewritten by the next prefill)."""
        self.x.copy_(x)
        self.slab.fill_(slab)
        self.cos.copy_(cos)
        self.sin.copy_(signed_sin)
        torch.add(self.base, start, out=self.slots)
        self._capture_some()
        return self._run_steps(attend).clone()

    def _run_steps(self, attend, n: int | None = None) -> torch.Tensor:
        """Every step, graphed where captured, with the attention of the first `n` tokens (all)
        run eagerly between; what the last step returns."""
        for i, (step, graph) in enumerate(zip(self.steps, self.graphs)):
            out = (graph or step)()
            if out is None:
                self.o[:n].copy_(attend(i, self.q[:, :n]))
        return out
