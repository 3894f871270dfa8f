"""One run of the pipeline, from Start to Stop: the source's capture thread fills a
PreviewBuffer; the engine runs on a GeneratorThread and its events come out as a Qt signal.

Opening the source happens on the engine thread too, so a slow camera never freezes the window.
"""

from __future__ import annotations

from typing import Callable, Iterator

from PySide6.QtCore import QObject, Signal

from desktop_app.preview import PreviewBuffer
from desktop_app.source_picker import SourceSpec
from desktop_app.workers import GeneratorThread
from engine import StreamEnded

SessionFactory = Callable[..., object]  # (LoadedModel, SessionConfig) -> StreamingSession-like
STOP_TIMEOUT_S = 2.0


class LiveRun(QObject):
    event = Signal(object)  # an engine event dataclass
    errored = Signal(object)  # the exception that ended the run
    finished = Signal()  # the engine thread has ended, for any reason

    def __init__(self, spec: SourceSpec, session, parent: QObject | None = None):
        super().__init__(parent)
        self.spec = spec
        self.session = session
        try:
            self.source = spec.make_source()
        except BaseException:
            session.stop()  # it never runs: a server's connection goes back now
            raise
        self.buffer = PreviewBuffer()
        self._stopping = False
        self.reached_end = False  # the file played to its end (StreamEnded): its session may answer on
        self._thread = GeneratorThread(self._stream, name="livecc-engine", parent=self)
        self._thread.yielded.connect(self.event)
        self._thread.errored.connect(self.errored)
        self._thread.finished.connect(self.finished)
        self.event.connect(self._note_end)

    def _note_end(self, event) -> None:
        if isinstance(event, StreamEnded):
            self.reached_end = True

    def _stream(self) -> Iterator[object]:
        if self._stopping:
            return
        try:
            self.source.start(self.buffer)  # raises SourceOpenError: no camera, bad file, no display
        except BaseException:
            self.session.stop()  # it never runs: a server's connection goes back now
            raise
        try:
            yield from self.session.run(self.buffer)
        finally:
            self.source.stop(STOP_TIMEOUT_S)

    # -- commands from the GUI thread: none of them waits on the engine ---------------------------
    def start(self) -> None:
        self._thread.start()

    def ask(self, question: str) -> None:
        self.session.ask(question)

    def set_query(self, text: str) -> None:
        self.session.set_query(text)

    @property
    def answers_after_end(self) -> bool:
        """Whether the session answers questions once its video has ended (local and server sessions do)."""
        return getattr(self.session, "keeps_context", True)

    # -- player controls: files only (a live source has no position) --------------------------
    @property
    def seekable(self) -> bool:
        return callable(getattr(self.source, "seek", None))

    @property
    def duration(self) -> float:
        info = getattr(self.source, "info", None)  # known once the engine thread has opened the file
        return info.duration if info is not None else 0.0

    def pause(self) -> None:
        self.source.pause()  # the engine waits for frames; video time stays the file's own

    def resume(self) -> None:
        self.source.resume()

    def seek(self, seconds: float) -> None:
        """A new conversation at `seconds`: the engine moves the source between two steps."""
        self.session.seek(seconds, self.source.seek)

    def stop(self) -> None:
        """Ask everything to end; `join()` waits for it."""
        self._stopping = True
        self.session.stop()
        self.buffer.close()  # wakes the engine if it waits for frames; the capture stops in _stream's finally

    def join(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        return self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.isRunning()

    @property
    def preview(self):
        return self.buffer.preview


class EndedRun(QObject):
    """A file that played to its end: its session keeps the context, so questions are still
    answered from what the model saw, one at a time, on their own thread."""

    event = Signal(object)
    errored = Signal(object)
    finished = Signal()  # an answer's thread has ended: the model is free

    def __init__(self, session, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self._thread: GeneratorThread | None = None

    @property
    def answering(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def ask(self, question: str) -> bool:
        """Start answering; False while the previous answer is still being written."""
        if self.answering:
            return False
        self._thread = GeneratorThread(lambda: self.session.answer(question), name="livecc-answer", parent=self)
        self._thread.yielded.connect(self.event)
        self._thread.errored.connect(self.errored)
        self._thread.finished.connect(self.finished)
        self._thread.start()
        return True

    def stop(self) -> None:
        self.session.stop()

    def join(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        return self._thread is None or self._thread.join(timeout_s)

    def close(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop answering and let go of the session (its KV cache and memory); True when no answer
        thread runs any more. A thread still running keeps the session until it ends."""
        self.stop()
        joined = self.join(timeout_s)
        self.session = None
        return joined
