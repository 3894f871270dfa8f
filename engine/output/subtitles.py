"""Transcript formats: SRT, WebVTT, JSONL and plain text, from engine events. Qt-free, shared by
the CLI and the desktop app."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from engine.output.jsonl import writing
from engine.session.events import Answer, Commentary, Event, event_to_record


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cue_text(text: str) -> str:
    """A cue's text without blank lines: in SRT and WebVTT a blank line ends the cue, so one in a
    comment or a question would split it, or let the text forge a cue with its own timing."""
    return "\n".join(line for line in text.splitlines() if line.strip())


def cues(events: Iterable[Event]) -> list[tuple[float, float, str]]:
    """Timed lines: each non-empty comment over its chunk, each finished answer for 4 s from when
    it was asked; ordered and clipped so no two overlap."""
    items = []
    for e in events:
        if isinstance(e, Commentary) and cue_text(e.text):
            items.append((e.start, e.end, cue_text(e.text)))
        elif isinstance(e, Answer) and e.done:
            items.append((e.time, e.time + 4.0, cue_text(f"Q: {e.question}\nA: {e.text}")))
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


def _srt_block(index: int, start: float, end: float, text: str) -> str:
    return f"{index}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n"


def _vtt_block(index: int, start: float, end: float, text: str) -> str:
    return f"{_clock(start, '.')} --> {_clock(end, '.')}\n{_vtt_escape(text)}\n"


VTT_HEADER = "WEBVTT\n\n"


def to_srt(events: Iterable[Event]) -> str:
    return "\n".join(_srt_block(i, a, b, text) for i, (a, b, text) in enumerate(cues(events), 1))


def _vtt_escape(text: str) -> str:
    """WebVTT cue text treats & and < as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(events: Iterable[Event]) -> str:
    return VTT_HEADER + "\n".join(_vtt_block(i, a, b, text) for i, (a, b, text) in enumerate(cues(events), 1))


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


class LiveSubtitles:
    """An SRT or WebVTT file written as the run goes: each cue is appended and flushed when it comes,
    so the file on disk always holds every finished cue, whatever stops the run. Cues must come in
    time order without overlap, as narration's comments do (its chunks tile the video)."""

    def __init__(self, path: str | Path, kind: str):
        self.path = Path(path)
        self._block = {"srt": _srt_block, "vtt": _vtt_block}[kind]
        self.cues = 0
        with writing(self.path):
            self._file: TextIO = self.path.open("w", encoding="utf-8")
        self._write(VTT_HEADER if kind == "vtt" else "")

    def add(self, event: Commentary) -> None:
        text = cue_text(event.text)
        if not text:
            return
        self.cues += 1
        self._write(("\n" if self.cues > 1 else "") + self._block(self.cues, event.start, event.end, text))

    def _write(self, text: str) -> None:
        with writing(self.path):
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        with writing(self.path):
            self._file.close()


