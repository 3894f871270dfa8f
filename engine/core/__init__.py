"""The engine core: many sessions of one model, their model work batched. May import
`engine.capture`, `engine.model`, `engine.runtime` and `engine.session`."""

from engine._exports import lazy_exports

_EXPORTS = {
    "EngineCore": ".engine", "Stream": ".engine", "BatchedRunner": ".batched", "KVPool": ".kv", "Slab": ".kv",
    "PoolFullError": ".kv", "BusyError": ".scheduler", "EngineStopped": ".scheduler",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
