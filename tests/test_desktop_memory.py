"""The desktop transcript shows the moments an answer recalled: small thumbnails and clickable
times under the answer (issue 10); the status bar shows the memory in use."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor, QTextDocument

from desktop_app.transcript import Transcript
from desktop_app.transcript_view import TranscriptView
from engine.session.events import Answer, Commentary


def thumb(value: int) -> np.ndarray:
    return np.full((27, 48, 3), value, np.uint8)


def test_recalled_moments_show_under_the_answer_and_click_to_their_time(qtbot):
    view = TranscriptView()
    qtbot.addWidget(view)
    view.resize(700, 300)
    view.show()
    transcript = Transcript()
    thumbs = (thumb(40), thumb(200))
    events = [Commentary(600.0, 601.0, "a red car", 0),
              Answer("What colour was the car at 2:30?", "It", False, 601.0, ((150.0, 180.0), (420.0, 425.0)), thumbs),
              Answer("What colour was the car at 2:30?", "It was blue.", True, 601.0, ((150.0, 180.0), (420.0, 425.0)),
                     thumbs)]
    for event in events:
        index, created = transcript.apply(event)
        view.show_entry(index, transcript.entries[index], created)
    text = view.entries_text()
    assert len(text) == 2 and "A: It was blue." in text[1]
    assert "Recalled:" in text[1] and "2:30–3:00" in text[1] and "7:00–7:05" in text[1]
    assert text[1].count("\ufffc") == 2  # one picture per moment, in the answer's block
    assert len(view._thumbs) == 2  # the streamed rewrite re-used the pictures
    doc = view.document()
    assert doc.resource(QTextDocument.ImageResource, "thumb:0") is not None

    # Clicking the second time emits its span.
    block = doc.findBlockByNumber(1)
    at = block.position() + block.text().index("7:00") + 2
    cursor = QTextCursor(doc)
    cursor.setPosition(at)
    point = view.cursorRect(cursor).center()
    with qtbot.waitSignal(view.moment_clicked, timeout=2000) as clicked:
        qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=point)
    assert clicked.args == [420.0, 425.0]


def test_an_answer_without_recall_has_no_moment_line_and_notes_show(qtbot):
    view = TranscriptView()
    qtbot.addWidget(view)
    transcript = Transcript()
    for event in (Answer("who?", "a man", True, 3.0),
                  Answer("and then?", "he ran", True, 9.0, ((0.0, 3.0),), (thumb(9),),
                         "GPU memory ran out while recalling: 1 of 4 key frames")):
        index, created = transcript.apply(event)
        view.show_entry(index, transcript.entries[index], created)
    first, second = view.entries_text()
    assert "Recalled" not in first
    assert "0:00–0:03" in second and "1 of 4 key frames" in second
    assert transcript.entries[1].recalled == ((0.0, 3.0),)


def test_settings_dialog_turns_visual_memory_off(qtbot):
    from desktop_app.settings import AppSettings
    from desktop_app.settings_dialog import SettingsDialog

    dialog = SettingsDialog(AppSettings(), devices=[])
    qtbot.addWidget(dialog)
    assert dialog.memory.isChecked()
    dialog.memory.setChecked(False)
    assert dialog.result_settings().memory is False
