"""Runners that execute the model on a KV cache: the reference (eager transformers) and the fast path (static
cache, CUDA graphs, Triton attention). May import `engine.model` and `engine.capture`."""

from engine._exports import lazy_exports

_EXPORTS = {
    "EagerRunner": ".reference", "make_runner": ".reference", "shares_runner": ".reference",
    "StaticRunner": ".fast",
    "Runner": ".runner", "PicksRunner": ".runner", "PrefillGraphsRunner": ".runner",
    "CAPTURE_LOCK": ".gpu_lock", "CUDAGraphed": ".graphs", "GraphPool": ".graphs",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
