"""The memory plan: from a Qwen2-VL config and the card's free memory, before any weight is read,
the precision to load at (`--quantize auto`), the KV budget that fits each of N concurrent
sessions (a KV slab and a repetition-penalty set apiece) and whether the prefill's CUDA graphs
have room. Pure arithmetic on a config, so it is tested without a GPU (tests/test_memory_plan.py);
sizes measured on real cards are in docs/quantization.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine import flags
from engine.errors import OutOfMemoryError

from .quantize import GROUP, GiB, QuantizeError, QuantRequest, check_supported

PREFILL_GRAPH_TOKENS = 1024  # the longest prefill piece the fast runner graphs (longer ones are rare)


@dataclass(frozen=True)
class ModelShape:
    """Parameter counts that decide memory, read from a Qwen2-VL config before loading."""

    lm_linear: int  # language-model linears + lm_head
    embed: int
    vision: int
    kv_bytes_per_token: int  # bf16 K and V over every layer
    vision_act_bytes: int  # one chunk's vision activations at the default frame size
    prefill_act_bytes: int  # one prefill piece's MLP activations
    graph_act_bytes: int  # the MLP activations of the longest graphed prefill piece (held by its graphs)
    gate_up_bytes: int  # the largest linear (fused gate/up) in bf16: a quantized prefill dequantizes it
    seen_bytes: int  # one session's repetition-penalty set on the GPU: a bool per vocabulary id

    @classmethod
    def from_config(cls, config, chunk_patches: int = 1456, prefill_piece: int = 2048,
                    graph_piece: int = PREFILL_GRAPH_TOKENS) -> "ModelShape":
        t, v = config.text_config, config.vision_config
        h, inter, layers = t.hidden_size, t.intermediate_size, t.num_hidden_layers
        head_dim = h // t.num_attention_heads
        kv_dim = t.num_key_value_heads * head_dim
        per_layer = h * (h + 2 * kv_dim) + h * h + 3 * h * inter
        e = v.embed_dim
        merged = e * v.spatial_merge_size ** 2
        vision = v.depth * (4 * e * e + 2 * e * int(e * v.mlp_ratio)) + merged * merged + merged * v.hidden_size
        return cls(lm_linear=layers * per_layer + t.vocab_size * h, embed=t.vocab_size * h, vision=vision,
                   kv_bytes_per_token=2 * layers * kv_dim * 2,
                   vision_act_bytes=chunk_patches * int(e * v.mlp_ratio) * 2 * 6,
                   prefill_act_bytes=prefill_piece * 2 * inter * 2 * 3,
                   graph_act_bytes=graph_piece * 2 * inter * 2 * 3, gate_up_bytes=2 * inter * h * 2,
                   seen_bytes=t.vocab_size)

    def session_bytes(self, kv_tokens: int) -> int:
        """What one more session holds on the GPU: its KV slab and its repetition-penalty set."""
        return kv_tokens * self.kv_bytes_per_token + self.seen_bytes

    def prefill_graph_bytes(self, precision: str) -> int:
        """What the prefill's CUDA graphs hold (their pool): a piece's activations, and with quantized
        weights one dequantized linear (this counts the longest piece graphed; measured sizes in
        docs/quantization.md)."""
        return self.graph_act_bytes + (self.gate_up_bytes if precision != "none" else 0)

    def weight_bytes(self, precision: str) -> int:
        """bf16 for none; packed bytes plus bf16 scales for int8 / int4; vision int8 when quantized."""
        if precision == "none":
            return 2 * (self.lm_linear + self.embed + self.vision)
        lm = self.lm_linear * (1 + 2 / 3584) if precision == "int8" else self.lm_linear * (0.5 + 2 / GROUP)
        return int(lm + 2 * self.embed + self.vision * (1 + 2 / 1280))


OVERHEAD_BYTES = int(0.9 * GiB)  # CUDA context, cuBLAS workspace, decode graphs, the allocator's slack
SPEECH_BYTES = int(1.6 * GiB)  # ChatTTS weights and its sampling state on the GPU
MIN_KV_TOKENS = 4096  # below this the compacted context no longer holds its 16 s of video


@dataclass(frozen=True)
class MemoryPlan:
    """What the card holds: sizes in GB (`kv_gb` is the whole pool, `sessions` slabs) and why."""

    precision: str  # none | int8 | int4
    kv_budget: int  # tokens: the request, or what fits
    weights_gb: float
    kv_gb: float
    activations_gb: float
    speech_gb: float
    free_gb: float
    reason: str
    prefill_graphs: bool = True  # False: no room for the prefill's CUDA graphs, it runs eagerly
    sessions: int = 1  # concurrent sessions, each with `kv_budget` tokens of KV
    kv_bytes_per_session: int = 0  # the peak GPU memory each added session costs (KV slab + penalty set)

    def describe(self) -> str:
        return f"precision {self.precision}: {self.sizes()} ({self.why()})"

    def sizes(self) -> str:
        speech = f" + speech {self.speech_gb:.1f}" if self.speech_gb else ""
        tokens = f"{self.kv_budget} tokens" if self.sessions == 1 else f"{self.sessions} sessions x {self.kv_budget} tokens"
        return (f"weights {self.weights_gb:.1f} GB + KV {self.kv_gb:.1f} GB ({tokens}) + "
                f"activations {self.activations_gb:.1f} GB{speech} of {self.free_gb:.1f} GB free")

    def why(self) -> str:
        return self.reason + ("" if self.prefill_graphs else "; prefill without CUDA graphs, to keep the KV budget")


def prefill_graphs_on() -> bool:
    """LIVECC_NO_PREFILL_GRAPH=1: the fast runner prefills eagerly (engine/runtime/fast.py), and the plan
    does not count its graphs."""
    return not flags.get("LIVECC_NO_PREFILL_GRAPH")


def _fixed(shape: ModelShape, precision: str, speech: bool, graphs: bool) -> int:
    """Everything but the KV cache."""
    fixed = shape.weight_bytes(precision) + shape.vision_act_bytes + shape.prefill_act_bytes + OVERHEAD_BYTES
    return fixed + (SPEECH_BYTES if speech else 0) + (shape.prefill_graph_bytes(precision) if graphs else 0)


def plan_memory(shape: ModelShape, precision: str, free_bytes: int, kv_budget: int, speech_on_gpu: bool,
                sessions: int = 1) -> MemoryPlan:
    """`auto` takes the first of none, int8, int4 whose weights fit with the whole KV budget for
    each of `sessions` (and speech); otherwise the smallest precision with every session's KV
    budget cut to what fits. The prefill's CUDA graphs come last: they are dropped before any
    precision or KV is given up for them. Raises QuantizeError when not even MIN_KV_TOKENS fit
    one session, OutOfMemoryError when they fit fewer than `sessions`."""
    candidates = ("none", "int8", "int4") if precision == "auto" else (precision,)
    kv = sessions * shape.session_bytes(kv_budget)
    for p in candidates:
        for graphs in (True, False) if prefill_graphs_on() else (False,):
            if _fixed(shape, p, speech_on_gpu, graphs) + kv <= free_bytes:
                why = "asked for" if precision != "auto" else ("bf16 fits" if p == "none" else
                                                               f"{'bf16' if p == 'int8' else 'int8'} does not fit")
                return _plan(shape, p, kv_budget, free_bytes, speech_on_gpu, f"{why}, with the whole KV budget", graphs,
                             sessions)
    p = candidates[-1]
    fixed = _fixed(shape, p, speech_on_gpu, graphs=False)
    fits = _kv_tokens(shape, free_bytes - fixed, sessions)
    least = min(MIN_KV_TOKENS, kv_budget)
    if fits < least:
        raise _does_not_fit(shape, p, free_bytes, fixed, least, sessions)
    each = " each" if sessions > 1 else ""
    return _plan(shape, p, fits, free_bytes, speech_on_gpu, f"KV budget cut from {kv_budget} to {fits} tokens{each} to fit",
                 False, sessions)


def _kv_tokens(shape: ModelShape, room: int, sessions: int) -> int:
    """Each session's KV budget that `room` bytes hold for `sessions`, in whole 1024-token blocks."""
    return int(room // sessions - shape.seen_bytes) // shape.kv_bytes_per_token // 1024 * 1024


def _sessions_that_fit(shape: ModelShape, room: int, least: int) -> int:
    """The most sessions that `room` bytes hold with at least `least` KV tokens each."""
    n = max(0, room // shape.session_bytes(least))
    while n > 0 and _kv_tokens(shape, room, n) < least:  # the 1024-token rounding can take one or two more
        n -= 1
    return n


def _does_not_fit(shape: ModelShape, precision: str, free: int, fixed: int, least: int, sessions: int) -> Exception:
    """The one-line refusal: the model itself, or this many sessions of at least `least` KV tokens."""
    at_most = _sessions_that_fit(shape, free - fixed, least)
    if sessions > 1 and at_most >= 1:
        other = "" if precision == "int4" else "--quantize int4 or "
        label = "bf16" if precision == "none" else precision
        return OutOfMemoryError(f"{sessions} sessions do not fit in {free / GiB:.1f} GB of free GPU memory: at most "
                                f"{at_most} fit on this card at {label} with {least} KV tokens each",
                                f"use {other}at most {at_most} sessions")
    return QuantizeError(
        f"the model does not fit in {free / GiB:.1f} GB of free GPU memory at {precision} "
        f"(needs {(fixed + shape.session_bytes(MIN_KV_TOKENS)) / GiB:.1f} GB): use --quantize int4, "
        "a lower --max-pixels, a smaller --kv-budget, speech on the CPU, or --device cpu")


def _plan(shape: ModelShape, precision: str, kv: int, free: int, speech: bool, reason: str, graphs: bool,
          sessions: int) -> MemoryPlan:
    activations = shape.vision_act_bytes + shape.prefill_act_bytes + OVERHEAD_BYTES
    activations += shape.prefill_graph_bytes(precision) if graphs else 0
    per_session = shape.session_bytes(kv)
    return MemoryPlan(precision, kv, shape.weight_bytes(precision) / GiB, sessions * per_session / GiB,
                      activations / GiB, SPEECH_BYTES / GiB if speech else 0.0, free / GiB, reason,
                      graphs, sessions, per_session)


def free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device; None elsewhere (the CPU has no plan: `auto` means none there)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free


def plan_for_folder(folder, device: torch.device, request: QuantRequest | None) -> tuple[str, MemoryPlan | None]:
    """The load hook, before any weight is read: (precision to load at, the plan or None)."""
    request = request or QuantRequest()
    free = free_memory(device)
    if free is None:
        precision = "none" if request.precision == "auto" else request.precision
        check_supported(precision, device)
        return precision, None
    from transformers import AutoConfig

    plan = plan_memory(ModelShape.from_config(AutoConfig.from_pretrained(folder)), request.precision, free,
                       request.kv_budget, request.speech_on_gpu, request.sessions)
    check_supported(plan.precision, device)
    return plan.precision, plan
