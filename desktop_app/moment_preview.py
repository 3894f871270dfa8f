"""A recalled moment's time link under an answer: for a file, a preview of that moment in its
own small window, read from the file apart from the run (the conversation goes on); for a live
source, which cannot be replayed, a tooltip saying what the link is."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QCursor, QPixmap
from PySide6.QtWidgets import QDialog, QLabel, QToolTip, QVBoxLayout, QWidget

from desktop_app.preview import frame_at
from desktop_app.source_picker import SourceSpec
from desktop_app.transcript import clock
from desktop_app.video_view import _to_qimage

PREVIEW_WIDTH = 480


def moment_tip(spec: SourceSpec | None, start: float, end: float) -> str:
    span = f"{clock(start)}–{clock(end)}"
    if spec is not None and spec.kind == "file":
        return f"Recalled moment {span} of {spec.title()}: click to see it (the conversation goes on)"
    return (f"Recalled moment {span}: the answer drew on what the model saw then. A live source cannot be "
            "replayed; the thumbnail is the key frame it kept")


class MomentPreview(QDialog):
    """One window, reused: the frame at a moment's start, with its time span."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowModality(Qt.NonModal)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignCenter)
        self.caption = QLabel()
        self.caption.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.picture)
        layout.addWidget(self.caption)

    def show_moment(self, path: str, start: float, end: float) -> bool:
        frame = frame_at(path, start)
        if frame is None:
            return False
        pixmap = QPixmap.fromImage(_to_qimage(frame))
        self.picture.setPixmap(pixmap.scaledToWidth(min(PREVIEW_WIDTH, pixmap.width()), Qt.SmoothTransformation))
        self.caption.setText(f"{Path(path).name} at {clock(start)}–{clock(end)}: the moment the answer recalled. "
                             "The conversation goes on.")
        self.setWindowTitle(f"Recalled moment {clock(start)}–{clock(end)}")
        self.show()
        self.raise_()
        return True


class MomentLinks:
    """`source()` is what the transcript is about (a SourceSpec or None)."""

    def __init__(self, parent: QWidget, source: Callable[[], SourceSpec | None]):
        self.parent, self._source = parent, source
        self.preview: MomentPreview | None = None

    def tip(self, start: float, end: float) -> str:
        return moment_tip(self._source(), start, end)

    def open(self, start: float, end: float) -> None:
        spec = self._source()
        if spec is not None and spec.kind == "file" and Path(spec.path).is_file():
            self.preview = self.preview or MomentPreview(self.parent)
            if self.preview.show_moment(spec.path, start, end):
                return
        QToolTip.showText(QCursor.pos(), self.tip(start, end), self.parent)
