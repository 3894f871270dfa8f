"""The app's file dialogs: open a video, save a transcript, choose a model folder."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from desktop_app.source_picker import VIDEO_FILTER
from desktop_app.transcript import FORMATS


class FileDialogs:
    def __init__(self, parent: QWidget):
        self.parent = parent

    def open_video(self, title: str = "Open a video") -> str | None:
        path, _ = QFileDialog.getOpenFileName(self.parent, title, str(Path.home()), VIDEO_FILTER)
        return path or None

    def save_transcript(self, default: Path) -> str | None:
        """A path whose suffix names the format (taken from the chosen filter when typed without one)."""
        filters = ";;".join(f"{name} (*{suffix})" for suffix, name in FORMATS.items())
        path, chosen = QFileDialog.getSaveFileName(self.parent, "Save transcript", str(default), filters)
        if path and Path(path).suffix.lower() not in FORMATS:
            path += next((s for s, name in FORMATS.items() if chosen.startswith(name)), ".txt")
        return path or None

    def model_folder(self) -> str | None:
        folder = QFileDialog.getExistingDirectory(self.parent, "Choose a local LiveCC / Qwen2-VL model folder")
        return folder or None
