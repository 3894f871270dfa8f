"""Errors a user can cause. Each carries what went wrong (`problem`), a `code` naming the kind of
problem, and a `fix` in neutral or CLI words. `str(error)` is the one line the CLI prints before
exiting 2; the desktop app words the fix its own way from the code (desktop_app/workers.py).
Anything that is not a `LiveCCError` is a bug and keeps its traceback.
"""

from __future__ import annotations


class LiveCCError(Exception):
    """Base for user-facing errors: `problem` and `fix` make a complete line, fit to show as is."""

    code = "error"

    def __init__(self, problem: str = "", fix: str = "", code: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.problem}; {self.fix}" if self.fix else self.problem

    def worded(self, fixes: dict[str, str]) -> str:
        """The line with a front end's own fix for this error's code, where it has one."""
        fix = fixes.get(self.code, self.fix)
        return f"{self.problem}; {fix}" if fix else self.problem


class ModelLoadError(LiveCCError):
    """The model could not be found, downloaded, or recognised as Qwen2-VL."""

    code = "model"


class DeviceError(LiveCCError):
    """A compute device was requested that this machine does not have (e.g. CUDA)."""

    code = "device"


class OutOfMemoryError(LiveCCError):
    """The GPU ran out of memory."""

    code = "out-of-memory"


class SourceError(LiveCCError):
    """A video source failed: base of every source error."""

    code = "source"


class SourceOpenError(SourceError):
    """The source could not be opened (missing/corrupt file, no camera, no display)."""


class SourceReadError(SourceError):
    """The source stopped delivering frames after it had opened (unplugged camera, bad file tail)."""


class ConfigValueError(ValueError):
    """A config field out of its range. The message uses the engine's field name; a front end that
    calls it something else (the CLI's --video-window for `video_window_s`) words it from the parts."""

    def __init__(self, field: str, value: object, rule: str):
        self.field, self.value, self.rule = field, value, rule
        super().__init__(f"{field} {show_value(value)} {rule}")


def show_value(value: object) -> str:
    """A number as a user would have typed it (1e-300, 0.5, 16), anything else as is."""
    return f"{value:g}" if isinstance(value, float) else str(value)
