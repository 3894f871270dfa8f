"""The video view: the source at its own frame rate, aspect ratio kept, captions on top."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PySide6.QtCore import QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop_app.captions import Caption, CaptionTrack
from desktop_app.preview import first_frame
from desktop_app.transcript import clock
from engine import Frame

POLL_MS = 15  # frame polling; repaints happen only when a new frame or a caption change is due
CAPTION_REPAINT_S = 0.1  # fades are smooth enough at 10 Hz

COMMENT_BG = QColor(0, 0, 0, 165)
ANSWER_BG = QColor(28, 22, 6, 200)
ANSWER_ACCENT = QColor(255, 190, 60)
TIME_FG = QColor(170, 200, 255)

FrameTap = Callable[[], tuple[int, Frame | None]]
_LONG_RUN = re.compile(r"\S{12,}")
ZWSP = "\u200b"  # a break opportunity: URLs, hashtags and CJK runs wrap instead of overflowing


def breakable(text: str, every: int = 6) -> str:
    """Long unbroken runs get invisible break points, so word wrap can always fit the box."""
    return _LONG_RUN.sub(lambda m: ZWSP.join(m[0][i:i + every] for i in range(0, len(m[0]), every)), text)


@dataclass
class CaptionStyle:
    """How captions show: on or off, a size factor, at the bottom (answers at the top) or swapped."""

    visible: bool = True
    scale: float = 1.0
    top: bool = False


class VideoView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setMinimumSize(320, 200)
        self.setAttribute(Qt.WA_OpaquePaintEvent)
        self.captions = CaptionTrack()
        self.caption_style = CaptionStyle()
        self.caption_boxes: list[QRectF] = []  # where the last paint put caption boxes (tests, a11y)
        self._tap: FrameTap | None = None
        self._seq = -1
        self._image: QImage | None = None
        self._frame_time = 0.0
        self._frames_shown = 0
        self._last_caption_paint = 0.0
        self.placeholder = "Choose a source and press Start"
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._timer.start()

    # -- feeding ------------------------------------------------------------------------------
    def set_tap(self, tap: FrameTap | None) -> None:
        """Where frames come from (a PreviewBuffer's `preview`); None keeps the last frame."""
        self._tap = tap
        self._seq = -1

    def show_preview(self, path: str) -> bool:
        """Show a file's first frame (no model yet, or before Start); False when it has none."""
        frame = first_frame(path)
        if frame is not None:
            self._image, self._frame_time = _to_qimage(frame), 0.0
            self.update()
        return frame is not None

    def set_placeholder(self, text: str) -> None:
        """What shows when there is no frame (the last frame, if any, stays on screen)."""
        self.placeholder = text
        self.update()

    def clear(self, placeholder: str | None = None) -> None:
        self._image = None
        if placeholder is not None:
            self.placeholder = placeholder
        self.update()

    def add_event(self, event) -> None:
        if self.captions.apply(event):
            self.update()

    @property
    def frames_shown(self) -> int:
        return self._frames_shown

    @property
    def frame_time(self) -> float:
        """Video time of the frame on screen."""
        return self._frame_time

    def _poll(self) -> None:
        if self._tap is not None:
            seq, frame = self._tap()
            if frame is not None and seq != self._seq:
                self._seq = seq
                self._image = _to_qimage(frame)
                self._frame_time = frame.timestamp
                self._frames_shown += 1
                self.update()
                return
        now = time.monotonic()
        # a caption still on screen repaints until it has faded out, also on a frozen frame (paused, ended)
        if now - self._last_caption_paint > CAPTION_REPAINT_S and (self.captions.animating() or self.caption_boxes):
            self.update()

    # -- painting -----------------------------------------------------------------------------
    def paintEvent(self, _event) -> None:
        self._last_caption_paint = time.monotonic()
        p = QPainter(self)
        p.setRenderHints(QPainter.Antialiasing | QPainter.SmoothPixmapTransform | QPainter.TextAntialiasing)
        p.fillRect(self.rect(), QColor(12, 12, 14))
        if self._image is None:
            self._paint_placeholder(p)
            area = QRectF(self.rect())
        else:
            area = self._video_rect()
            p.drawImage(area, self._image)
        self._paint_captions(p, area)
        p.end()

    def _video_rect(self) -> QRectF:
        iw, ih = self._image.width(), self._image.height()
        scale = min(self.width() / iw, self.height() / ih)
        w, h = iw * scale, ih * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def _paint_placeholder(self, p: QPainter) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(11.0, self.height() / 30))
        p.setFont(font)
        p.setPen(QColor(140, 140, 150))
        p.drawText(self.rect(), Qt.AlignCenter | Qt.TextWordWrap, self.placeholder)

    def _paint_captions(self, p: QPainter, area: QRectF) -> None:
        self.caption_boxes = []
        answer, lines = self.captions.visible()
        style = self.caption_style
        if not style.visible or not answer and not lines:
            return
        column = QRectF(area.left() + area.width() * 0.06, 0, area.width() * 0.88, 0)
        size = self._fitting_size(min(24.0, max(10.0, area.height() / 30)) * style.scale, answer, lines, column, area)
        font = _scaled(self.font(), 1.0, size)
        margin = size * 0.9
        low, high = (area.top() + margin, area.bottom() - margin)  # top edge / bottom edge to anchor at
        if lines:
            self._paint_subtitles(p, font, lines, column, low if style.top else None, high)
        if answer:
            answer_font = QFont(font)
            answer_font.setPointSizeF(size * 0.85)
            self._paint_answer(p, answer_font, answer, column, None if style.top else low, high)

    def _fitting_size(self, size: float, answer, lines, column: QRectF, area: QRectF) -> float:
        """The caption size, smaller where the boxes would not fit the video (a large size on a small view)."""
        for _ in range(12):
            font = _scaled(self.font(), 1.0, size)
            need = 3 * size * 0.9 + (_subtitle_layout(font, lines, column)[-1] if lines else 0)
            if answer:
                need += _answer_layout(_scaled(font, 0.85), answer, column)[-1]
            if need <= area.height() or size <= 4.0:
                break
            size *= 0.85
        return size

    def _paint_subtitles(self, p: QPainter, font: QFont, lines, column: QRectF, top: float | None,
                         bottom: float) -> None:
        """The last few comments in one translucent box, each line led by its video time."""
        pad, small, stamp_w, text_w, texts, rects, widest, gap, height = _subtitle_layout(font, lines, column)
        metrics = QFontMetricsF(font)
        box = QRectF(column.center().x() - widest / 2, bottom - height if top is None else top, widest, height)
        self.caption_boxes.append(box)
        p.save()
        p.setOpacity(max(o for _, o in lines))
        _fill_rounded(p, box, pad, COMMENT_BG)
        y = box.top() + pad
        for (caption, opacity), rect, text in zip(lines, rects, texts):
            p.setOpacity(opacity)
            p.setFont(small)
            p.setPen(TIME_FG)
            p.drawText(QRectF(box.left() + pad, y, stamp_w, metrics.height()), Qt.AlignLeft | Qt.AlignVCenter,
                       clock(caption.time))
            p.setFont(font)
            p.setPen(QColor(250, 250, 250))
            p.drawText(QRectF(box.left() + pad + stamp_w, y, text_w, rect.height()), Qt.TextWordWrap, text)
            y += rect.height() + gap
        p.restore()

    def _paint_answer(self, p: QPainter, font: QFont, c: Caption, column: QRectF, top: float | None,
                      bottom: float) -> None:
        """The answer to a question: amber-framed, away from the commentary so they never mix."""
        pad, small, head, body, inner, head_r, body_r, width, height = _answer_layout(font, c, column)
        box = QRectF(column.center().x() - width / 2, bottom - height if top is None else top, width, height)
        self.caption_boxes.append(box)
        p.save()
        p.setOpacity(c.opacity(time.monotonic()))
        _fill_rounded(p, box, pad, ANSWER_BG, QPen(ANSWER_ACCENT, 1.5))
        p.setFont(small)
        p.setPen(ANSWER_ACCENT)
        p.drawText(QRectF(box.left() + pad, box.top() + pad, inner, head_r.height()), Qt.TextWordWrap, head)
        p.setFont(font)
        p.setPen(QColor(255, 236, 190))
        p.drawText(QRectF(box.left() + pad, box.top() + pad + head_r.height(), inner, body_r.height()),
                   Qt.TextWordWrap, body)
        p.restore()


