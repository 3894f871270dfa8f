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


def _env_number(name: str, default, parse, fits, accepts: str):
    """The variable parsed by `parse`, or EnvSettingError saying it `accepts` when unparsable or not `fits`."""
    text = os.environ.get(name, "").strip() or str(default)
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not fits(value):  # NaN fails `fits` too
        raise EnvSettingError(f"{name}={text!r} is not {accepts}")
    return value


def env_int(name: str, default: int, minimum: int) -> int:
    return _env_number(name, default, int, lambda v: v >= minimum, f"a whole number >= {minimum}")


def env_float(name: str, default: float, minimum: float, maximum: float) -> float:
    return _env_number(name, default, float, lambda v: minimum <= v <= maximum,
                       f"a number from {minimum:g} to {maximum:g}")


def env_flag(name: str, default: bool) -> bool:
    """1 on, 0 off (unset or empty: the default)."""
    return env_choice(name, "1" if default else "0", ("0", "1")) == "1"
