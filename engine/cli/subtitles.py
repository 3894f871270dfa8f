"""Transcript formats: SRT, WebVTT, JSONL and plain text, from engine events. Qt-free, shared by
the CLI and the desktop app."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from engine.session.events import Answer, Commentary, Event, event_to_record


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cues(events: Iterable[Event]) -> list[tuple[float, float, str]]:
    """Timed lines: each non-empty comment over its chunk, each finished answer for 4 s from when
    it was asked; ordered and clipped so no two overlap."""
    items = []
    for e in events:
        if isinstance(e, Commentary) and e.text:
            items.append((e.start, e.end, e.text))
        elif isinstance(e, Answer) and e.done:
            items.append((e.time, e.time + 4.0, f"Q: {e.question}\nA: {e.text}"))
    out: list[tuple[float, float, str]] = []
    for start, end, text in sorted(items, key=lambda c: c[0]):
        if out and start < out[-1][1]:
            prev_start, prev_end, prev_text = out[-1]
            if start > prev_start:
                out[-1] = (prev_start, start, prev_text)  # cut the earlier line short
            else:
                start = prev_end  # same start: show this one after it
        if end > start:
            out.append((start, end, text))
    return out


def to_srt(events: Iterable[Event]) -> str:
    blocks = [f"{i}\n{_clock(a, ',')} --> {_clock(b, ',')}\n{text}\n" for i, (a, b, text) in enumerate(cues(events), 1)]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    """WebVTT cue text treats & and < as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(events: Iterable[Event]) -> str:
    blocks = [f"{_clock(a, '.')} --> {_clock(b, '.')}\n{_vtt_escape(text)}\n" for a, b, text in cues(events)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_text(events: Iterable[Event]) -> str:
    lines = []
    for e in events:
        if isinstance(e, Commentary) and e.text:
            lines.append(f"[{_clock(e.start, '.')[3:]}] {e.text}")
        elif isinstance(e, Answer) and e.done:
            lines.append(f"[{_clock(e.time, '.')[3:]}] Q: {e.question}\n    A: {e.text}")
    return "\n".join(lines) + ("\n" if lines else "")


def write_transcript(path: str | Path, events: list[Event]) -> Path:
    """Write `events` in the format named by the file's suffix (.srt, .vtt, .jsonl, .txt)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        text = "".join(json.dumps(event_to_record(e), ensure_ascii=False) + "\n" for e in events
                       if isinstance(e, Commentary) or (isinstance(e, Answer) and e.done))
    else:
        writers = {".srt": to_srt, ".vtt": to_vtt, ".txt": to_text}
        if suffix not in writers:
            raise ValueError(f"unknown transcript format '{suffix}': use .srt, .vtt, .jsonl or .txt")
        text = writers[suffix](events)
    path.write_text(text, encoding="utf-8")
    return path


class JsonlLog:
    """Append-only JSONL, one line per record, flushed at once: a crash loses nothing written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
