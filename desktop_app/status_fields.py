"""The status bar's fields: each has a fixed width (numbers that change every second, or a
temporary message, never make the others jump), and when the window is too narrow the least
important fields hide, whole, instead of running into each other. Only the permanent fields
(model, speech) stay while a temporary message shows: the others make room for it, so a message
is read in full."""

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
    permanent: bool = False  # stays while a temporary message shows
    wanted: bool = True  # False: nothing to show (the voice lag while speech is off)


class StatusFields(QObject):
    """`add()` a field; `self[key]` is its QLabel (set its text as usual). A new field is one
    `add(key, initial text, widest text it will show, tooltip, priority)` call."""

    def __init__(self, bar: QStatusBar):
        super().__init__(bar)
        self.bar = bar
        self.fields: dict[str, Field] = {}
        bar.installEventFilter(self)
        bar.messageChanged.connect(self._fit)  # after the bar has hidden or shown its other fields

    def add(self, key: str, text: str, widest: str, tip: str, priority: int = 1, permanent: bool = False) -> QLabel:
        """A field as wide as `widest` would be; longer text is elided, the tooltip has all of it."""
        label = ElidingLabel(text)
        label.setToolTip(tip)
        label.setContentsMargins(6, 0, 6, 0)
        width = label.fontMetrics().horizontalAdvance(widest or text) + PADDING
        label.setFixedWidth(width)
        self.bar.addPermanentWidget(label) if permanent else self.bar.addWidget(label)
        self.fields[key] = Field(label, priority, width, permanent)
        self._fit()
        return label

    def want(self, key: str, wanted: bool) -> None:
        if self.fields[key].wanted != wanted:
            self.fields[key].wanted = wanted
            self._fit()

    def __getitem__(self, key: str) -> QLabel:
        return self.fields[key].label

    def eventFilter(self, watched, event) -> bool:
        if watched is self.bar and event.type() == QEvent.Resize:
            self._fit()
        return False

    def _fit(self, *_) -> None:
        room = self.bar.width() - 40  # the size grip and the spacing between fields
        message = bool(self.bar.currentMessage())
        for f in sorted(self.fields.values(), key=lambda f: -f.priority):
            fits = f.wanted and f.width <= room
            room -= f.width if fits else 0
            f.label.setVisible(fits and (f.permanent or not message))


class ElidingLabel(QLabel):
    """Shows as much of its text as fits, ending in '…' (the full text stays in `text()`)."""

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(self.text(), Qt.ElideRight, rect.width())
        painter.drawText(rect, int(Qt.AlignLeft | Qt.AlignVCenter), shown)