def _scaled(font: QFont, factor: float, size: float | None = None) -> QFont:
    out = QFont(font)
    out.setPointSizeF((size or font.pointSizeF()) * factor)
    return out


def _subtitle_layout(font: QFont, lines, column: QRectF) -> tuple:
    """(pad, time font, time width, text width, texts, their rects, box width, line gap, box height)."""
    pad = font.pointSizeF() * 0.55
    small = _scaled(font, 0.7)
    stamp_w = QFontMetricsF(small).horizontalAdvance("00:00  ")
    text_w = max(1.0, column.width() - 2 * pad - stamp_w)
    metrics = QFontMetricsF(font)
    texts = [breakable(c.text) for c, _ in lines]
    rects = [metrics.boundingRect(QRectF(0, 0, text_w, 1e6), Qt.TextWordWrap, t) for t in texts]
    widest = min(column.width(), max(r.width() for r in rects) + stamp_w + 2 * pad)
    gap = font.pointSizeF() * 0.25
    height = sum(r.height() for r in rects) + gap * (len(rects) - 1) + 2 * pad
    return pad, small, stamp_w, text_w, texts, rects, widest, gap, height


def _answer_layout(font: QFont, c: Caption, column: QRectF) -> tuple:
    """(pad, head font, head, body, inner width, head rect, body rect, box width, box height)."""
    pad = font.pointSizeF() * 0.6
    small = _scaled(font, 0.8)
    head, body = breakable(f"{clock(c.time)}   Q: {c.question}"), breakable(c.text or "…")
    inner = max(1.0, column.width() - 2 * pad)
    head_r = QFontMetricsF(small).boundingRect(QRectF(0, 0, inner, 1e6), Qt.TextWordWrap, head)
    body_r = QFontMetricsF(font).boundingRect(QRectF(0, 0, inner, 1e6), Qt.TextWordWrap, body)
    width = min(column.width(), max(head_r.width(), body_r.width()) + 2 * pad)
    return pad, small, head, body, inner, head_r, body_r, width, head_r.height() + body_r.height() + 2 * pad


def _fill_rounded(p: QPainter, box: QRectF, radius: float, color: QColor, pen: QPen | None = None) -> None:
    path = QPainterPath()
    path.addRoundedRect(box, radius, radius)
    p.fillPath(path, color)
    if pen is not None:
        p.setPen(pen)
        p.drawPath(path)


def _to_qimage(frame: Frame) -> QImage:
    img = np.ascontiguousarray(frame.image)
    h, w, _ = img.shape
    # copy(): the QImage must own its pixels; the numpy array may be reused by the source
    return QImage(img.data, w, h, img.strides[0], QImage.Format_RGB888).copy()
