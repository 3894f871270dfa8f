"""Weight-only quantization of the model's linear layers (int8 per output channel, int4 in groups
of 128); the memory plan that picks a precision for the card is engine/model/memory_plan.py.

What is quantized: every linear of the language model and the lm_head at the chosen precision;
the vision tower's linears at int8 whenever the language model is quantized (it is compute bound,
so this only saves memory: 1.35 -> 0.68 GB at the 7B shape). Embeddings and norms stay as loaded.

`QuantLinear` keeps one packed layout on every device, so the fast path can fuse rows (q/k/v,
gate/up) by concatenation and the reference runner reads the very same bytes. Its forward takes
a GPU kernel from `QuantLinear.kernels` (filled by engine/runtime/quant_kernels.py: this package
may not import the runtime) and otherwise dequantizes in plain torch, which is what CPU runs.
LIVECC_NO_QUANT_KERNEL=1 forces that plain path everywhere.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from engine import flags
from engine.defaults import KV_BUDGET, PRECISIONS
from engine.errors import LiveCCError

if TYPE_CHECKING:
    from .memory_plan import MemoryPlan

GROUP = 128  # int4 scale group along the input dimension (torchao / tinygemm default)
VISION_BITS = 8  # the vision tower's precision whenever the language model is quantized
GiB = 1024 ** 3
CACHE_FORMAT = 2  # bump when the packing changes: old cache files then miss (2: int4 in byte lanes)
log = logging.getLogger(__name__)


class QuantizeError(LiveCCError):
    """A precision this device, library or budget cannot run; the message names the fix."""


# -- packing ---------------------------------------------------------------------------------
def int4_group(in_features: int) -> int | None:
    """The scale group for an input width, or None when int4 cannot pack it (kept unquantized)."""
    group = min(GROUP, in_features)
    power_of_two = group >= 32 and group & (group - 1) == 0  # the kernels tile a group in powers of two
    return group if in_features % group == 0 and power_of_two else None


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per output channel: w ~ q * scale, q in [-127, 127]."""
    scale = w.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
    q = torch.round(w.float() / scale).clamp(-127, 127).to(torch.int8)
    return q, scale.to(w.dtype)


