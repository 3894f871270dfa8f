"""Choosing what to watch: cameras, screens (optionally a region), or a video file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QDialog, QHBoxLayout, QStyle, QToolButton, QWidget

from desktop_app.region_picker import RegionDialog
from engine import FileSource, ScreenSource, VideoSource, WebcamSource

VIDEO_FILTER = "Videos (*.mp4 *.mkv *.mov *.avi *.webm *.m4v);;All files (*)"
OPEN_FILE = "open-file"  # the combo's "Open video file…" item


@dataclass(frozen=True)
class SourceSpec:
    """What the user picked; `make_source()` turns it into an engine source at Start."""

    kind: str  # "webcam" | "screen" | "file"
    index: int = 0  # camera index or mss monitor number
    path: str = ""
    region: tuple[int, int, int, int] | None = None
    label: str = ""

    def make_source(self) -> VideoSource:
        if self.kind == "webcam":
            return WebcamSource(self.index)
        if self.kind == "screen":
            return ScreenSource(self.index, region=self.region)
        return FileSource(self.path, realtime=True)  # played at its own speed, like a live source

    def title(self) -> str:
        if self.kind == "file":
            return Path(self.path).name
        if self.kind == "screen" and self.region:
            return f"{self.label} region {'x'.join(map(str, self.region[2:]))}"
        return self.label


class SourcePicker(QWidget):
    """A combo box of sources plus a Region… button for screens."""

    open_file_requested = Signal()
    changed = Signal()
    activated = Signal()  # the user chose an item (changed also follows the app's own selections)
    region_chosen = Signal(object)  # the user chose a screen region (None: the whole screen)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(26)
        self.combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setToolTip("What to watch: a camera, a screen, or a video file (or drop a file on the window)")
        self.region_button = QToolButton()
        self.region_button.setText("Region…")
        self.region_button.setToolTip("Watch only part of the screen: drag over a screenshot")
        self.region_button.clicked.connect(self._edit_region)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.region_button)
        self._cameras: list[tuple[int, str]] = []
        self._monitors: list[dict] = []
        self._files: list[str] = []
        self._region: tuple[int, int, int, int] | None = None
        self._last_index = 0
        self.combo.activated.connect(self._on_activated)
        self.combo.currentIndexChanged.connect(self._on_changed)
        self._rebuild()

    # -- contents -----------------------------------------------------------------------------
    def set_devices(self, cameras: list[tuple[int, str]], monitors: list[dict]) -> None:
        keep = self.current_spec()
        self._cameras, self._monitors = list(cameras), [m for m in monitors if m.get("index", 1) != 0]
        self._rebuild(keep)

    def add_file(self, path: str) -> SourceSpec:
        """Add a video file (most recent first) and select it."""
        path = str(Path(path))
        if path in self._files:
            self._files.remove(path)
        self._files.insert(0, path)
        del self._files[5:]
        spec = self._file_spec(path)
        self._rebuild(spec)
        return spec

    def set_recent(self, paths: list[str]) -> None:
        """Files played before, newest first, listed without being selected."""
        self._files = [str(Path(p)) for p in paths][:5]
        self._rebuild(self.current_spec())

    def set_region(self, region: tuple[int, int, int, int] | None) -> None:
        self._region = region
        self._rebuild(self.current_spec())

    @property
    def region(self) -> tuple[int, int, int, int] | None:
        return self._region

    def select(self, spec: SourceSpec) -> bool:
        for i in range(self.combo.count()):
            if self.combo.itemData(i) == spec:
                self.combo.setCurrentIndex(i)
                return True
        return False

    def current_spec(self) -> SourceSpec | None:
        data = self.combo.currentData()
        return data if isinstance(data, SourceSpec) else None

    def _file_spec(self, path: str) -> SourceSpec:
        return SourceSpec("file", path=path, label=Path(path).name)

    def _rebuild(self, keep: SourceSpec | None = None) -> None:
        self.combo.blockSignals(True)
        self.combo.clear()
        for path in self._files:
            self.combo.addItem(self._icon(QStyle.SP_FileIcon), Path(path).name, self._file_spec(path))
        for index, name in self._cameras:
            self.combo.addItem(self._icon(QStyle.SP_MediaPlay), name, SourceSpec("webcam", index=index, label=name))
        for m in self._monitors:
            label = f"Screen {m['index']} ({m['width']}×{m['height']})"
            spec = SourceSpec("screen", index=m["index"], region=self._region, label=label)
            self.combo.addItem(self._icon(QStyle.SP_ComputerIcon), spec.title(), spec)
        if not self._cameras:
            self.combo.addItem(self._icon(QStyle.SP_MediaPlay), "No camera found", None)
            self.combo.model().item(self.combo.count() - 1).setEnabled(False)
        self.combo.addItem(self._icon(QStyle.SP_DirOpenIcon), "Open video file…", OPEN_FILE)
        self.combo.blockSignals(False)
        if keep is None or not self.select(_with_region(keep, self._region)):
            self.combo.setCurrentIndex(0)
        self._on_changed()

    def _icon(self, which: QStyle.StandardPixmap):
        return self.style().standardIcon(which)

    # -- reactions ------------------------------------------------------------------------------
    def _on_activated(self, index: int) -> None:
        if self.combo.itemData(index) == OPEN_FILE:
            self.combo.setCurrentIndex(self._last_index if self._last_index != index else 0)
            self.open_file_requested.emit()
        else:
            self.activated.emit()

    def _on_changed(self, *_args) -> None:
        spec = self.current_spec()
        if spec is not None:
            self._last_index = self.combo.currentIndex()
        self.region_button.setEnabled(spec is not None and spec.kind == "screen")
        self.changed.emit()

    def _edit_region(self) -> None:
        spec = self.current_spec()
        monitor = next((m for m in self._monitors if spec and m["index"] == spec.index), None)
        dialog = RegionDialog(self._region, monitor, self)
        if dialog.exec() == QDialog.Accepted:
            self.set_region(dialog.region())
            self.region_chosen.emit(self._region)


def _with_region(spec: SourceSpec, region) -> SourceSpec:
    if spec.kind != "screen":
        return spec
    return SourceSpec("screen", spec.index, region=region, label=spec.label)
