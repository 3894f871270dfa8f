"""Viewing: fullscreen video with its captions (F11 or a double-click; Esc leaves), and the
caption style (on/off, size, top or bottom), remembered between runs."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QWidget

from desktop_app.video_view import CaptionStyle, VideoView

SCALES = (0.7, 0.85, 1.0, 1.25, 1.5, 2.0)  # caption size steps


class ViewController(QObject):
    """Owns the View menu's actions. Fullscreen hides every widget but the video (`chrome`)."""

    def __init__(self, window: QMainWindow, view: VideoView, chrome: list[QWidget], store: QSettings):
        super().__init__(window)
        self.window, self.view, self.chrome, self.store = window, view, chrome, store
        self._hidden: list[QWidget] = []
        self._was_maximized = False  # leaving fullscreen returns to the state before it
        view.caption_style = self.load_style()
        self.fullscreen_action = QAction("&Fullscreen", self, checkable=True)
        self.fullscreen_action.setShortcuts([QKeySequence(Qt.Key_F11)])
        self.fullscreen_action.setToolTip("Video and captions fill the screen (F11 or double-click; Esc leaves)")
        self.fullscreen_action.toggled.connect(self.set_fullscreen)
        self.leave_action = QAction("Leave fullscreen", self, shortcut=QKeySequence(Qt.Key_Escape))
        self.leave_action.triggered.connect(lambda: self.fullscreen_action.setChecked(False))
        self.leave_action.setEnabled(False)
        self.captions_action = QAction("Show &captions", self, checkable=True)
        self.captions_action.setChecked(view.caption_style.visible)
        self.captions_action.setShortcut(QKeySequence("C"))
        self.captions_action.toggled.connect(lambda on: self._restyle(visible=on))
        self.top_action = QAction("Captions at the &top", self, checkable=True)
        self.top_action.setChecked(view.caption_style.top)
        self.top_action.toggled.connect(lambda on: self._restyle(top=on))
        self.larger_action = QAction("&Larger captions", self, shortcut=QKeySequence("Ctrl+="))
        self.larger_action.triggered.connect(lambda: self.resize_captions(+1))
        self.smaller_action = QAction("&Smaller captions", self, shortcut=QKeySequence("Ctrl+-"))
        self.smaller_action.triggered.connect(lambda: self.resize_captions(-1))
        view.installEventFilter(self)

    def actions(self) -> list[QAction | None]:
        """In menu order; None is a separator."""
        return [self.fullscreen_action, self.leave_action, None, self.captions_action, self.top_action,
                self.larger_action, self.smaller_action]

    # -- fullscreen ---------------------------------------------------------------------------
    @property
    def fullscreen(self) -> bool:
        return bool(self._hidden) or self.window.isFullScreen()

    def set_fullscreen(self, on: bool) -> None:
        if on == bool(self._hidden):
            return
        if on:
            self._hidden = [w for w in self.chrome if w.isVisible()]
            self._was_maximized = bool(self.window.windowState() & Qt.WindowMaximized)
            for widget in self._hidden:
                widget.hide()
            self.window.showFullScreen()
        else:
            for widget in self._hidden:
                widget.show()
            self._hidden = []
            if self._was_maximized:
                self.window.showMaximized()
            else:
                self.window.showNormal()
        self.leave_action.setEnabled(on)
        self.fullscreen_action.setChecked(on)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.view and event.type() == QEvent.MouseButtonDblClick:
            self.fullscreen_action.toggle()
            return True
        return False

    # -- caption style ------------------------------------------------------------------------
    def load_style(self) -> CaptionStyle:
        default = CaptionStyle()
        try:
            scale = float(self.store.value("view/caption_scale", default.scale))
        except (TypeError, ValueError):
            scale = default.scale
        flag = lambda key, value: str(self.store.value(key, value)).lower() in ("true", "1")  # noqa: E731
        return CaptionStyle(flag("view/captions", default.visible), min(max(scale, SCALES[0]), SCALES[-1]),
                            flag("view/captions_top", default.top))

    def _restyle(self, **changes) -> None:
        style = self.view.caption_style
        for key, value in changes.items():
            setattr(style, key, value)
        self.store.setValue("view/captions", style.visible)
        self.store.setValue("view/caption_scale", style.scale)
        self.store.setValue("view/captions_top", style.top)
        self.store.sync()
        self.view.update()

    def resize_captions(self, steps: int) -> None:
        now = self.view.caption_style.scale
        index = min(range(len(SCALES)), key=lambda i: abs(SCALES[i] - now))
        self._restyle(scale=SCALES[min(max(index + steps, 0), len(SCALES) - 1)])
