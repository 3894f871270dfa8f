"""One CUDA-graph helper for every graphed step: the fast runner's decode, greedy, vision and
prefill steps (engine/runtime/fast.py) and ChatTTS' code-token step (tts/chattts_graph.py).

`CUDAGraphed` warms a function of fixed-shape tensors up on a side stream, captures it into a
shared memory pool under CAPTURE_LOCK, and replays it on each call after copying the new inputs
into its static buffers; a shape change raises and names the caller's off switch (moshi's idea).
Without CUDA it calls the function eagerly on the same buffers, so callers and tests keep one path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from engine import flags

from .gpu_lock import CAPTURE_LOCK


def on_repeat(made: dict, seen: set, key, make: Callable):
    """`made[key]`, made by `make()` the second time `key` comes; None the first time (a graph for a
    shape that never repeats, such as the first chunk's, would cost its capture and memory for nothing)."""
    if key not in made:
        if key not in seen:
            seen.add(key)
            return None
        made[key] = make()
    return made[key]


class GraphPool:
    """One memory pool for graphs that never run at once: they share their memory."""

    def __init__(self) -> None:
        self._handle = None

    def handle(self):
        if self._handle is None:
            self._handle = torch.cuda.graph_pool_handle()
        return self._handle

    def drop(self) -> None:
        """Forget the pool once its last graph is gone: capturing into a dead pool fails."""
        self._handle = None


class CUDAGraphed:
    """`fn(*inputs)` captured as one CUDA graph. Calling it copies the inputs into the static
    buffers and replays; a shape change raises. With `static` the graph reads the example tensors
    themselves: call it with no inputs after filling them. Warm-ups run on copies, so they change
    no caller state, on `stream` (default: one side stream shared by every graph, so the memory
    they cache is one stream's); captures run on another shared stream, one at a time, or on
    `stream` when given. A capture records without running: it waits for nothing queued and
    leaves the allocator's caches alone (LIVECC_NO_LEAN_CAPTURE=1: through torch.cuda.graph,
    which synchronizes and empties them first)."""

    _side_stream: torch.cuda.Stream | None = None  # warm-ups
    # Lean captures, only ever under CAPTURE_LOCK: any thread's work on a capturing stream lands in
    # the graph, so no warm-up may share it.
    _capture_stream: torch.cuda.Stream | None = None

    def __init__(self, fn: Callable, inputs: Sequence[torch.Tensor] = (), *, pool=None, static: bool = False,
                 warmups: int = 2, stream: torch.cuda.Stream | None = None,
                 off_switch: str = "LIVECC_NO_CUDA_GRAPH", enabled: bool | None = None):
        self.fn, self.off_switch = fn, off_switch
        self.inputs = list(inputs) if static else [t.clone() for t in inputs]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output = None
        if enabled is None:
            enabled = torch.cuda.is_available()
        if enabled:
            self._warm_up(warmups, stream)
            self._capture(pool, stream)

    @staticmethod
    def _shared(name: str) -> torch.cuda.Stream:
        if getattr(CUDAGraphed, name) is None:
            setattr(CUDAGraphed, name, torch.cuda.Stream())
        return getattr(CUDAGraphed, name)

    def _warm_up(self, warmups: int, stream: torch.cuda.Stream | None) -> None:
        """Run outside the graph first: allocator, library handles, kernel choice."""
        stream = stream or self._shared("_side_stream")
        current = torch.cuda.current_stream(stream.device)
        stream.wait_stream(current)
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(warmups):
                self.fn(*[t.clone() for t in self.inputs])
        current.wait_stream(stream)

    def _capture(self, pool, stream: torch.cuda.Stream | None) -> None:
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: other threads may allocate meanwhile; the lock keeps GPU samplers
        # (ChatTTS) from drawing random numbers while the capture holds the CUDA generator.
        if flags.get("LIVECC_NO_LEAN_CAPTURE"):
            with CAPTURE_LOCK, torch.cuda.graph(self.graph, pool=pool, stream=stream,
                                                capture_error_mode="thread_local"), torch.inference_mode():
                self.output = self.fn(*self.inputs)
            if stream is not None:
                torch.cuda.current_stream(stream.device).wait_stream(stream)
            return
        try:
            self._capture_lean(pool, stream)
        except torch.OutOfMemoryError:
            # While a capture is under way the allocator cannot hand its cached blocks back to the
            # driver (torch.cuda.graph emptied the cache first): empty it now, while no other thread
            # captures, and capture once more.
            with CAPTURE_LOCK:
                torch.cuda.empty_cache()
            self.graph = torch.cuda.CUDAGraph()
            self._capture_lean(pool, stream)

    def _capture_lean(self, pool, stream: torch.cuda.Stream | None) -> None:
        with CAPTURE_LOCK:
            stream = stream or self._shared("_capture_stream")
            current = torch.cuda.current_stream(stream.device)
            stream.wait_stream(current)
            with torch.cuda.stream(stream), torch.inference_mode():
                self.graph.capture_begin(*(() if pool is None else (pool,)), capture_error_mode="thread_local")
                try:
                    self.output = self.fn(*self.inputs)
                finally:
                    self.graph.capture_end()
            current.wait_stream(stream)

    def __call__(self, *inputs: torch.Tensor):
        if inputs and len(inputs) != len(self.inputs):
            raise ValueError(f"graphed step got {len(inputs)} inputs, captured {len(self.inputs)}")
        for buf, value in zip(self.inputs, inputs):
            if buf.shape != value.shape:
                raise ValueError(f"graphed step got shape {tuple(value.shape)}, captured {tuple(buf.shape)}; "
                                 f"set {self.off_switch}=1 to run without graphs")
            buf.copy_(value, non_blocking=True)
        if self.graph is None:
            return self.fn(*self.inputs)
        self.graph.replay()
        return self.output
