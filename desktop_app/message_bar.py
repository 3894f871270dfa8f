"""An inline message strip above the video (errors, notices) with optional action buttons:
errors never block the window with a modal box, and the app stays usable."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

STYLES = {
    "error": "background: #5a1f24; border: 1px solid #a8434c; color: #ffe9ea;",
    "warning": "background: #54431a; border: 1px solid #a88a34; color: #fff4d6;",
    "info": "background: #1d3a57; border: 1px solid #3f73a8; color: #e6f1ff;",
}


class MessageBar(QFrame):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("MessageBar")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        self._layout = QHBoxLayout(self)
        self._layout.setContentsMargins(10, 6, 6, 6)
        self._layout.addWidget(self.label, 1)
        self._buttons: list[QPushButton] = []
        self._close = close
        self._layout.addWidget(close)
        self.level = ""
        self.hide()

    def show_message(self, text: str, level: str = "error",
                     actions: list[tuple[str, Callable[[], None]]] | None = None) -> None:
        for button in self._buttons:
            self._layout.removeWidget(button)
            button.deleteLater()
        self._buttons = []
        for title, callback in actions or []:
            button = QPushButton(title)
            button.clicked.connect(callback)
            self._layout.insertWidget(self._layout.count() - 1, button)
            self._buttons.append(button)
        self.level = level
        self.setStyleSheet(f"#MessageBar {{ {STYLES[level]} border-radius: 4px; }} "
                           f"#MessageBar QLabel {{ border: none; background: transparent; }}")
        self.label.setText(text)
        self.show()

    @property
    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def action_titles(self) -> list[str]:
        return [b.text() for b in self._buttons]
