"""Loads the model in the background; the window stays usable and shows progress."""

from __future__ import annotations

import os

from PySide6.QtCore import QObject, Signal, Slot

from desktop_app.workers import BackgroundTask


def load_here(name: str, report, quantize: str = "auto"):
    from engine import load_model  # torch and transformers load here, off the GUI thread
    from engine.model import QuantRequest

    loaded = load_model(name, progress=report, quantize=QuantRequest(quantize))
    if loaded.device.type == "cpu":
        share_cpu_with_the_gui()
    return loaded


def share_cpu_with_the_gui() -> None:
    """On the CPU, leave one core to the GUI and capture threads: torch's OpenMP pool spinning on
    every core starves them, and slows the engine itself on small machines."""
    import torch

    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() >= cores:
        torch.set_num_threads(cores - 1)


class ModelLoader(QObject):
    """One load at a time; asking for another model while loading loads it next and drops the
    older result (weights cannot be interrupted mid-load)."""

    progress = Signal(str, object)  # message, fraction done or None
    loaded = Signal(object)  # LoadedModel
    failed = Signal(object)  # the exception (ModelLoadError, DeviceError, ...)

    def __init__(self, parent: QObject | None = None, load_fn=load_here, discard=lambda result: None):
        super().__init__(parent)
        self._load_fn = load_fn
        self._discard = discard  # what becomes of a result a newer request superseded (a server's connection closes)
        self._task: BackgroundTask | None = None
        self._last: BackgroundTask | None = None  # finished; its thread may still be returning
        self._next: str | None = None
        self.name: str | None = None  # what is loading (or was loaded last)
        self.quantize = "auto"  # the Settings choice, applied at the next load

    @property
    def busy(self) -> bool:
        return self._task is not None

    def load(self, name: str) -> None:
        if self._task is not None:
            self._next = name
            return
        self.name = name
        quantize = self.quantize
        load = (lambda report: self._load_fn(name, report, quantize)) if quantize != "auto" else \
            (lambda report: self._load_fn(name, report))  # keeps two-argument load functions working
        self._task = BackgroundTask(load, name="livecc-model-load", parent=self)
        self._task.progress.connect(self._on_progress)
        self._task.succeeded.connect(self._on_succeeded)
        self._task.failed.connect(self._on_failed)
        self._task.start()

    def join(self, timeout_s: float) -> bool:
        """Wait for the load in progress, or for the thread of the last one to end."""
        task = self._task or self._last
        return task is None or task.join(timeout_s)

    @Slot(str, object)
    def _on_progress(self, message: str, fraction) -> None:
        if self._next is None:
            self.progress.emit(message, fraction)

    @Slot(object)
    def _on_succeeded(self, loaded) -> None:
        if self._finish():
            self._discard(loaded)
        else:
            self.loaded.emit(loaded)

    @Slot(object)
    def _on_failed(self, exc) -> None:
        if not self._finish():
            self.failed.emit(exc)

    def _finish(self) -> bool:
        """Clear the finished task; True when a newer request superseded it (and is now loading)."""
        self._last, self._task = self._task, None
        if self._next is None:
            return False
        name, self._next = self._next, None
        self.load(name)
        return True