def quantize_int4(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per group of `group` inputs: w ~ (q - 8) * scale, q in [0, 15], two per byte.
    Read as 32-bit words, a group is `group / 8` words; byte t of word c holds columns 2m (low
    nibble) and 2m + 1 (high) with m = t * group / 8 + c, so a kernel pairs each byte lane with one
    contiguous run of x, read as bf16 pairs (engine/runtime/triton_quant.py)."""
    out, k = w.shape
    g = w.float().view(out, k // group, group)
    scale = g.abs().amax(dim=2, keepdim=True).clamp(min=1e-12) / 7.0
    q = (torch.round(g / scale).clamp(-8, 7) + 8).to(torch.uint8)
    pairs = q[..., 0::2] | (q[..., 1::2] << 4)  # byte m: columns 2m and 2m + 1
    packed = pairs.view(out, k // group, 4, group // 8).transpose(2, 3)  # byte m = t * words + c -> 4 c + t
    return packed.reshape(out, k // 2), scale.squeeze(2).to(w.dtype)


def dequantize(qweight: torch.Tensor, scales: torch.Tensor, bits: int, dtype: torch.dtype) -> torch.Tensor:
    """The plain-torch inverse of the packing: the reference arithmetic every kernel must match."""
    if bits == 8:
        return qweight.to(dtype) * scales.to(dtype)
    out, half = qweight.shape
    groups = scales.shape[1]
    pairs = qweight.view(out, groups, -1, 4).transpose(2, 3).reshape(out, groups, -1)
    q = torch.stack((pairs & 0xF, pairs >> 4), dim=-1).view(out, groups, -1).to(dtype) - 8
    return (q * scales.to(dtype)[:, :, None]).view(out, 2 * half)


class QuantLinear(torch.nn.Module):
    """A weight-only quantized nn.Linear: packed weight (int8 or two int4 per uint8), scales, bias."""

    # bits -> (gemv(x, layer, residual, glu) or None, dequant(layer, dtype)): registered by engine.runtime.quant_kernels
    kernels: dict[int, tuple[Callable, Callable]] = {}

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None, bits: int,
                 in_features: int):
        super().__init__()
        self.bits, self.in_features, self.out_features = bits, in_features, qweight.shape[0]
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, bits: int) -> "QuantLinear":
        w = linear.weight.data
        qweight, scales = quantize_int8(w) if bits == 8 else quantize_int4(w, int4_group(w.shape[1]))
        bias = None if linear.bias is None else linear.bias.data
        return cls(qweight, scales, bias, bits, w.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.scales.dtype

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.scales))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int{self.bits}"

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None, glu: bool = False) -> torch.Tensor:
        """x @ W^T + bias; with `glu` (fused gate/up rows) SiLU(gate) * up of that; plus `residual`.
        One token on the GPU is one kernel for all of it; otherwise the torch ops in turn."""
        kernel = self.kernels.get(self.bits) if x.is_cuda and _kernels_on() else None
        if kernel is not None and kernel[0] is not None and x.numel() == x.shape[-1]:  # one token: GEMV
            return kernel[0](x, self, residual, glu)
        if kernel is not None:
            weight = kernel[1](self, x.dtype)
        else:
            weight = dequantize(self.qweight, self.scales, self.bits, x.dtype)
        y = F.linear(x, weight, None if self.bias is None else self.bias.to(x.dtype))
        if glu:
            gate, up = y.chunk(2, dim=-1)
            y = F.silu(gate) * up
        return y if residual is None else residual + y


def _kernels_on() -> bool:
    return not flags.get("LIVECC_NO_QUANT_KERNEL")


def fuse_quant_rows(*layers: QuantLinear) -> QuantLinear:
    """One QuantLinear for layers sharing an input (q/k/v, gate/up): packed rows concatenate, then
    each layer's buffers become views into the fused ones, so the model holds one copy."""
    fused = QuantLinear(torch.cat([lin.qweight for lin in layers]), torch.cat([lin.scales for lin in layers]),
                        torch.cat([lin.bias.data for lin in layers]) if all(lin.bias is not None for lin in layers)
                        else None, layers[0].bits, layers[0].in_features)
    row = 0
    for lin in layers:
        n = lin.out_features
        lin.qweight, lin.scales = fused.qweight[row:row + n], fused.scales[row:row + n]
        if lin.bias is not None and fused.bias is not None:
            lin.bias.data = fused.bias.data[row:row + n]
        row += n
    return fused


# -- what gets quantized ---------------------------------------------------------------------
def quantized_layers(model: torch.nn.Module, precision: str) -> dict[str, int]:
    """Module name -> bits for every linear that `precision` quantizes."""
    if precision == "none":
        return {}
    bits = 8 if precision == "int8" else 4
    chosen = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        vision = name.startswith(("model.visual.", "visual."))
        b = VISION_BITS if vision else bits
        if b == 4 and int4_group(module.in_features) is None:
            b = 8  # a width int4 cannot group: int8 still saves half
        chosen[name] = b
    return chosen


def quantize_model(model: torch.nn.Module, precision: str, device: torch.device | None = None) -> dict[str, int]:
    """Replace the linears in place, one at a time on `device` (the bf16 weights may sit on the
    CPU: a 12 GB card never holds them all), then move what is left there. Returns name -> bits."""
    chosen = quantized_layers(model, precision)
    for name, bits in chosen.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child)
        if device is not None:
            linear = linear.to(device)
        setattr(parent, child, QuantLinear.from_linear(linear, bits))
        del linear
    if device is not None:
        model.to(device)
    return chosen


def quantized_bytes(model: torch.nn.Module) -> int:
    return sum(m.nbytes() for m in model.modules() if isinstance(m, QuantLinear))


