"""Player controls for a video file: pause/resume, a seek bar, position and duration.

The controller drives the run's FileSource (pause holds capture, the engine waits for frames,
video time stays the file's own) and the session (a seek starts a new conversation there).
Live sources (camera, screen) have no position: the controls are disabled for them.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QStyle, QStyleOptionSlider, QToolButton, QWidget

from desktop_app.transcript import clock

POLL_MS = 200  # the position label and slider follow the frame on screen at 5 Hz
STEP_S = 5.0  # the arrow keys jump this far, as in most players


NO_TIME = "–:––"  # a live source has no position or duration


class SeekSlider(QSlider):
    """A press jumps the handle to where it was pressed, a drag moves it, and only the release asks for a
    seek (`released_at`): one new conversation per gesture, never one per page step."""

    released_at = Signal(int)

    def mousePressEvent(self, event) -> None:
        if event.button() != Qt.LeftButton or not self.isEnabled():
            return super().mousePressEvent(event)
        self.setSliderDown(True)
        self.setSliderPosition(self.value_at(event.position().x()))
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        if self.isSliderDown():
            self.setSliderPosition(self.value_at(event.position().x()))
        event.accept()

    def mouseReleaseEvent(self, event) -> None:
        if not self.isSliderDown():
            return super().mouseReleaseEvent(event)
        self.setSliderPosition(self.value_at(event.position().x()))
        self.setSliderDown(False)
        self.released_at.emit(self.sliderPosition())
        event.accept()

    def value_at(self, x: float) -> int:
        """The value under pixel `x`, the handle's centre there."""
        option = QStyleOptionSlider()
        self.initStyleOption(option)
        style = self.style()
        groove = style.subControlRect(QStyle.CC_Slider, option, QStyle.SC_SliderGroove, self)
        handle = style.subControlRect(QStyle.CC_Slider, option, QStyle.SC_SliderHandle, self)
        span = max(1, groove.width() - handle.width())
        offset = int(x - groove.x() - handle.width() / 2)
        return QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), min(max(offset, 0), span), span)


class PlaybackBar(QWidget):
    """The widgets: pause button, position, seek slider, duration."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.pause_button = QToolButton()
        self.pause_button.setAutoRaise(True)
        self.pause_button.setFocusPolicy(Qt.NoFocus)
        self.position = QLabel("0:00")
        self.duration = QLabel("0:00")
        for label in (self.position, self.duration):
            label.setFixedWidth(label.fontMetrics().horizontalAdvance("0:00:00") + 8)  # no jumping
            label.setAlignment(Qt.AlignCenter)
        self.slider = SeekSlider(Qt.Horizontal)
        self.slider.setFocusPolicy(Qt.NoFocus)
        self.slider.setToolTip("Seek: a new conversation starts at the chosen time")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.pause_button)
        layout.addWidget(self.position)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.duration)


class PlaybackController(QObject):
    """Wires a PlaybackBar to the run in progress (`attach`/`detach`) and the frame on screen."""

    seeked = Signal(float)  # the user chose a new position (seconds)

    def __init__(self, bar: PlaybackBar, frame_time, parent: QObject | None = None, pause=None):
        super().__init__(parent)
        self.bar = bar
        self._frame_time = frame_time  # () -> video time of the frame on screen
        # (paused) -> None: the app's controller, which keeps its state; else the run directly
        self._pause = pause or (lambda paused: self.run.pause() if paused else self.run.resume())
        self.run = None
        self.pause_action = QAction("&Pause", self)
        self.pause_action.setShortcut(QKeySequence("Ctrl+P"))
        self.pause_action.setCheckable(True)
        self.pause_action.toggled.connect(self.set_paused)
        self.back_action = QAction(f"Back {STEP_S:.0f} s", self, shortcut=QKeySequence("Ctrl+Left"))
        self.back_action.triggered.connect(lambda: self.step(-STEP_S))
        self.forward_action = QAction(f"Forward {STEP_S:.0f} s", self, shortcut=QKeySequence("Ctrl+Right"))
        self.forward_action.triggered.connect(lambda: self.step(STEP_S))
        bar.pause_button.setDefaultAction(self.pause_action)
        bar.slider.released_at.connect(lambda value: self.seek(float(value)))
        bar.slider.sliderMoved.connect(lambda value: bar.position.setText(clock(value)))  # follows the drag
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._timer.start()
        self.detach()

    @property
    def seekable(self) -> bool:
        return self.run is not None and self.run.seekable

    @property
    def duration(self) -> float:
        return self.run.duration if self.seekable else 0.0

    def attach(self, run) -> None:
        self.run = run
        self._show_paused(False)
        self._enable(run.seekable)
        self._show_times(0.0 if run.seekable else None)  # nothing of the previous file stays

    def detach(self) -> None:
        self.run = None
        self._show_paused(False)
        self._enable(False)

    def _show_times(self, start: float | None) -> None:
        """0:00 for a new file (its duration follows once it is open); dashes for a live source."""
        self.bar.slider.setRange(0, 0)
        self.bar.position.setText(NO_TIME if start is None else clock(start))
        self.bar.duration.setText(NO_TIME if start is None else clock(0.0))

    def _enable(self, on: bool) -> None:
        for action in (self.pause_action, self.back_action, self.forward_action):
            action.setEnabled(on)
        self.bar.slider.setEnabled(on)

    def set_paused(self, paused: bool) -> None:
        if not self.seekable:
            return
        self._pause(paused)
        self._show_paused(paused)

    def _show_paused(self, paused: bool) -> None:
        self.pause_action.blockSignals(True)
        self.pause_action.setChecked(paused)
        self.pause_action.blockSignals(False)
        self.pause_action.setText("&Resume" if paused else "&Pause")
        icon = QStyle.SP_MediaPlay if paused else QStyle.SP_MediaPause
        self.pause_action.setIcon(self.bar.style().standardIcon(icon))
        self.pause_action.setToolTip("Resume (Ctrl+P)" if paused else "Pause: capture and commentary wait (Ctrl+P)")

    def seek(self, seconds: float) -> None:
        if not self.seekable:
            return
        end = self.duration
        seconds = max(0.0, min(seconds, end - 1.0) if end else seconds)
        self.run.seek(seconds)
        self.bar.slider.setValue(int(seconds))
        self.seeked.emit(seconds)

    def step(self, delta: float) -> None:
        self.seek(self._frame_time() + delta)

    def _poll(self) -> None:
        if not self.seekable:
            return
        end = self.duration
        self.bar.duration.setText(clock(end))
        self.bar.slider.setMaximum(max(0, int(end)))
        if not self.bar.slider.isSliderDown():
            now = self._frame_time()
            self.bar.position.setText(clock(now))
            self.bar.slider.setValue(int(now))
