"""Qt adapters that run plain Python work off the GUI thread and report through signals.

`GeneratorThread` (superqt's GeneratorWorker idea): a QThread iterates a plain generator and
turns each `yield` into a `yielded` signal; an exception becomes `errored`. It is stoppable by
the generator's own means (the engine's `stop()`), so it can be joined with a timeout.

`BackgroundTask`: one blocking call (model loading, device enumeration) on a daemon thread.
Loading weights cannot be interrupted, so it must not keep the app from quitting.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Callable, Iterator

from PySide6.QtCore import QObject, QThread, Signal

from engine import LiveCCError, OutOfMemoryError

log = logging.getLogger(__name__)


class GeneratorThread(QThread):
    """Runs `generator_fn()` on its own thread; signals are queued to the receivers' thread."""

    yielded = Signal(object)
    errored = Signal(object)  # the exception instance

    def __init__(self, generator_fn: Callable[[], Iterator[Any]], name: str, parent: QObject | None = None):
        super().__init__(parent)
        self._generator_fn = generator_fn
        self.setObjectName(name)

    def run(self) -> None:  # runs on the new thread
        try:
            for item in self._generator_fn():
                self.yielded.emit(item)
        except Exception as exc:  # every failure reaches the GUI as a message, none is swallowed
            if not isinstance(exc, LiveCCError):
                log.exception("%s failed", self.objectName())
            self.errored.emit(exc)

    def join(self, timeout_s: float) -> bool:
        """Wait for the thread to end; True when it has (or never started)."""
        return self.wait(int(timeout_s * 1000))


class BackgroundTask(QObject):
    """Calls `fn(report)` on a daemon thread; `report(message, fraction_or_None)` emits `progress`."""

    progress = Signal(str, object)
    succeeded = Signal(object)
    failed = Signal(object)

    def __init__(self, fn: Callable[[Callable[[str, float | None], None]], Any], name: str,
                 parent: QObject | None = None):
        super().__init__(parent)
        self._fn = fn
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            result = self._fn(self._report)
        except Exception as exc:
            if not isinstance(exc, LiveCCError):
                log.exception("%s failed", self._thread.name)
            self._emit(self.failed, exc)
        else:
            self._emit(self.succeeded, result)

    def _report(self, message: str, fraction: float | None = None) -> None:
        self._emit(self.progress, message, fraction)

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the receiver (window) is gone: the app is quitting
            pass


RUN_ADVICE = "The transcript so far is kept; press Start to try again."


def user_message(exc: BaseException, advice: str = RUN_ADVICE) -> str:
    """One line for the window: the engine's own message for user errors, a plain summary else
    (followed by `advice`: what to do next, which depends on what failed)."""
    if isinstance(exc, LiveCCError):
        from desktop_app.remote_run import SERVER_FIXES  # the server's errors name the app's fix

        return exc.worded(SERVER_FIXES)
    if _is_out_of_memory(exc):
        return str(OutOfMemoryError(
            "The GPU ran out of memory: lower 'Max pixels' in Settings or close other GPU programs, then Start again."))
    return f"Engine error ({type(exc).__name__}: {exc}). {advice}".strip()


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # never import torch on the GUI thread just to check
    return torch is not None and isinstance(exc, torch.OutOfMemoryError)
