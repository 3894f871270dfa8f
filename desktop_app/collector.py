"""Python's cyclic garbage collected on the GUI thread only.

CPython collects on whichever thread allocates past the threshold: in this app the engine, the model
loader (transformers' loader threads too) or speech. A reference cycle that holds a Qt object (a
closed window, a dialog, a slot's closure) is then destroyed on that thread, which Qt does not allow
and which can crash the process inside the collection. So the app turns automatic collection off
and a timer on the GUI thread collects each generation when CPython would have (its counts past
their thresholds), a few times a second. Objects without cycles are still freed at once by their
reference counts, on any thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

TICK_MS = 200


class GuiThreadCollector(QObject):
    """Owns automatic garbage collection while installed (on the GUI thread: its parent's thread)."""

    def __init__(self, parent: QObject, tick_ms: int = TICK_MS):
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.tick)
        self._timer.start(tick_ms)
        gc.disable()

    def tick(self) -> int | None:
        """Collect the oldest generation whose count is past its threshold, as CPython would; the
        generation collected, or None."""
        counts, thresholds = gc.get_count(), gc.get_threshold()
        for generation in (2, 1, 0):
            if thresholds[generation] and counts[generation] > thresholds[generation]:
                gc.collect(generation)
                return generation
        return None

    def uninstall(self) -> None:
        """Automatic collection back as it was (the app is closing)."""
        self._timer.stop()
        if self._was_enabled:
            gc.enable()


def collect_on_gui_thread(app) -> GuiThreadCollector:
    """Install the collector on the application (a QCoreApplication) until it quits."""
    collector = GuiThreadCollector(app)
    app.aboutToQuit.connect(collector.uninstall)
    return collector
