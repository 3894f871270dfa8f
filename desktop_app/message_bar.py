"""Inline messages above the video (errors, warnings, notices), stacked by severity, each with
dismiss, optional action buttons and optional details: errors never block the window with a
modal box, and a warning never hides an error."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

STYLES = {
    "error": "background: #5a1f24; border: 1px solid #a8434c; color: #ffe9ea;",
    "warning": "background: #54431a; border: 1px solid #a88a34; color: #fff4d6;",
    "info": "background: #1d3a57; border: 1px solid #3f73a8; color: #e6f1ff;",
}
SEVERITY = {"error": 0, "warning": 1, "info": 2}  # top of the stack first
MAX_MESSAGES = 4  # the oldest of the least severe goes first when more arrive

Action = tuple[str, Callable[[], None]]


@dataclass
class Message:
    text: str
    level: str = "error"
    key: str = ""  # a new message with the same key replaces the old one ("model", "speech", "run")
    details: str = ""
    actions: list[Action] = field(default_factory=list)


class MessageRow(QFrame):
    """One message: its text, its actions, Details (when there are any) and a dismiss button."""

    def __init__(self, message: Message, on_dismiss: Callable[["MessageRow"], None]):
        super().__init__()
        self.message = message
        self.setObjectName("MessageRow")
        self.setStyleSheet(f"#MessageRow {{ {STYLES[message.level]} border-radius: 4px; }} "
                           f"#MessageRow QLabel {{ border: none; background: transparent; }}")
        self.label = _wrapping_label(message.text)
        self.details = _wrapping_label(message.details)
        self.details.setStyleSheet("font-size: 11px;")
        self.details.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        self.buttons = [self._button(title, callback, row) for title, callback in message.actions]
        if message.details:
            self.details_button = self._button("Details", self.toggle_details, row)
            self.details_button.setCheckable(True)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(lambda: on_dismiss(self))
        row.addWidget(close)
        self.close_button = close
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 6, 6, 6)
        outer.addLayout(row)
        outer.addWidget(self.details)

    @staticmethod
    def _button(title: str, callback, row: QHBoxLayout) -> QPushButton:
        button = QPushButton(title)
        button.clicked.connect(callback)
        row.addWidget(button)
        return button

    def toggle_details(self) -> None:
        self.details.setVisible(not self.details.isVisible())


def _wrapping_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label


class MessageBar(QWidget):
    """The stack. `text` is everything shown (tests, accessibility); `level` the most severe."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self.rows: list[MessageRow] = []
        self.hide()

    def show_message(self, text: str, level: str = "error", actions: list[Action] | None = None,
                     key: str = "", details: str = "") -> None:
        if key:
            self.dismiss(key)
        self.rows.append(MessageRow(Message(text, level, key, details, list(actions or [])), self._remove))
        self.rows.sort(key=lambda r: SEVERITY[r.message.level])  # stable: newest last within a level
        while len(self.rows) > MAX_MESSAGES:  # the oldest row of the least severe level goes
            least = self.rows[-1].message.level
            self._remove(next(r for r in self.rows if r.message.level == least))
        for row in self.rows:
            self._layout.addWidget(row)  # re-adding moves it: the layout follows the sorted order
            row.show()  # at once, not at the next event loop turn (a screenshot may come first)
        self.setVisible(bool(self.rows))

    def dismiss(self, key: str) -> None:
        """Remove the messages with this key (a model that loaded clears its load error)."""
        for row in [r for r in self.rows if r.message.key == key]:
            self._remove(row)

    def clear(self) -> None:
        for row in list(self.rows):
            self._remove(row)

    def _remove(self, row: MessageRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
            self._layout.removeWidget(row)
            row.deleteLater()
        self.setVisible(bool(self.rows))

    @property
    def text(self) -> str:
        return "\n".join(r.message.text for r in self.rows) if self.isVisible() else ""

    @property
    def level(self) -> str:
        return self.rows[0].message.level if self.rows else ""

    def messages(self) -> list[Message]:
        return [r.message for r in self.rows]

    def action_titles(self) -> list[str]:
        return [b.text() for r in self.rows for b in r.buttons]
