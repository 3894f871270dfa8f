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
