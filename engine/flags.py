"""Every LIVECC_* environment switch, in one registry: name, type, default and a line of documentation.

Code reads a switch with `flags.get(NAME)`, never from os.environ (tests/test_flags.py checks). A bad
value raises FlagError, a LiveCCError naming the variable and what it accepts; front ends call
`check_environment()` at start-up so a bad value is one line there. docs/configuration.md is generated
from this file: `python -m engine.flags > docs/configuration.md`.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from engine.defaults import DEFAULT_MODEL, PRECISIONS
from engine.errors import LiveCCError

LOG = logging.getLogger(__name__)
PREFIX = "LIVECC_"
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


class FlagError(LiveCCError, ValueError):
    """A LIVECC_* variable holds a value it does not accept; `problem` names it and what it takes."""

    code = "bad-setting"

    def __str__(self) -> str:
        return f"bad environment setting: {super().__str__()}"


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str  # "switch" | "int" | "float" | "choice" | "text" | "path"
    default: object
    doc: str
    group: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    old_name: str | None = None  # deprecated name of the same switch, with the opposite polarity

    def parse(self, text: str, name: str | None = None) -> object:
        """`text` as this flag's type; FlagError (naming `name`, the variable it came from) when it does not fit."""
        value = _PARSERS[self.kind](self, text.strip())
        if value is None:
            raise FlagError(f"{name or self.name}={text.strip()!r} is not {self.accepts()}")
        return value

    def accepts(self) -> str:
        if self.kind == "switch":
            return "one of 1, 0 (or true, false, yes, no, on, off)"
        if self.kind == "choice":
            return f"one of {', '.join(self.choices)}"
        if self.kind == "int":
            return f"a whole number >= {self.minimum:g}"
        if self.kind == "float":
            return f"a number from {self.minimum:g} to {self.maximum:g}"
        return "a non-empty value"


def _switch(flag: Flag, text: str):
    lower = text.lower()
    return True if lower in TRUE else False if lower in FALSE else None


def _int(flag: Flag, text: str):
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value >= flag.minimum else None


def _float(flag: Flag, text: str):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and flag.minimum <= value <= flag.maximum else None


_PARSERS = {
    "switch": _switch, "int": _int, "float": _float,
    "choice": lambda flag, text: text.lower() if text.lower() in flag.choices else None,
    "text": lambda flag, text: text or None,
    "path": lambda flag, text: Path(text).expanduser() if text else None,
}

ENGINE, FAST, SPEECH, APP, DEV = "Model and engine", "Fast path (off switches)", "Speech", "Desktop app", "Development"
SERVER = "Server"
REGISTRY: dict[str, Flag] = {f.name: f for f in [
    Flag("LIVECC_MODEL", "text", DEFAULT_MODEL, "Model id or local folder that `livecc` and the app load.", ENGINE),
    Flag("LIVECC_QUANTIZE", "choice", "auto", "Weight precision: auto picks what fits the GPU with the KV budget.",
         ENGINE, choices=PRECISIONS),
    Flag("LIVECC_QUANT_CACHE", "path", None, "Folder for quantized weights, kept between runs "
         "(unset: ~/.cache/livecc/quantized).", ENGINE),
    Flag("LIVECC_NO_QUANT_CACHE", "switch", False, "Quantize at every load; write no cache.", ENGINE),
    Flag("LIVECC_NO_LIGER", "switch", False, "Do not apply liger-kernel's fused ops on CUDA.", ENGINE),
    Flag("LIVECC_NO_FAST", "switch", False, "Use the eager reference runner everywhere (the yardstick).", FAST),
    Flag("LIVECC_FAST", "switch", False, "Use the fast runner on the CPU too (tests compare it there).", FAST),
    Flag("LIVECC_NO_CUDA_GRAPH", "switch", False, "Run the decode step eagerly instead of as a CUDA graph.", FAST),
    Flag("LIVECC_NO_PREFILL_GRAPH", "switch", False, "Prefill eagerly instead of with piecewise CUDA graphs.", FAST),
    Flag("LIVECC_NO_LEAN_CAPTURE", "switch", False, "Capture CUDA graphs through torch.cuda.graph, which first waits for the GPU and empties the allocator's device and pinned host caches; the lean capture does neither, so a graph captured mid-stream does not stall the streams.", FAST),
    Flag("LIVECC_NO_DECODE_AHEAD", "switch", False,
         "Read each token back before queuing the next decode step.", FAST),
    Flag("LIVECC_NO_TRITON", "switch", False, "Use torch's attention and GEMVs instead of the Triton kernels.", FAST),
    Flag("LIVECC_NO_FUSED", "switch", False, "Use the unfused decode layer (separate norm, RoPE and SiLU ops; also in the engine core's eager prefill passes) and the vision tower's torch ops (RoPE, QuickGELU).", FAST),
    Flag("LIVECC_NO_LOOKAHEAD", "switch", False, "Read each of the engine core's decode steps before launching the next (no step run ahead of the host).", FAST),
    Flag("LIVECC_NO_FIRST_PICK", "switch", False, "Let each session pick its reply's first token from the prefill's logits itself, not the driver in the prefill's step (the engine core then waits for that read).", FAST),
    Flag("LIVECC_NO_MIXED_STEP", "switch", False, "Run the engine core's decode rows and prefill pieces as separate passes, not one.", FAST),
    Flag("LIVECC_NO_PASS_GRAPH", "switch", False, "Run the engine core's passes of several prefill pieces, or of decode rows with pieces, eagerly, not as padded piecewise CUDA graphs.", FAST),
    Flag("LIVECC_NO_WARM_START", "switch", False, "Capture the engine core's CUDA graphs when its first streams need them, not when it starts (the warm start captures the decode graphs of every row bucket and the pass graphs of every padded size: 4-7 s of a core's start on an H100, and 32 streams joining at once are real-time from their first seconds).", FAST),
    Flag("LIVECC_NO_VARLEN", "switch", False, "Attend each of the engine core's prefill pieces with its own SDPA call, not all of a step's in one FlashAttention varlen launch.", FAST),
    Flag("LIVECC_NO_QUANT_KERNEL", "switch", False, "Dequantize with torch ops instead of the Triton kernels.", FAST),
    Flag("LIVECC_NO_OVERLAP", "switch", False,
         "Run the next chunk's vision (and speech) on the default stream, not beside the decode.", FAST),
    Flag("LIVECC_SPEECH_START", "choice", "clause", "Speak a fragment at a clause boundary, or wait for a sentence.",
         SPEECH, choices=("clause", "sentence")),
    Flag("LIVECC_SPEECH_MAX_PENDING", "int", 1, "Phrases waiting to be spoken at most (a newer one merges into the one waiting).",
         SPEECH, minimum=1),
    Flag("LIVECC_SPEECH_MAX_RATE", "float", 1.75, "Fastest catch-up speech rate; 1 turns catch-up off.",
         SPEECH, minimum=1.0, maximum=2.0),
    Flag("LIVECC_TTS_NO_FAST_START", "switch", False,
         "ChatTTS' own start: skip 2 pieces of 24 tokens, no warm-up.", SPEECH, old_name="LIVECC_TTS_FAST_START"),
    Flag("LIVECC_TTS_NO_SIDE_STREAM", "switch", False, "Run speech on the default CUDA stream.", SPEECH,
         old_name="LIVECC_TTS_SIDE_STREAM"),
    Flag("LIVECC_TTS_NO_CUDA_GRAPH", "switch", False, "ChatTTS' own eager code-token decode.", SPEECH,
         old_name="LIVECC_TTS_CUDA_GRAPH"),
    Flag("LIVECC_SERVER_TOKEN", "text", None, "The token of `livecc serve`, and the one `livecc narrate --server` "
         "sends (same as --token).", SERVER),
    Flag("LIVECC_DESKTOP_SETTINGS", "path", None, "Keep the app's settings in this INI file.", APP),
    Flag("LIVECC_CLEAN_EXIT", "switch", False, "Let the app run the interpreter's full teardown at exit.", APP),
    Flag("LIVECC_UPDATE_SCREENSHOT", "switch", False, "Tests rewrite the README's screenshots.", DEV),
]}
_OLD_NAMES = {f.old_name: f for f in REGISTRY.values() if f.old_name}
_cache: dict[str, tuple[tuple[str | None, str | None], object]] = {}


