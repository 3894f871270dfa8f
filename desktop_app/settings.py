"""User settings: a typed dataclass, read from and written to QSettings."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from PySide6.QtCore import QSettings

from engine.defaults import (COMMENT_TOKENS, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, DEFAULT_MODEL, PRECISIONS,
                             REPETITION_PENALTY)
from engine.defaults import DEFAULT_QUERY as DEFAULT_INSTRUCTION

LOCAL, SERVER = "local", "server"  # Settings > Engine: the model runs on this computer, or on a `livecc serve`


@dataclass
class AppSettings:
    model: str = DEFAULT_MODEL
    max_pixels: int = DEFAULT_MAX_PIXELS
    repetition_penalty: float = REPETITION_PENALTY
    max_new_tokens: int = COMMENT_TOKENS
    instruction: str = DEFAULT_INSTRUCTION
    speech_enabled: bool = False
    memory: bool = True  # visual memory (engine/session/memory.py)
    voice: str = ""
    audio_device: str = ""  # "" = the system default output
    screen_region: str = ""  # "left,top,width,height" or "" for the whole monitor
    quantize: str = "auto"  # weight precision: auto picks what fits the GPU (engine/model/quantize.py)
    engine: str = LOCAL
    server_url: str = ""  # ws://host:port of a `livecc serve`, used when engine is SERVER
    server_token: str = ""

    def __post_init__(self):
        if self.max_pixels < DEFAULT_MIN_PIXELS:
            raise ValueError(f"max_pixels must be at least {DEFAULT_MIN_PIXELS} (100*28*28)")
        if not 1.0 <= self.repetition_penalty <= 2.0:
            raise ValueError("repetition_penalty must be between 1.0 and 2.0")
        if not 1 <= self.max_new_tokens <= 256:
            raise ValueError("max_new_tokens must be between 1 and 256")
        if self.quantize not in PRECISIONS:
            raise ValueError(f"quantize must be one of {', '.join(PRECISIONS)}")
        if self.engine not in (LOCAL, SERVER):
            raise ValueError(f"engine must be {LOCAL} or {SERVER}")

    @classmethod
    def load(cls, store: QSettings) -> "AppSettings":
        """Read every field, falling back to its default when missing or unreadable. The window
        loads its settings before anything writes the store: its file is made private here."""
        make_private(store)
        defaults = cls()
        values = {}
        for f in fields(cls):
            default = getattr(defaults, f.name)
            raw = store.value(f"engine/{f.name}", default)
            values[f.name] = _coerce(raw, default)
        try:
            return cls(**values)
        except ValueError:  # a hand-edited or old settings file: start from the defaults
            return defaults

    def save(self, store: QSettings) -> None:
        make_private(store)
        for f in fields(self):
            store.setValue(f"engine/{f.name}", getattr(self, f.name))
        store.sync()

    def region(self) -> tuple[int, int, int, int] | None:
        """The screen region last chosen; None for the whole monitor, or a hand-edited value that is none."""
        try:
            return parse_region(self.screen_region)
        except ValueError:
            return None


PRIVATE_FILE = 0o600  # the settings list recent video paths: as private as the session files
log = logging.getLogger(__name__)


def make_private(store: QSettings) -> None:
    """The store's file, 0600 from now on: Qt rewrites it through a temporary file that keeps the
    mode of the file it replaces, so creating it 0600 (or setting that once) is enough."""
    ini = store.format() == QSettings.IniFormat or (sys.platform.startswith("linux") and
                                                   store.format() == QSettings.NativeFormat)
    if os.name != "posix" or not ini:
        return  # macOS' native store is CFPreferences' plist, Windows' the registry: not ours to create
    path = Path(store.fileName())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    except FileExistsError:
        _chmod(path)
    except OSError as exc:  # a read-only home: Qt will say so when it writes; the window still opens
        log.warning("cannot create %s (%s)", path, exc.strerror or exc)


def _chmod(path: Path) -> None:
    try:
        path.chmod(PRIVATE_FILE)
    except OSError as exc:  # someone else's file (a shared --settings): theirs to keep
        log.warning("cannot make %s private (%s)", path, exc.strerror or exc)


def parse_region(text: str) -> tuple[int, int, int, int] | None:
    """"left,top,width,height" -> a tuple; "" -> None; anything else raises ValueError."""
    if not text.strip():
        return None
    parts = [int(p) for p in text.replace(" ", "").split(",")]
    if len(parts) != 4 or parts[2] <= 0 or parts[3] <= 0:
        raise ValueError("A region is left,top,width,height with a positive width and height")
    return tuple(parts)  # type: ignore[return-value]


def _coerce(raw, default):
    """QSettings' INI and native backends return strings for everything: restore the type."""
    try:
        if isinstance(default, bool):
            return raw if isinstance(raw, bool) else str(raw).lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        return str(raw)
    except (TypeError, ValueError):
        return default
