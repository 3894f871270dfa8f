"""The transcript in the window and the session file beside it, widget-free: a run begins a
new transcript and a new JSONL file (created at the first record worth keeping); a file that
cannot be written stops being written, never the commentary."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Callable

from desktop_app.source_picker import SourceSpec
from desktop_app.transcript import SessionRecorder, Transcript, save_transcript


class SessionKeeper:
    """`on_file(path)`: the session file was created; `on_error(text)`: it cannot be written."""

    def __init__(self, sessions_dir: Path, on_file: Callable[[Path], None], on_error: Callable[[str], None]):
        self.sessions_dir = sessions_dir
        self.transcript = Transcript()
        self.recorder: SessionRecorder | None = None
        self.source: SourceSpec | None = None  # what the transcript in the window is about
        self._on_file, self._on_error = on_file, on_error

    def clear(self) -> None:
        self.transcript = Transcript()

    def begin(self, spec: SourceSpec, model: str, instruction: str) -> None:
        self.clear()
        self.source = spec
        self.recorder = SessionRecorder(self.sessions_dir, {
            "type": "session", "source": spec.title(), "kind": spec.kind, "model": model,
            "started": datetime.now().isoformat(timespec="seconds"), "instruction": instruction})

    def log(self, record: dict) -> None:
        """Into the session file (created at the first comment, answer, question or seek)."""
        recorder = self.recorder
        if recorder is None:
            return
        had_file = recorder.path is not None
        try:
            recorder.write(record)
        except OSError as exc:  # a read-only disk must not stop the commentary
            self.recorder = None
            self._on_error(f"Cannot write the session file in {self.sessions_dir} ({exc}): the transcript is only "
                           "kept in the window; use File > Save transcript")
            return
        if not had_file and recorder.path is not None:
            self._on_file(recorder.path)

    def end_run(self, keep_open: bool) -> None:
        """The run ended: an answer cut short is logged as it stands; the file stays open while the
        ended file's session still answers questions."""
        partial = self.transcript.close_open_answer()
        if partial is not None:
            self.log({"type": "answer", "question": partial.question, "text": partial.text, "done": False,
                      "time": partial.start})
        if not keep_open:
            self.close()

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()

    def default_save_path(self) -> Path:
        """match.srt beside match.mp4 (VLC loads it by itself); live sources: the sessions folder."""
        spec = self.source
        if spec is not None and spec.kind == "file":
            return Path(spec.path).with_suffix(".srt")
        return self.sessions_dir / f"transcript-{datetime.now():%Y%m%d-%H%M%S}.srt"

    def save(self, path: str | Path) -> Path:
        """Raises OSError or ValueError (an unknown suffix)."""
        return save_transcript(self.transcript.entries, path)
