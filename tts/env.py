"""The speech package's environment switches (the latency levers' off switches), read when a
default is built, never at import. A bad value raises EnvSettingError (a ValueError) naming the
variable and what it accepts, so the CLI and the app can show it in one line."""

from __future__ import annotations

import os


class EnvSettingError(ValueError):
    """A LIVECC_* speech switch holds a value it does not accept."""


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (os.environ.get(name, "").strip() or default).lower()  # empty: unset
    if value not in choices:
        raise EnvSettingError(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def env_int(name: str, default: int, minimum: int) -> int:
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise EnvSettingError(f"{name}={text!r} is not a whole number >= {minimum}")
    return value


def env_float(name: str, default: float, minimum: float, maximum: float) -> float:
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:  # NaN fails too
        raise EnvSettingError(f"{name}={text!r} is not a number from {minimum:g} to {maximum:g}")
    return value


def env_flag(name: str, default: bool) -> bool:
    """1 on, 0 off (unset or empty: the default)."""
    return env_choice(name, "1" if default else "0", ("0", "1")) == "1"
