"""Help: About (version, model, precision, licences)."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenuBar, QMessageBox, QWidget

from desktop_app.about import about_text


class HelpMenu(QObject):
    """`model()` -> (the model name in force, the LoadedModel or None)."""

    def __init__(self, window: QWidget, bar: QMenuBar, model: Callable[[], tuple]):
        super().__init__(window)
        self.window, self._model = window, model
        self.about_box: QMessageBox | None = None
        self.about_action = QAction("&About LiveCC Desktop", self)
        self.about_action.triggered.connect(self.about)
        self.menu = bar.addMenu("&Help")
        self.menu.addAction(self.about_action)

    def about(self) -> None:
        if self.about_box is None:  # one box, reused: each click must not leave another behind
            self.about_box = QMessageBox(QMessageBox.Information, "About LiveCC Desktop", "", QMessageBox.Ok,
                                         self.window)
            self.about_box.setTextFormat(Qt.RichText)
            self.about_box.setWindowModality(Qt.NonModal)
        self.about_box.setText(about_text(*self._model()))  # the model may have changed
        self.about_box.show()
        self.about_box.raise_()
