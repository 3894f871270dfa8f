"""The app's file dialogs: open a video, save a transcript, choose a model folder. Each opens in
the folder used last (remembered in the settings file), not always in the home folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QWidget

from desktop_app.source_picker import VIDEO_FILTER
from desktop_app.transcript import FORMATS

FOLDER_KEY = "dialogs/last_folder"


class FileDialogs:
    def __init__(self, parent: QWidget, store: QSettings):
        self.parent, self.store = parent, store

    @property
    def folder(self) -> Path:
        """The folder used last, while it exists; the home folder else."""
        last = Path(str(self.store.value(FOLDER_KEY, "") or Path.home()))
        return last if last.is_dir() else Path.home()

    def remember(self, chosen: str | Path, is_folder: bool = False) -> None:
        self.store.setValue(FOLDER_KEY, str(Path(chosen) if is_folder else Path(chosen).parent))
        self.store.sync()

    def open_video(self, title: str = "Open a video") -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent, title, str(self.folder), VIDEO_FILTER)
        if path:
            self.remember(path)
        return path or None

    def save_transcript(self, default: Path) -> str | None:
        """A path whose suffix names the format (taken from the chosen filter when typed without one)."""
        filters = ";;".join(f"{name} (*{suffix})" for suffix, name in FORMATS.items())
        path, chosen = QFileDialog.getSaveFileName(self.parent, "Save transcript", str(default), filters)
        if path and Path(path).suffix.lower() not in FORMATS:
            path += next((s for s, name in FORMATS.items() if chosen.startswith(name)), ".txt")
        if path:
            self.remember(path)
        return path or None

    def model_folder(self) -> str | None:
        folder = QFileDialog.getExistingDirectory(self.parent, "Choose a local LiveCC / Qwen2-VL model folder",
                                                  str(self.folder))
        if folder:
            self.remember(folder, is_folder=True)
        return folder or None
