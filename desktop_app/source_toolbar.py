"""The toolbar: what to watch (the source picker), Start/Stop, then the file and speech actions."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QPushButton, QSizePolicy, QToolBar, QWidget

from desktop_app.source_picker import SourcePicker


class SourceToolbar(QToolBar):
    def __init__(self, actions: list[QAction], parent: QWidget | None = None):
        super().__init__("Source", parent)
        self.setMovable(False)
        self.setObjectName("SourceToolbar")
        self.addWidget(QLabel(" Source "))
        self.picker = SourcePicker()
        self.addWidget(self.picker)
        self.start_button = QPushButton("Start")
        self.start_button.setMinimumWidth(96)
        self.start_button.setToolTip("Start or stop watching (Space)")
        self.start_button.setFocusPolicy(Qt.NoFocus)  # a disabled button must not hand focus to a text field
        self.addWidget(self.start_button)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.addWidget(spacer)
        for action in actions:
            self.addAction(action)
