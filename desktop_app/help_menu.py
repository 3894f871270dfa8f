"""Help: the keyboard shortcuts (read from the menus, so the list never goes stale), the
documentation (docs/desktop.md) and About (version, model, precision, licences)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHeaderView, QMenu, QMenuBar,
                               QMessageBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from desktop_app.about import about_text

DOCS = Path(__file__).resolve().parent.parent / "docs" / "desktop.md"
MOUSE_AND_FIELDS = (  # what no menu action says
    ("Double-click the video", "Fullscreen"),
    ("Enter in the Question box", "Ask the question"),
    ("Enter in the Instruction box", "Apply the instruction"),
    ("Drop a video file on the window", "Open and play it"),
)


def shortcut_rows(menus: list[QMenu]) -> list[tuple[str, str]]:
    """(keys, what they do) for every menu action with a shortcut, in menu order."""
    rows = []
    for menu in menus:
        for action in menu.actions():
            keys = action.shortcut().toString(QKeySequence.NativeText)
            if keys:
                rows.append((keys, action.text().replace("&", "").rstrip("…")))
    return rows + list(MOUSE_AND_FIELDS)


class ShortcutsDialog(QDialog):
    def __init__(self, rows: list[tuple[str, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        for row, (keys, what) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(keys))
            self.table.setItem(row, 1, QTableWidgetItem(what))
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(460, min(640, 60 + 30 * len(rows)))

    def rows(self) -> list[tuple[str, str]]:
        return [(self.table.item(r, 0).text(), self.table.item(r, 1).text()) for r in range(self.table.rowCount())]


class HelpMenu(QObject):
    """`model()` -> (the model name in force, the LoadedModel or None); `menus` are listed in Shortcuts."""

    def __init__(self, window: QWidget, bar: QMenuBar, menus: list[QMenu], model: Callable[[], tuple]):
        super().__init__(window)
        self.window, self.menus, self._model = window, menus, model
        self.about_box: QMessageBox | None = None
        self.shortcuts_dialog: ShortcutsDialog | None = None
        self.menu = bar.addMenu("&Help")
        self.shortcuts_action = self._add("&Keyboard shortcuts", self.show_shortcuts, QKeySequence.HelpContents)
        self.docs_action = self._add("&Documentation", self.open_docs)
        self.docs_action.setToolTip(str(DOCS))
        self.menu.addSeparator()
        self.about_action = self._add("&About LiveCC Desktop", self.about)

    def _add(self, text: str, slot, shortcut=None) -> QAction:
        action = self.menu.addAction(text, slot)
        if shortcut is not None:
            action.setShortcut(shortcut)
        return action

    def show_shortcuts(self) -> None:
        if self.shortcuts_dialog is None:  # built when first asked for: every menu exists by then
            self.shortcuts_dialog = ShortcutsDialog(shortcut_rows(self.menus + [self.menu]), self.window)
        self.shortcuts_dialog.show()
        self.shortcuts_dialog.raise_()

    def open_docs(self) -> bool:
        """The desktop guide in the browser or editor; a message names it when the source tree is not here."""
        if DOCS.is_file() and QDesktopServices.openUrl(QUrl.fromLocalFile(str(DOCS))):
            return True
        QMessageBox.information(self.window, "Documentation", "The desktop guide is docs/desktop.md in the LiveCC "
                                f"source tree (looked for {DOCS}).")
        return False

    def about(self) -> None:
        if self.about_box is None:  # one box, reused: each click must not leave another behind
            self.about_box = QMessageBox(QMessageBox.Information, "About LiveCC Desktop", "", QMessageBox.Ok,
                                         self.window)
            self.about_box.setTextFormat(Qt.RichText)
            self.about_box.setWindowModality(Qt.NonModal)
        self.about_box.setText(about_text(*self._model()))  # the model may have changed
        self.about_box.show()
        self.about_box.raise_()
