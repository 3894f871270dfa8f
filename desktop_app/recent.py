"""Recently played video files, newest first, remembered in QSettings (File menu, source list)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 8


class RecentFiles:
    def __init__(self, store: QSettings):
        self.store = store

    def paths(self) -> list[str]:
        raw = self.store.value("recent/files", [])
        items = [raw] if isinstance(raw, str) else list(raw or [])
        return [p for p in items if p and Path(p).is_file()][:MAX_RECENT]  # moved or deleted files drop out

    def add(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        self.store.setValue("recent/files", [path, *[p for p in self.paths() if p != path]][:MAX_RECENT])
        self.store.sync()

    def clear(self) -> None:
        self.store.remove("recent/files")
        self.store.sync()
