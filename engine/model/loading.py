"""Loading LiveCC / Qwen2-VL checkpoints from a Hugging Face id or a local folder.

bf16 on CUDA, fp32 on CPU; flash-attention 2 where it imports on CUDA, else sdpa; liger kernels
on CUDA where they work with the installed transformers. Every failure a user can cause becomes a
`ModelLoadError`/`DeviceError` whose message names the fix.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine import flags
from engine.defaults import DEFAULT_MODEL
from engine.errors import DeviceError, ModelLoadError, OutOfMemoryError

from . import memory_plan
from . import quantize as quant
from .hub import looks_like_path

Progress = Callable[[str, float | None], None]  # (stage description, fraction done or None)
log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    name: str
    notes: list[str] = field(default_factory=list)
    precision: str = "none"  # none | int8 | int4 (engine/model/quantize.py)
    plan: "memory_plan.MemoryPlan | None" = None  # the memory plan on CUDA: its kv_budget caps the session's

    def describe(self) -> str:
        dev = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU"
        return f"{Path(self.name).name or self.name} on {dev} ({str(self.dtype).replace('torch.', '')})"


def resolve_device(device: str | None) -> torch.device:
    """None -> CUDA when present, else CPU. Asking for CUDA without one is an error, not a fallback."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device '{device}': use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"device '{device}' is not supported: use cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no usable NVIDIA GPU was found: use --device cpu "
                          "(slow) or install a CUDA build of PyTorch")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"there is no GPU {dev.index} (this machine has {torch.cuda.device_count()}): "
                          f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return dev


