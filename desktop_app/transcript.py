"""The transcript of a session, Qt-free: entries folded from engine events (answers stream in),
saving them through engine.output (SRT, WebVTT, JSONL, text: the writers every front end uses), and the
crash-safe session log.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from engine import Answer, Commentary, Event, JsonlLog, Seek, event_to_record
from engine.output import write_transcript

ANSWER_MIN_SECONDS = 4.0  # how long an answer stays up at least
WORDS_PER_SECOND = 2.5  # reading speed used to size an answer's time span


# Shown text keeps line breaks but not control characters, nor U+FFFD: a streaming byte-level
# tokenizer shows it for a character whose bytes have not all arrived yet.
_HIDDEN = {c: None for c in [*range(0, 9), *range(11, 32), 0x7F, 0xFFFD]}
_HIDDEN[9] = " "


def clean_text(text: str) -> str:
    return text.translate(_HIDDEN).strip()


@dataclass
class Entry:
    """One line of the transcript: a comment on [start, end) or a question with its answer."""

    kind: str  # "commentary" | "answer" | "seek" (a mark: the conversation restarted there)
    start: float
    end: float
    text: str
    question: str = ""
    done: bool = True
    recalled: tuple[tuple[float, float], ...] = ()  # moments the visual memory recalled for an answer
    thumbnails: tuple = ()  # small RGB arrays, one per recalled moment
    note: str = ""

    @property
    def is_answer(self) -> bool:
        return self.kind == "answer"


def _answer_end(time_s: float, text: str) -> float:
    return time_s + max(ANSWER_MIN_SECONDS, len(text.split()) / WORDS_PER_SECOND)


class Transcript:
    """Entries in arrival order. Answers stream in: an Answer event updates the open entry of
    its question until `done`. Silent chunks (empty commentary) are not entries."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self._open_answer: Entry | None = None
        self._open_index = -1

    def apply(self, event: Event) -> tuple[int, bool] | None:
        """Fold an event in. Returns (entry index, created) or None when nothing is shown."""
        if isinstance(event, Commentary):
            text = clean_text(event.text)
            if not text:
                return None
            self.entries.append(Entry("commentary", event.start, event.end, text))
            return len(self.entries) - 1, True
        if isinstance(event, Answer):
            return self._apply_answer(event)
        if isinstance(event, Seek):
            self._open_answer = None
            self.entries.append(Entry("seek", event.time, event.time, f"Jumped to {clock(event.time)}: "
                                                                      "a new conversation starts here"))
            return len(self.entries) - 1, True
        return None

    def _apply_answer(self, event: Answer) -> tuple[int, bool]:
        created = self._open_answer is None or self._open_answer.question != clean_text(event.question)
        if created:
            self.entries.append(Entry("answer", event.time, event.time, "", question=clean_text(event.question),
                                      done=False))
            self._open_index = len(self.entries) - 1
        entry = self.entries[self._open_index]
        entry.text = clean_text(event.text)
        entry.done = event.done
        entry.recalled, entry.thumbnails, entry.note = event.recalled, event.thumbnails, event.note
        entry.end = _answer_end(entry.start, entry.text)
        self._open_answer = None if event.done else entry
        return self._open_index, created

    @property
    def open_answer(self) -> Entry | None:
        """The answer still streaming, if any (logged as partial when a run ends early)."""
        return self._open_answer

    def close_open_answer(self) -> Entry | None:
        entry, self._open_answer = self._open_answer, None
        return entry

    def __len__(self) -> int:
        return len(self.entries)


# -- formatting --------------------------------------------------------------------------------

def clock(seconds: float) -> str:
    """Video time for people: 0:07, 1:02:03."""
    s = int(max(0.0, seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


FORMATS = {  # suffix -> name for the file dialog; engine.subtitles writes them (shared with the CLI)
    ".srt": "SubRip subtitles",
    ".vtt": "WebVTT subtitles",
    ".jsonl": "JSON Lines",
    ".txt": "Plain text",
}


def entries_to_events(entries: Iterable[Entry]) -> list[Event]:
    """Back to engine events for engine.subtitles. An answer cut short is saved as it stands."""
    events: list[Event] = []
    for i, e in enumerate(entries):
        if e.kind == "seek":
            continue  # a mark in the window, not a subtitle
        if e.is_answer:
            events.append(Answer(e.question, e.text, True, e.start, e.recalled, note=e.note))
        else:
            events.append(Commentary(e.start, e.end, e.text, i))
    return events


def save_transcript(entries: Iterable[Entry], path: str | Path) -> Path:
    """Write the entries in the format named by the file's suffix (.srt, .vtt, .jsonl, .txt)."""
    return write_transcript(path, entries_to_events(entries))


# -- the session log ---------------------------------------------------------------------------

def should_log(event: Event) -> bool:
    """Every event except the partial steps of a streaming answer (its final text is logged)."""
    return not (isinstance(event, Answer) and not event.done)


PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600  # session files hold what the screen and camera showed


class SessionLog(JsonlLog):
    """The JSONL file of a run: one line per event (plus questions, instruction changes, errors),
    flushed at once so a crash loses nothing shown."""

    @classmethod
    def create(cls, directory: str | Path, now: datetime | None = None) -> "SessionLog":
        """A new file `session-YYYYmmdd-HHMMSS.jsonl` in `directory` (suffixed if taken)."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, mode=PRIVATE_DIR)
        except FileExistsError:
            pass  # the user's own folder (~/Documents, a shared one) keeps its mode; the files are 0600
        else:
            directory.chmod(PRIVATE_DIR)  # exactly 0700, whatever the umask
        stem = f"session-{(now or datetime.now()):%Y%m%d-%H%M%S}"
        path, n = directory / f"{stem}.jsonl", 1
        while path.exists():
            n += 1
            path = directory / f"{stem}-{n}.jsonl"
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, PRIVATE_FILE))  # private from the start
        return cls(path)

    def write(self, record: dict) -> None:
        if not self.closed:
            super().write({**record, "wall_time": round(time.time(), 3)})

    def write_event(self, event: Event) -> None:
        self.write(event_to_record(event))

    @property
    def closed(self) -> bool:
        return self._file.closed


class SessionRecorder:
    """A run's session file, created at the first record worth keeping (a comment, an answer, a
    question, a seek): a start that fails at once leaves no file behind. Raises OSError from
    `write` when the file cannot be created."""

    CONTENT = frozenset({"commentary", "answer", "question", "seek"})

    def __init__(self, directory: str | Path, header: dict):
        self.directory = Path(directory)
        self._held: list[dict] = [{**header, "wall_time": round(time.time(), 3)}]
        self.log: SessionLog | None = None

    @property
    def path(self) -> Path | None:
        return self.log.path if self.log is not None else None

    def write(self, record: dict) -> None:
        if self.log is not None:
            self.log.write(record)
            return
        self._held.append({**record, "wall_time": round(time.time(), 3)})
        if record["type"] in self.CONTENT:
            self.log = SessionLog.create(self.directory)
            for held in self._held:
                JsonlLog.write(self.log, held)  # with the wall time it happened at
            self._held = []

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def read_session_log(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
