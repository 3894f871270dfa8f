"""Narrate a whole video file to subtitles from the app, as fast as the model goes (not in real
time): the engine's `narrate_file`, the loop `livecc narrate` runs too, so `match.mp4` gets the same
`match.srt` and `match.vtt` as `livecc narrate match.mp4 --srt match.srt --vtt match.vtt`, and a
failure or a Cancel keeps every cue written so far."""

from __future__ import annotations

import dataclasses
from contextlib import closing
from pathlib import Path
from typing import Callable, Iterator

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from desktop_app.workers import GeneratorThread, user_message
from engine import Commentary, probe_video
from engine.output import NarrationFiles, narrate_file

SUFFIXES = (".srt", ".vtt")


def subtitle_paths(video: str | Path) -> list[Path]:
    """Where the subtitles go: beside the video, with its name (VLC loads `match.srt` by itself)."""
    return [Path(video).with_suffix(suffix) for suffix in SUFFIXES]


class Narration(QObject):
    """One file narrated on its own thread; `progress` carries the fraction of the video done."""

    progress = Signal(object)  # fraction done, 0..1
    finished = Signal(list)  # the subtitle paths written (empty when none could be); `error` says if it failed

    def __init__(self, video: str | Path, loaded, config, parent: QObject | None = None):
        super().__init__(parent)
        from engine import StreamingSession  # torch loads here, not when the window module is imported

        self.video = Path(video)
        self.config = dataclasses.replace(config, live=False)  # every frame, no skipping
        self.session = StreamingSession(loaded, self.config)
        self._thread = GeneratorThread(self._narrate, name="livecc-narrate", parent=self)
        self._thread.yielded.connect(self.progress)
        self._thread.errored.connect(self._failed)
        self._thread.finished.connect(self._written)
        self._paths: list[Path] = []
        self.error = ""  # one line on why it failed, set before `finished` (the cues so far stay written)
        self.cancelled = False

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.cancelled = True
        self.session.stop()

    def join(self, timeout_s: float) -> bool:
        return self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.isRunning()

    def _narrate(self) -> Iterator[float]:
        info = probe_video(self.video)
        srt, vtt = subtitle_paths(self.video)
        files = NarrationFiles(srt, vtt)
        try:
            with closing(narrate_file(self.session, self.video, info, files)) as events:
                for event in events:
                    if isinstance(event, Commentary):
                        yield min(1.0, event.end / info.duration) if info.duration else 0.0
        finally:
            files.close()
            self._paths = files.paths

    def _failed(self, exc: BaseException) -> None:
        self.error = user_message(exc, advice="")  # the window says what was kept

    def _written(self) -> None:
        self.finished.emit(self._paths)


class NarrationController(QObject):
    """File > Narrate to subtitles: choose a file, confirm replacing its subtitles, show progress
    with Cancel. `blocker()` says why not now (or None); `make(path)` builds the Narration."""

    notice = Signal(str, str)  # text, level for the window's message stack
    busy_changed = Signal(bool)  # a narration started (True) or ended (False): the model is busy or free

    def __init__(self, window: QWidget, blocker: Callable[[], str | None], make: Callable[[Path], Narration],
                 choose_video: Callable[[str], str | None]):
        super().__init__(window)
        self.window, self._blocker, self._make, self._choose_video = window, blocker, make, choose_video
        self.narration: Narration | None = None
        self.action = QAction("&Narrate to subtitles…", self)
        self.action.setToolTip("Write match.srt and match.vtt beside match.mp4, as fast as the model goes")
        self.action.triggered.connect(self.choose)

    def choose(self) -> None:
        path = self._choose_video("Narrate a video to subtitles")
        if not path:
            return
        existing = [p.name for p in subtitle_paths(path) if p.exists()]
        if existing and QMessageBox.question(self.window, "Replace subtitles?", f"Replace {' and '.join(existing)}?") \
                != QMessageBox.StandardButton.Yes:
            return
        self.narrate(path)

    def narrate(self, path: str | Path) -> Narration | None:
        why = "a narration is running" if self.narration is not None else self._blocker()
        if why:
            self.notice.emit(f"Cannot narrate now: {why}.", "info")
            return None
        narration = self._make(Path(path))
        dialog = QProgressDialog(f"Narrating {Path(path).name} to subtitles…", "Cancel", 0, 100, self.window)
        dialog.setWindowTitle("Narrate to subtitles")
        dialog.setWindowModality(Qt.NonModal)
        dialog.setMinimumDuration(0)
        dialog.canceled.connect(narration.cancel)
        narration.progress.connect(lambda f: dialog.setValue(int(f * 100)))
        narration.finished.connect(lambda paths: self._done(narration, dialog, paths))  # it reports a failure too
        self.narration = narration
        narration.start()
        self.busy_changed.emit(True)
        return narration

    def _done(self, narration: Narration, dialog: QProgressDialog, paths: list) -> None:
        dialog.canceled.disconnect(narration.cancel)  # close() emits canceled: it is no Cancel
        dialog.close()
        dialog.deleteLater()
        if self.narration is narration:
            self.narration = None
        narration.deleteLater()
        self.busy_changed.emit(False)
        written = ", ".join(str(p) for p in paths)
        if narration.error and paths:  # one message: why it stopped, and where the cues so far are
            self.notice.emit(f"Narration stopped ({narration.error.rstrip('.')}). The subtitles so far are in "
                             f"{written}.", "warning")
        elif narration.error:
            self.notice.emit(f"Narration failed: {narration.error}", "error")
        elif narration.cancelled:
            self.notice.emit(f"Narration cancelled: the subtitles so far are in {written}" if paths
                             else "Narration cancelled: no subtitles were written", "info")
        elif paths:
            self.notice.emit(f"Subtitles written beside the video: {written}", "info")

    def shutdown(self, timeout_s: float) -> bool:
        narration = self.narration
        if narration is None:
            return True
        narration.cancel()
        return narration.join(timeout_s)
