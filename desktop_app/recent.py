"""Recently played video files, newest first, remembered in QSettings (File menu, source list)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu

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

    def fill_menu(self, menu: QMenu, open_file: Callable[[str], None]) -> None:
        """File > Open recent, rebuilt each time it opens (files may have moved meanwhile)."""
        menu.clear()
        for path in self.paths():
            menu.addAction(Path(path).name, lambda p=path: open_file(p)).setToolTip(path)
        if menu.isEmpty():
            menu.addAction("No recent files").setEnabled(False)
        else:
            menu.addSeparator()
            menu.addAction("Clear list", self.clear)
