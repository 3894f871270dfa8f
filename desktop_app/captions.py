"""What the video overlay shows, Qt-free: the last few commentary lines and the current
answer, each with its video time and an opacity that fades with age (wall clock)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from desktop_app.transcript import clean_text
from engine import Answer, Commentary

MAX_LINES = 3  # commentary lines on screen
LINE_CHARS = 90  # a live line grows by fragments up to about this length
HOLD_S = 6.0  # fully visible this long after the last change
FADE_S = 1.5  # then fades out over this
ANSWER_HOLD_S = 12.0  # answers stay longer: they were asked for
ANSWER_CHARS = 240  # the overlay shows the tail of a long answer; the transcript has it all


@dataclass
class Caption:
    kind: str  # "commentary" | "answer"
    time: float  # video time of its first words
    text: str
    question: str = ""
    done: bool = True
    changed_at: float = field(default=0.0)

    def opacity(self, now: float) -> float:
        if not self.done:
            return 1.0
        hold = ANSWER_HOLD_S if self.kind == "answer" else HOLD_S
        age = now - self.changed_at - hold
        return 1.0 if age <= 0 else max(0.0, 1.0 - age / FADE_S)


class CaptionTrack:
    """LiveCC comments arrive as 1-second fragments of a few words: a fragment extends the
    newest line while that line is short and fresh (like live captions), else starts a line."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.lines: list[Caption] = []
        self.answer: Caption | None = None

    def apply(self, event) -> bool:
        """Fold an engine event in; True when something visible changed."""
        now = self._clock()
        if isinstance(event, Commentary):
            text = " ".join(clean_text(event.text).split())
            if not text:
                return False
            last = self.lines[-1] if self.lines else None
            if last and last.opacity(now) >= 1.0 and now - last.changed_at < 3.0 \
                    and len(last.text) + len(text) < LINE_CHARS:
                last.text = f"{last.text} {text}"
                last.changed_at = now
            else:
                self.lines.append(Caption("commentary", event.start, text, changed_at=now))
                del self.lines[:-MAX_LINES]
            return True
        if isinstance(event, Answer):
            question = clean_text(event.question)
            if self.answer is None or self.answer.question != question or self.answer.done and not event.done:
                self.answer = Caption("answer", event.time, "", question=question, done=False)
            self.answer.text = _tail(" ".join(clean_text(event.text).split()), ANSWER_CHARS)
            self.answer.done = event.done
            self.answer.changed_at = now
            return True
        return False

    def visible(self) -> tuple[Caption | None, list[tuple[Caption, float]]]:
        """(answer or None, [(line, opacity)]) for what is still visible now."""
        now = self._clock()
        answer = self.answer if self.answer and self.answer.opacity(now) > 0 else None
        lines = [(c, c.opacity(now)) for c in self.lines if c.opacity(now) > 0]
        return answer, lines

    def animating(self) -> bool:
        """True while anything is on screen: it may be fading, so the view keeps repainting."""
        answer, lines = self.visible()
        return bool(answer or lines)

    def texts(self) -> list[str]:
        """Everything currently shown, for tests and accessibility."""
        answer, lines = self.visible()
        out = [c.text for c, _ in lines]
        if answer:
            out.append(answer.text)
        return out

    def clear(self) -> None:
        self.lines.clear()
        self.answer = None


def _tail(text: str, limit: int) -> str:
    """The last `limit` characters, cut at a word, with a leading ellipsis when cut."""
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    space = cut.find(" ")
    return "…" + (cut[space + 1:] if 0 <= space < limit // 3 else cut)