def get(name: str):
    """The value of registered switch `name` from the environment, or its default. Parsed once per
    distinct setting (a test may change it); FlagError when the value is bad."""
    flag = REGISTRY[name]
    raw = (os.environ.get(name), os.environ.get(flag.old_name) if flag.old_name else None)
    cached = _cache.get(name)
    if cached is not None and cached[0] == raw:
        return cached[1]
    value = _read(flag, *raw)
    _cache[name] = (raw, value)
    return value


def is_set(name: str) -> bool:
    """Whether registered switch `name` (or its old name) is set to something, as opposed to defaulting."""
    flag = REGISTRY[name]
    return any((os.environ.get(n) or "").strip() for n in (name, flag.old_name) if n)


def _read(flag: Flag, text: str | None, old_text: str | None):
    if text is not None and text.strip():
        return flag.parse(text)
    if old_text is not None and old_text.strip():
        old = not flag.parse(old_text, flag.old_name)  # the old name said "on" where the new says "no"
        LOG.warning("%s is deprecated: use %s=%d", flag.old_name, flag.name, int(old))
        return old
    return flag.default


def check_environment() -> list[str]:
    """Parse every LIVECC_* variable that is set: the first bad value raises FlagError; unknown names
    come back as warning lines (a typo, say), each with the closest registered name."""
    warnings = []
    for name in sorted(n for n in os.environ if n.startswith(PREFIX)):
        if name in REGISTRY:
            get(name)
        elif name in _OLD_NAMES:
            get(_OLD_NAMES[name].name)
        else:
            close = difflib.get_close_matches(name, list(REGISTRY), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            warnings.append(f"{name} is not a LiveCC setting and is ignored{hint}")
    return warnings


def markdown() -> str:
    """docs/configuration.md: every switch by group, with its type, default and meaning."""
    lines = ["# Configuration", "",
             "Every `LIVECC_*` environment variable, generated from `engine/flags.py` "
             "(`python -m engine.flags > docs/configuration.md`; a test checks it is current).",
             "Switches take 1/0 (also true/false, yes/no, on/off). A bad value stops `livecc` with one line "
             "(exit 2) and shows a message in the app; an unknown `LIVECC_*` name gets a warning."]
    for group in dict.fromkeys(f.group for f in REGISTRY.values()):
        lines += ["", f"## {group}", "", "| variable | accepts | default | what it does |", "|---|---|---|---|"]
        for f in (f for f in REGISTRY.values() if f.group == group):
            default = "unset" if f.default is None else ("0" if f.default is False else str(f.default))
            old = f" Replaces `{f.old_name}` (the old name still works, inverted, with a warning)." if f.old_name else ""
            accepts = {"switch": "1 / 0", "text": "text", "path": "a path"}.get(f.kind) or f.accepts()
            lines.append(f"| `{f.name}` | {accepts} | `{default}` | {f.doc}{old} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