def _find_folder(name: str, progress: Progress | None) -> Path:
    """The folder `name` names; else, when it looks like a hub id (owner/name, and no folder 'owner'
    here), the downloaded snapshot. A missing folder says whether the hub was tried."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    if looks_like_path(name):
        raise ModelLoadError(f"no folder {path} ({path.absolute()}): check the path; it was not tried as a "
                             f"Hugging Face id (those look like owner/name)")
    if path.parent.is_dir():
        raise ModelLoadError(f"no folder {path} ({path.absolute()}): check the path; it was not tried as a "
                             f"Hugging Face id, since {path.parent}/ is a folder here")
    return _download(name, progress)


def _progress_tqdm(progress: Progress):
    """A tqdm class that forwards byte counts to `progress` (the GUI's dialog, the CLI's bar)."""
    from tqdm.auto import tqdm

    class _Reporter(tqdm):
        def update(self, n=1):
            out = super().update(n)
            if self.total:
                progress(f"Downloading {self.desc or 'model files'}", min(1.0, self.n / self.total))
            return out

    return _Reporter


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is a file, not a model folder: pass a folder holding config.json and "
                             f"weights, or a Hugging Face id like {DEFAULT_MODEL}")
    _check_config(folder / "config.json", folder)
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ModelLoadError(f"{folder} has no weights (*.safetensors): the download is incomplete; "
                             f"download it again or point --model at a complete folder")
    for weights in sorted(folder.glob("*.safetensors")):
        _check_safetensors(weights)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{folder} has no tokenizer files (tokenizer.json or vocab.json + merges.txt): copy "
                             f"them from the model's page on the Hugging Face hub, or re-download the model")


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
REDOWNLOAD = "re-download it, or delete the folder from the Hugging Face cache (~/.cache/huggingface/hub) to fetch it again"


def _check_config(cfg: Path, folder: Path) -> None:
    if not cfg.is_file():
        raise ModelLoadError(f"{folder} has no config.json: it is not a model folder")
    try:
        config = json.loads(cfg.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{cfg} is unreadable ({exc}): {REDOWNLOAD}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{cfg} holds a JSON {type(config).__name__}, not a model config: {REDOWNLOAD}")
    model_type = config.get("model_type")
    if model_type != "qwen2_vl":
        raise ModelLoadError(f"{folder} holds a '{model_type}' model, not Qwen2-VL: LiveCC needs a Qwen2-VL "
                             f"checkpoint such as {DEFAULT_MODEL}")
    _check_config_values(cfg, folder)


def _check_config_values(cfg: Path, folder: Path) -> None:
    """transformers validates each value's type as it builds the config: do that here, once, so a
    wrong one is our line before any weight is read."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(folder)
    except (StrictDataclassError, ValueError, TypeError, KeyError, AttributeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()[:160]  # the field's line
        raise ModelLoadError(f"{cfg} has a value transformers cannot use ({reason}): {REDOWNLOAD}") from None


def _check_safetensors(path: Path) -> None:
    """A safetensors file states its tensors' byte ranges in its header: a file shorter than that,
    or with a header cut short, is an interrupted download. Reads only the header."""
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if size < 8 or 8 + header_len > size:
                raise ValueError("header cut short")
            header = json.loads(f.read(header_len))
        if not isinstance(header, dict):
            raise ValueError(f"its header is a JSON {type(header).__name__}, not a table of tensors")
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise ModelLoadError(f"{path} is damaged ({exc}; an interrupted download?): {REDOWNLOAD}") from None
    if 8 + header_len + end > size:
        raise ModelLoadError(f"{path} is truncated ({size} of {8 + header_len + end} bytes; an interrupted "
                             f"download?): {REDOWNLOAD}")


def _download(repo_id: str, progress: Progress | None) -> Path:
    """snapshot_download with progress; any failure becomes a message that says how to go offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    if progress:
        progress(f"Downloading {repo_id} (first run only)", None)
    try:
        patterns = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "tokenizer*"]
        kwargs = {"tqdm_class": _progress_tqdm(progress)} if progress else {}
        return Path(snapshot_download(repo_id, allow_patterns=patterns, **kwargs))
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(f"no folder '{repo_id}' here, and no model '{repo_id}' on the Hugging Face hub: check "
                             f"the path or the id, or pass a local folder with --model /path/to/folder") from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelLoadError(f"no folder '{repo_id}' here, and it could not be downloaded as a Hugging Face id "
                             f"({type(exc).__name__}): check the path; without internet, download it elsewhere "
                             f"and pass the folder with --model /path/to/folder") from exc
    except ValueError as exc:  # HFValidationError: characters no hub id has
        raise ModelLoadError(f"no folder '{repo_id}' here, and it is not a Hugging Face id either: check the "
                             f"path") from exc


def attention_implementation(device: torch.device) -> str:
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        try:
            import flash_attn  # noqa: F401
            return "flash_attention_2"
        except ImportError as exc:  # a broken build (ABI mismatch) must not stop us
            log.warning("flash-attn present but unusable (%s): using sdpa", exc)
    return "sdpa"


def apply_liger(device: torch.device) -> str:
    """Liger kernels were used in training; apply what works with this transformers, say what happened."""
    if device.type != "cuda":
        return "liger: off (CPU)"
    if flags.get("LIVECC_NO_LIGER"):
        return "liger: off (LIVECC_NO_LIGER=1)"
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2_vl
    except ImportError as exc:
        return f"liger: not available ({exc.__class__.__name__}: {str(exc).splitlines()[0][:80]})"
    for kwargs in ({}, {"fused_linear_cross_entropy": False, "cross_entropy": False}, {"rope": False}):
        try:
            apply_liger_kernel_to_qwen2_vl(**kwargs)
            return f"liger: applied {kwargs or 'all defaults'}"
        except (ImportError, AttributeError, TypeError, ValueError) as exc:
            last = exc
    return f"liger: failed with this transformers ({last.__class__.__name__})"


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """transformers' own "Loading weights" and "Writing model shards" bars: the caller says what happens."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    from .tiny import QWEN2_VL_CHAT_TEMPLATE

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE  # older exports keep it in the processor only
    return tokenizer


def _load_checked(model_class, folder: Path, device: torch.device, **options) -> torch.nn.Module:
    """from_pretrained, refusing a checkpoint that lacks weights, holds others or has them in other
    shapes: transformers fills such weights with random values and only logs it (and we hush its
    logs), and a model of noise must not run silently."""
    model, info = model_class.from_pretrained(folder, output_loading_info=True, ignore_mismatched_sizes=True,
                                              **options)
    problems = [_weights(info["missing_keys"], "missing"), _weights(info["unexpected_keys"], "not Qwen2-VL's"),
                _weights([k[0] if isinstance(k, tuple) else k for k in info["mismatched_keys"]], "of another shape")]
    problems = [p for p in problems if p]
    if problems:
        raise ModelLoadError(f"{folder} is not a complete Qwen2-VL checkpoint: {'; '.join(problems)}: {REDOWNLOAD}")
    return model.to(device)


def _weights(names, what: str, shown: int = 3) -> str:
    """'58 weights missing (a, b, c, ...)', or '' when there are none."""
    names = sorted(names)
    if not names:
        return ""
    few = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
    return f"{len(names)} weight{'s' if len(names) > 1 else ''} {what} ({few})"


def load_model(name_or_path: str = DEFAULT_MODEL, device: str | None = None,
               progress: Progress | None = None, dtype: torch.dtype | None = None,
               quantize: "quant.QuantRequest | None" = None) -> LoadedModel:
    """Load a Qwen2-VL checkpoint for streaming. Raises ModelLoadError / DeviceError / OutOfMemoryError."""
    dev = resolve_device(device)
    folder = _find_folder(name_or_path, progress)
    _check_folder(folder)
    precision, plan = memory_plan.plan_for_folder(folder, dev, quantize)
    dtype = dtype or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    notes = [f"attention: {attention_implementation(dev)}", apply_liger(dev)]
    if progress:
        progress(f"Loading weights from {folder}", None)
    from transformers import Qwen2VLForConditionalGeneration

    try:
        # device_map loads straight onto the GPU but needs accelerate; without it, load then move.
        staged = quant.staging_device(precision, dev)
        placement = {"device_map": str(staged)} if importlib.util.find_spec("accelerate") else {}
        attn = notes[0].split(": ")[1]
        with quiet_progress_bars():
            model = quant.load_quantized(folder, precision, dev, dtype, attn, lambda: _load_checked(
                Qwen2VLForConditionalGeneration, folder, staged, dtype=dtype, attn_implementation=attn, **placement))
        tokenizer = load_tokenizer(folder)
    except torch.OutOfMemoryError as exc:
        raise OutOfMemoryError(f"GPU out of memory while loading {name_or_path}: close other GPU programs "
                               f"or use a GPU with ~20 GB free") from exc
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused a pickled checkpoint
        raise ModelLoadError(f"{folder} holds a pickled checkpoint (*.bin) that cannot be loaded safely: use the "
                             f"model's safetensors files instead (re-download it from the hub)") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"cannot load {folder}: {str(exc).splitlines()[0][:200]}: {REDOWNLOAD}") from exc
    model.eval()
    notes.append(quant.describe_precision(precision, plan, model))
    if progress:
        progress("Model ready", 1.0)
    log.info("loaded %s: %s", name_or_path, "; ".join(notes))
    return LoadedModel(model, tokenizer, dev, dtype, str(name_or_path), notes, precision, plan)
