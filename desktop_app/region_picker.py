"""Choosing a part of the screen to watch: drag over a screenshot of the monitor (as in OBS), or
type the numbers; "Whole screen" clears the region."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter, QPen
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QGridLayout, QLabel, QPushButton, QSizePolicy, QSpinBox,
                               QVBoxLayout, QWidget)

Region = tuple[int, int, int, int]  # left, top, width, height in monitor pixels
MIN_SIDE = 28  # the model sees multiples of 28 pixels: smaller regions are a slip of the mouse


def grab_monitor(monitor: dict | None) -> QImage | None:
    """A screenshot of the monitor (mss geometry) through Qt; None when there is none to take."""
    screens = QGuiApplication.screens()
    if not screens:
        return None
    screen = next((s for s in screens if monitor and (s.geometry().x(), s.geometry().y()) ==
                   (monitor["left"], monitor["top"])), QGuiApplication.primaryScreen())
    image = screen.grabWindow(0).toImage()
    return None if image.isNull() else image


class RegionCanvas(QWidget):
    """The screenshot, scaled to fit; a drag draws the region, the rest is dimmed."""

    selected = Signal(object)  # Region, in monitor pixels

    def __init__(self, image: QImage | None, size: tuple[int, int], parent: QWidget | None = None):
        super().__init__(parent)
        self.image, self.monitor_size = image, size
        self.region: Region | None = None
        self._anchor: QPointF | None = None
        self._drag: QRectF | None = None
        self.setMinimumSize(480, 270)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setCursor(Qt.CrossCursor)

    def _frame(self) -> QRectF:
        """Where the monitor is drawn: aspect kept, centred."""
        w, h = self.monitor_size
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def to_monitor(self, rect: QRectF) -> Region:
        frame, (w, h) = self._frame(), self.monitor_size
        sx, sy = w / frame.width(), h / frame.height()
        left = round(min(max(rect.left() - frame.left(), 0), frame.width()) * sx)
        top = round(min(max(rect.top() - frame.top(), 0), frame.height()) * sy)
        right = round(min(max(rect.right() - frame.left(), 0), frame.width()) * sx)
        bottom = round(min(max(rect.bottom() - frame.top(), 0), frame.height()) * sy)
        return left, top, right - left, bottom - top

    def to_widget(self, region: Region) -> QRectF:
        frame, (w, h) = self._frame(), self.monitor_size
        sx, sy = frame.width() / w, frame.height() / h
        return QRectF(frame.left() + region[0] * sx, frame.top() + region[1] * sy, region[2] * sx, region[3] * sy)

    def mousePressEvent(self, event) -> None:
        self._anchor = event.position()
        self._drag = QRectF(self._anchor, self._anchor)

    def mouseMoveEvent(self, event) -> None:
        if self._anchor is not None:
            self._drag = QRectF(self._anchor, event.position()).normalized()
            self.update()

    def mouseReleaseEvent(self, event) -> None:
        if self._anchor is None:
            return
        region = self.to_monitor(QRectF(self._anchor, event.position()).normalized())
        self._anchor, self._drag = None, None
        if region[2] >= MIN_SIDE and region[3] >= MIN_SIDE:
            self.region = region
            self.selected.emit(region)
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 24, 28))
        frame = self._frame()
        if self.image is not None:
            p.drawImage(frame, self.image)
        else:
            p.fillRect(frame, QColor(60, 60, 70))
            p.setPen(QColor(200, 200, 210))
            p.drawText(frame, Qt.AlignCenter, "No screenshot: drag to mark the region anyway")
        chosen = self._drag or (self.to_widget(self.region) if self.region else None)
        if chosen is not None:
            dim = QColor(0, 0, 0, 140)
            for part in (QRectF(frame.left(), frame.top(), frame.width(), chosen.top() - frame.top()),
                         QRectF(frame.left(), chosen.bottom(), frame.width(), frame.bottom() - chosen.bottom()),
                         QRectF(frame.left(), chosen.top(), chosen.left() - frame.left(), chosen.height()),
                         QRectF(chosen.right(), chosen.top(), frame.right() - chosen.right(), chosen.height())):
                p.fillRect(part, dim)
            p.setPen(QPen(QColor(255, 190, 60), 2))
            p.drawRect(chosen)
        p.end()


class RegionDialog(QDialog):
    """Drag over the screenshot, or type left, top, width and height in pixels."""

    def __init__(self, region: Region | None, monitor: dict | None, parent: QWidget | None = None,
                 screenshot: QImage | None = None):
        super().__init__(parent)
        self.setWindowTitle("Choose a screen region")
        self.setMinimumWidth(560)
        size = (monitor["width"], monitor["height"]) if monitor else (1920, 1080)
        image = screenshot if screenshot is not None else grab_monitor(monitor)
        self.canvas = RegionCanvas(image, size)
        self.canvas.region = region
        self.canvas.selected.connect(self._show_numbers)
        hint = QLabel("Drag over the screen to choose the part to watch. The model sees only that part.")
        hint.setWordWrap(True)
        numbers = QGridLayout()
        self.spins = {}
        for column, (name, limit) in enumerate((("Left", size[0] - 1), ("Top", size[1] - 1),
                                                ("Width", size[0]), ("Height", size[1]))):
            spin = QSpinBox()
            spin.setRange(0, limit)
            spin.setSuffix(" px")
            spin.valueChanged.connect(self._from_numbers)
            numbers.addWidget(QLabel(name), 0, column)
            numbers.addWidget(spin, 1, column)
            self.spins[name] = spin
        self.summary = QLabel()
        whole = QPushButton("Whole screen")
        whole.setToolTip("Watch the whole monitor")
        whole.clicked.connect(self.choose_whole_screen)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.addButton(whole, QDialogButtonBox.ResetRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addWidget(self.canvas, 1)
        layout.addLayout(numbers)
        layout.addWidget(self.summary)
        layout.addWidget(buttons)
        self._show_numbers(region)

    def _show_numbers(self, region: Region | None) -> None:
        values = region or (0, 0, 0, 0)
        for spin, value in zip(self.spins.values(), values):
            spin.blockSignals(True)
            spin.setValue(value)
            spin.blockSignals(False)
        self._describe()

    def _from_numbers(self) -> None:
        left, top, width, height = (s.value() for s in self.spins.values())
        w, h = self.canvas.monitor_size
        width, height = min(width, w - left), min(height, h - top)  # stays inside the monitor
        self.canvas.region = (left, top, width, height) if width > 0 and height > 0 else None
        self.canvas.update()
        self._describe()

    def _describe(self) -> None:
        region = self.region()
        self.summary.setText("Watching: the whole screen" if region is None else
                             f"Watching: {region[2]} × {region[3]} px at ({region[0]}, {region[1]})")

    def choose_whole_screen(self) -> None:
        self.canvas.region = None
        self._show_numbers(None)
        self.canvas.update()

    def region(self) -> Region | None:
        return self.canvas.region


