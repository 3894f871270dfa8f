"""The transcript panel: one block per entry, selectable and copyable, following new lines
unless the user has scrolled up to read (a resize, or a round trip to fullscreen, keeps that)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QUrl, Signal
from PySide6.QtGui import (QColor, QFont, QFontMetricsF, QImage, QTextBlockFormat, QTextCharFormat, QTextCursor,
                           QTextDocument, QTextImageFormat)
from PySide6.QtWidgets import QTextEdit, QToolTip, QWidget

from desktop_app.transcript import Entry, clock

TIME_COLOR = QColor(120, 150, 210)
QUESTION_COLOR = QColor(255, 190, 60)
ANSWER_COLOR = QColor(255, 226, 160)
LINE_SEP = "\u2028"  # a line break inside one block: an entry stays one block
MOMENT_COLOR = QColor(140, 200, 255)
THUMB_HEIGHT = 36  # pixels a recalled moment's thumbnail is shown at


class TranscriptView(QTextEdit):
    moment_clicked = Signal(float, float)  # a recalled moment's [start, end) in video seconds

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        self.setPlaceholderText("Commentary and answers appear here, with their video time.")
        self._blocks = 0
        self._thumbs: dict[int, tuple] = {}  # id(picture) -> (picture, resource name)
        self.following = True  # changed only by the user's scrolling, never by a relayout
        self.moment_tip = lambda start, end: f"Recalled moment {clock(start)}–{clock(end)}"  # set by the window
        bar = self.verticalScrollBar()
        bar.actionTriggered.connect(lambda _action: self._note_following(bar.sliderPosition()))
        bar.rangeChanged.connect(lambda *_: self._follow())
        self._time_fmt = QTextCharFormat()
        self._time_fmt.setForeground(TIME_COLOR)
        mono = QFont(self.font())
        mono.setFamilies(["DejaVu Sans Mono", "Menlo", "Consolas", "monospace"])
        mono.setStyleHint(QFont.Monospace)
        mono.setPointSizeF(self.font().pointSizeF() * 0.9)
        self._time_fmt.setFont(mono)
        self._text_fmt = QTextCharFormat()
        self._q_fmt = QTextCharFormat()
        self._q_fmt.setForeground(QUESTION_COLOR)
        self._q_fmt.setFontWeight(QFont.Bold)
        self._a_fmt = QTextCharFormat()
        self._a_fmt.setForeground(ANSWER_COLOR)
        self._mark_fmt = QTextCharFormat()
        self._mark_fmt.setForeground(TIME_COLOR)
        self._mark_fmt.setFontItalic(True)

    def at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def _note_following(self, position: int) -> None:
        self.following = position >= self.verticalScrollBar().maximum() - 4

    def _follow(self) -> None:
        if self.following:
            bar = self.verticalScrollBar()
            bar.setValue(bar.maximum())

    def wheelEvent(self, event) -> None:
        super().wheelEvent(event)
        self._note_following(self.verticalScrollBar().value())

    def keyPressEvent(self, event) -> None:
        super().keyPressEvent(event)
        self._note_following(self.verticalScrollBar().value())

    def show_entry(self, index: int, entry: Entry, created: bool) -> None:
        """Append entry `index` (created) or rewrite its block (a streaming answer grew)."""
        cursor = QTextCursor(self.document())
        if created:
            cursor.movePosition(QTextCursor.End)
            if self._blocks:
                cursor.insertBlock()
            self._blocks += 1
        else:
            block = self.document().findBlockByNumber(index)
            cursor.setPosition(block.position())
            cursor.movePosition(QTextCursor.EndOfBlock, QTextCursor.KeepAnchor)
            cursor.removeSelectedText()
        self._write(cursor, entry)
        self._follow()

    def _write(self, cursor: QTextCursor, e: Entry) -> None:
        indent = QFontMetricsF(self._time_fmt.font()).horizontalAdvance(f"{'0:00:00':>7}  ")
        block = QTextBlockFormat()
        block.setLeftMargin(indent)  # wrapped lines hang under the text, not under the time
        block.setTextIndent(-indent)
        block.setBottomMargin(3)
        cursor.setBlockFormat(block)
        cursor.insertText(f"{clock(e.start):>7}  ", self._time_fmt)
        if e.kind == "seek":
            cursor.insertText(f"» {e.text}", self._mark_fmt)
        elif e.is_answer:
            cursor.insertText(f"Q: {e.question}{LINE_SEP}", self._q_fmt)
            cursor.insertText(f"A: {e.text or '…'}".replace("\n", LINE_SEP), self._a_fmt)
            self._write_moments(cursor, e)
        else:
            cursor.insertText(e.text.replace("\n", LINE_SEP), self._text_fmt)

    def _write_moments(self, cursor: QTextCursor, e: Entry) -> None:
        """Under an answer: each recalled moment as a small thumbnail and a clickable time span."""
        if not e.recalled and not e.note:
            return
        cursor.insertText(f"{LINE_SEP}Recalled:", self._time_fmt)
        thumbs = e.thumbnails if len(e.thumbnails) == len(e.recalled) else (None,) * len(e.recalled)
        for (start, end), thumb in zip(e.recalled, thumbs):
            cursor.insertText(" ", self._text_fmt)
            if thumb is not None:
                cursor.insertImage(self._thumbnail(thumb))
            link = QTextCharFormat(self._time_fmt)
            link.setForeground(MOMENT_COLOR)
            link.setFontUnderline(True)
            link.setAnchor(True)
            link.setAnchorHref(f"moment:{start}:{end}")
            cursor.insertText(f"{clock(start)}–{clock(end)}", link)
        if e.note:
            cursor.insertText(f" ({e.note})", self._time_fmt)

    def _thumbnail(self, rgb) -> QTextImageFormat:
        """Register a thumbnail with the document (once per picture) and return its image format."""
        if id(rgb) not in self._thumbs:  # held with its picture, so the id stays unique; a streaming answer re-uses it
            name = f"thumb:{len(self._thumbs)}"
            h, w = rgb.shape[:2]
            image = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
            self.document().addResource(QTextDocument.ImageResource, QUrl(name), image)
            self._thumbs[id(rgb)] = (rgb, name)
        name = self._thumbs[id(rgb)][1]
        fmt = QTextImageFormat()
        fmt.setName(name)
        fmt.setHeight(THUMB_HEIGHT)
        fmt.setWidth(THUMB_HEIGHT * rgb.shape[1] / rgb.shape[0])
        return fmt

    def event(self, event) -> bool:
        if event.type() == QEvent.ToolTip:  # a time link says what it is
            href = self.anchorAt(self.viewport().mapFromGlobal(event.globalPos()))
            if href.startswith("moment:"):
                _, start, end = href.split(":")
                QToolTip.showText(event.globalPos(), self.moment_tip(float(start), float(end)), self)
                return True
        return super().event(event)

    def mouseReleaseEvent(self, event) -> None:
        href = self.anchorAt(event.position().toPoint())
        if href.startswith("moment:"):
            _, start, end = href.split(":")
            self.moment_clicked.emit(float(start), float(end))
        super().mouseReleaseEvent(event)

    def entries_text(self) -> list[str]:
        """The blocks as plain text (tests, accessibility)."""
        doc = self.document()
        return [doc.findBlockByNumber(i).text().replace(LINE_SEP, "\n") for i in range(self._blocks)]

    def clear_entries(self) -> None:
        self.clear()
        self._blocks = 0
        self.following = True
        self._thumbs.clear()
