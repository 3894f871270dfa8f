"""The model: loading (real checkpoints and the tiny test model), weight quantization and the memory plan, frame
preprocessing, the LiveCC prompt format and M-RoPE positions. May import `engine.capture` (for `Frame`)."""

from engine._exports import lazy_exports

_EXPORTS = {
    "load_model": ".loading", "LoadedModel": ".loading", "DEFAULT_MODEL": "engine.defaults",
    "make_tiny_model": ".tiny",
    "preprocess_frames": ".preprocess", "VideoInputs": ".preprocess",
    "PromptBuilder": ".prompt", "DEFAULT_QUERY": "engine.defaults",
    "segment_positions": ".rope",
    "QuantRequest": ".quantize", "QuantLinear": ".quantize", "QuantizeError": ".quantize", "quantize_model": ".quantize",
    "PRECISIONS": ".quantize",
    "MemoryPlan": ".memory_plan", "ModelShape": ".memory_plan", "plan_memory": ".memory_plan",
    "quiet_third_parties": ".quiet",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
