"""The status bar's permanent fields: each has a fixed width (numbers that change every second,
or a temporary message, never make the others jump), and when the window is too narrow the
least important fields hide, whole, instead of running into each other."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel, QStatusBar

PADDING = 14  # the label's margins plus a little air


@dataclass
class Field:
    label: QLabel
    priority: int  # lower hides first when the bar is narrow
    width: int


class StatusFields(QObject):
    """`add()` a field; `self[key]` is its QLabel (set its text as usual). A new field is one
    `add(key, initial text, widest text it will show, tooltip, priority)` call."""

    def __init__(self, bar: QStatusBar):
        super().__init__(bar)
        self.bar = bar
        self.fields: dict[str, Field] = {}
        bar.installEventFilter(self)

    def add(self, key: str, text: str, widest: str, tip: str, priority: int = 1) -> QLabel:
        """A field as wide as `widest` would be; longer text is elided, the tooltip has all of it."""
        label = ElidingLabel(text)
        label.setToolTip(tip)
        label.setContentsMargins(6, 0, 6, 0)
        width = label.fontMetrics().horizontalAdvance(widest or text) + PADDING
        label.setFixedWidth(width)
        self.bar.addPermanentWidget(label)
        self.fields[key] = Field(label, priority, width)
        self._fit()
        return label

    def __getitem__(self, key: str) -> QLabel:
        return self.fields[key].label

    def eventFilter(self, watched, event) -> bool:
        if watched is self.bar and event.type() == QEvent.Resize:
            self._fit()
        return False

    def _fit(self) -> None:
        room = self.bar.width() - 40  # the size grip and some room for temporary messages
        for f in sorted(self.fields.values(), key=lambda f: -f.priority):
            f.label.setVisible(f.width <= room)
            room -= f.width if f.width <= room else 0


class ElidingLabel(QLabel):
    """Shows as much of its text as fits, ending in '…' (the full text stays in `text()`)."""

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), Qt.ElideRight, rect.width())
        painter.drawText(rect, int(Qt.AlignLeft | Qt.AlignVCenter), shown)