# -- the load hook ---------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantRequest:
    """What the user asked for: --quantize, --kv-budget, whether ChatTTS shares the GPU, and how
    many sessions run at once."""

    precision: str = "none"
    kv_budget: int = KV_BUDGET
    speech_on_gpu: bool = False
    sessions: int = 1  # concurrent sessions the memory plan sizes the KV pool for

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise QuantizeError(f"unknown precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.sessions < 1:
            raise QuantizeError(f"{self.sessions} concurrent sessions asked for", "ask for at least 1")


def check_supported(precision: str, device: torch.device, triton_ok: bool | None = None) -> None:
    """int8/int4 run on CUDA through Triton kernels and on the CPU in plain torch; nothing else."""
    if precision in ("none", "auto"):
        return
    if device.type not in ("cuda", "cpu"):
        raise QuantizeError(f"--quantize {precision} runs on CUDA or the CPU, not {device.type}: "
                            "use --quantize none or --device cpu")
    if triton_ok is None:
        triton_ok = importlib.util.find_spec("triton") is not None
    if device.type == "cuda" and not triton_ok:
        raise QuantizeError(f"--quantize {precision} on the GPU needs Triton: pip install triton "
                            "(it ships with Linux CUDA builds of PyTorch), or use --quantize none")


def staging_device(precision: str, device: torch.device) -> torch.device:
    """Where from_pretrained puts the weights: quantized ones stay on the host until packed."""
    return device if precision == "none" else torch.device("cpu")


def describe_precision(precision: str, plan: MemoryPlan | None, model: torch.nn.Module) -> str:
    packed = quantized_bytes(model) / GiB
    head = f"quantize: {precision}" + (f" ({packed:.1f} GB packed)" if precision != "none" else "")
    return head + (f"; memory plan: {plan.describe()}" if plan is not None else "")


def precision_note(requested: str, precision: str, plan: MemoryPlan | None, dtype: torch.dtype) -> str:
    """The load note: which precision the weights run at, and why (--quantize auto decides on CUDA
    from the memory plan; elsewhere there is no GPU memory to fit, so auto keeps them unquantized)."""
    which = str(dtype).removeprefix("torch.") if precision == "none" else precision
    if plan is not None:
        return f"precision {which}, {'auto: ' if requested == 'auto' else ''}{plan.why()}: {plan.sizes()}"
    if requested == "auto":
        return f"precision {which}, auto: no GPU memory to fit on this device, so the weights stay unquantized"
    return f"precision {which}, as asked for (--quantize {requested})"


# -- the on-disk cache -----------------------------------------------------------------------
def cache_file(folder: Path, precision: str) -> Path | None:
    """Where the packed model for this checkpoint and precision lives: keyed by the checkpoint's
    files (name, size, mtime), the packing format and the transformers version."""
    if precision == "none" or flags.get("LIVECC_NO_QUANT_CACHE"):
        return None
    import transformers

    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    stamp = [str(folder.resolve()), precision, CACHE_FORMAT, transformers.__version__]
    stamp += [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = hashlib.sha1(repr(stamp).encode()).hexdigest()[:16]
    root = flags.get("LIVECC_QUANT_CACHE") or Path.home() / ".cache" / "livecc" / "quantized"
    return root / f"{folder.name}-{precision}-{key}.safetensors"


_BUFFER = "__buffer__."  # non-persistent buffers (rotary inv_freq) travel too: no re-derivation per version


def save_packed(model: torch.nn.Module, bits: dict[str, int], path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {name: t.contiguous() for name, t in model.state_dict().items()}
    tensors |= {_BUFFER + n: b.contiguous() for n, b in model.named_buffers() if n not in tensors}
    tmp = path.with_suffix(".part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata={"bits": json.dumps(bits)})
        tmp.replace(path)  # a half-written file never looks like a cache hit
    except (OSError, SafetensorError) as exc:  # a full disk comes back as a SafetensorError
        tmp.unlink(missing_ok=True)
        log.warning("could not cache the packed weights at %s (%s): the next start packs them again", path, exc)


def load_packed(config, path: Path, device: torch.device, dtype: torch.dtype, attn: str) -> torch.nn.Module:
    """The model built on the meta device and filled from the cache file: the checkpoint's float
    weights are never read."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import Qwen2VLForConditionalGeneration

    with safe_open(str(path), "pt") as f:
        bits = json.loads(f.metadata()["bits"])
    tensors = load_file(str(path), device=str(device))
    config._attn_implementation = attn
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    for name, b in bits.items():
        parent_name, _, child = name.rpartition(".")
        qweight = tensors[f"{name}.qweight"]
        layer = QuantLinear(qweight, tensors[f"{name}.scales"], tensors.get(f"{name}.bias"), b,
                            qweight.shape[1] * (2 if b == 4 else 1))
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
    buffers = {k[len(_BUFFER):]: tensors.pop(k) for k in list(tensors) if k.startswith(_BUFFER)}
    model.load_state_dict(tensors, strict=True, assign=True)
    for name, value in buffers.items():
        owner, _, attr = name.rpartition(".")
        model.get_submodule(owner)._buffers[attr] = value
    return model


def load_quantized(folder: Path, precision: str, device: torch.device, dtype: torch.dtype, attn: str,
                   load_float: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """The load hook: the packed model from the cache when there is one; else `load_float()`
    (bf16 on the host when quantizing), packed onto `device` and cached for the next start."""
    path = cache_file(folder, precision)
    if path is not None and path.is_file():
        from safetensors import SafetensorError
        from transformers import AutoConfig

        try:
            return load_packed(AutoConfig.from_pretrained(folder), path, device, dtype, attn)
        except (OSError, SafetensorError, KeyError, ValueError, RuntimeError) as exc:  # torn or stale cache file
            log.warning("the cached packed weights %s are unusable (%s): packing them again", path, exc)
            path.unlink(missing_ok=True)
    model = load_float()
    bits = quantize_model(model, precision, device)
    if path is not None:
        save_packed(model, bits, path)
    return model
