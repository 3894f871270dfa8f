"""The window's two composite panels: the instruction and question inputs under the video, and
the transcript with the session file's place beside it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QUrl
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from desktop_app.transcript_view import TranscriptView
from engine.defaults import MAX_TEXT_CHARS

SEEK_KEYS = (QKeySequence("Ctrl+Left"), QKeySequence("Ctrl+Right"))


class InputsPanel(QWidget):
    """Instruction (Enter applies it) and Question (Enter or Ask sends it). Ctrl+Left/Right seek from
    here too, except while a field is being edited (typed in since it was sent or applied), where
    they jump over words."""

    def __init__(self, instruction: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.instruction_edit = QLineEdit(instruction)
        self.instruction_edit.setToolTip("The running instruction the model follows; press Enter to apply")
        self.question_edit = QLineEdit()
        self.question_edit.setPlaceholderText("Ask about the video… (Enter)")
        self.ask_button = QPushButton("Ask")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for title, edit, extra in (("Instruction", self.instruction_edit, None),
                                   ("Question", self.question_edit, self.ask_button)):
            row = QHBoxLayout()
            row.addWidget(QLabel(title))
            edit.setMaxLength(MAX_TEXT_CHARS)  # what a session takes (engine/session/text.py)
            row.addWidget(edit, 2)
            if extra is not None:
                row.addWidget(extra)
            layout.addLayout(row)
            edit.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.ShortcutOverride and isinstance(watched, QLineEdit) \
                and not (watched.isModified() and watched.text()) \
                and QKeySequence(event.keyCombination()) in SEEK_KEYS:
            event.ignore()  # not overridden: the window's seek shortcut gets the key
            return True
        return False


class TranscriptPanel(QWidget):
    """The transcript view, and a line saying where the session file is (a link to its folder)."""

    def __init__(self, sessions_dir: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.sessions_dir = sessions_dir
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 8, 8, 8)
        title = QLabel("Transcript")
        title.setStyleSheet("font-weight: bold;")
        layout.addWidget(title)
        self.view = TranscriptView()
        layout.addWidget(self.view, 1)
        self.session_label = QLabel()
        self.session_label.setWordWrap(True)
        self.session_label.setOpenExternalLinks(True)
        self.session_label.setStyleSheet("color: palette(mid); font-size: 11px;")
        layout.addWidget(self.session_label)
        self.show_session_path(None)

    def show_session_path(self, path: Path | None) -> None:
        folder = self.sessions_dir
        where = f"<a href='{QUrl.fromLocalFile(str(folder)).toString()}'>{folder}</a>"
        if path is None:
            self.session_label.setText(f"Sessions are saved as JSONL in {where}")
        else:
            self.session_label.setText(f"Saving to {where}/{path.name}")
        self.session_label.setToolTip(str(path or folder))
