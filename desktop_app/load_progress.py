"""The model load's progress: a non-modal dialog (the window stays usable) that Hide dismisses
for the rest of the load."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QProgressDialog, QWidget


class LoadProgress:
    def __init__(self, parent: QWidget):
        self.parent = parent
        self.dialog: QProgressDialog | None = None

    def show(self, text: str, fraction: float | None = None) -> None:
        if self.dialog is None:
            self.dialog = QProgressDialog(self.parent)
            self.dialog.setWindowTitle("Loading model")
            self.dialog.setWindowModality(Qt.NonModal)
            self.dialog.setCancelButtonText("Hide")
            self.dialog.setMinimumDuration(300)
            self.dialog.setAutoClose(False)
            self.dialog.setAutoReset(False)
            self.dialog.setMinimumWidth(420)
        self.dialog.setLabelText(text)
        if fraction is None:
            self.dialog.setRange(0, 0)
        else:
            self.dialog.setRange(0, 100)
            self.dialog.setValue(int(fraction * 100))

    def update(self, text: str, fraction: float | None) -> None:
        """Progress from the loader: shown unless the user hid the dialog."""
        if self.dialog is not None and not self.dialog.wasCanceled():
            self.show(text, fraction)

    def close(self) -> None:
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
