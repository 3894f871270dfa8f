"""Errors a user can cause. Each carries a one-line message that names the fix.

The CLI prints `str(error)` and exits 2; the desktop app shows it in the window.
Anything that is not a `LiveCCError` is a bug and keeps its traceback.
"""


class LiveCCError(Exception):
    """Base for user-facing errors: the message is complete and fit to show as is."""


class ModelLoadError(LiveCCError):
    """The model could not be found, downloaded, or recognised as Qwen2-VL."""


class DeviceError(LiveCCError):
    """A compute device was requested that this machine does not have (e.g. CUDA)."""


class OutOfMemoryError(LiveCCError):
    """The GPU ran out of memory."""


class SourceError(LiveCCError):
    """A video source failed: base of every source error."""


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
