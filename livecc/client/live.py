"""A live source (camera, screen, a file played in real time) watched by a session on a server, with
the local `StreamingSession`'s face: `run(buffer)` yields the engine's events while the buffer's
frames go up; `ask`, `set_query`, `seek` and `stop` may come from any thread. A front end that runs
a local session runs this one the same way (the desktop app does). Imports no torch."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from engine.session.events import Event, StreamEnded
from tts.received import NoVoice

from .narrate import CaptureSettings, FrameSender, resizer_for
from .session import RemoteError, RemoteSession, no_voice

PING_INTERVAL_S = 2.0  # how often the round trip to the server is measured


@dataclass(frozen=True)
class ServerAddress:
    """Where the session runs: a ws:// or wss:// URL and the server's token ("" for none)."""

    url: str
    token: str = ""

    def connect(self, timeout: float = 10.0) -> RemoteSession:
        return RemoteSession.connect(self.url, self.token or None, timeout, ping_interval=PING_INTERVAL_S)


class ModelSize:
    """Shrinks each image to the model's size before it goes up, with `resizer` (`resizer_for`: the
    engine's own resize where torch is installed; without it OpenCV's, or none for lossless frames)."""

    def __init__(self, capture: CaptureSettings, resizer: Callable):
        self.capture, self.resizer = capture, resizer
        self._resizers: dict[tuple[int, int], Callable | None] = {}

    def __call__(self, image):
        shape = image.shape[:2]
        if shape not in self._resizers:  # a camera or screen keeps its size: one resizer each
            self._resizers[shape] = self.resizer(*shape, self.capture.max_pixels, self.capture.min_pixels)
        resize = self._resizers[shape]
        return image if resize is None else resize(image)


class RemoteStream:
    """`settings`: the session settings a local run would use (docs/protocol.md), `instructions` the
    commentary instruction, `speech`: the server speaks the replies too (its audio comes among the
    events as tts.received.ReceivedAudio; a server without a voice says so once, as NoVoice). The
    connection opens in `run`, on the caller's (engine) thread. At the stream's end the server keeps
    the session (`keep_open`): `answer` goes on until `stop`."""

    keeps_context = True  # questions are answered after the end, as by a local session

    def __init__(self, server: ServerAddress, instructions: str, settings: dict, fmt: str = "jpeg",
                 spare: RemoteSession | None = None, speech: bool = False):
        self.server, self.instructions, self.settings, self.fmt = server, instructions, settings, fmt
        self.speech = speech
        self._spare = spare  # a connection already admitted (e.g. the app's check of the server), used first
        self.remote: RemoteSession | None = None
        self._sender: FrameSender | None = None
        self._stopped = threading.Event()
        self._ended = False  # run() returned at the stream's end, leaving the connection open for answers
        self._pending: list[tuple[str, object]] = []  # commands given before the connection opened
        self._lock = threading.Lock()

    @property
    def round_trip_ms(self) -> float | None:
        remote = self.remote
        return remote.round_trip_ms if remote is not None else None

    def run(self, buffer) -> Iterator[Event]:
        """Connect, send the buffer's frames, yield the server's events until the stream ends or stop()."""
        if self._stopped.is_set():
            return
        remote = self._open()
        try:
            self._start_sender(remote, buffer)
            if self.speech and remote.voice is None:
                yield NoVoice(no_voice())
            for event in remote.events(until=self._stopped.is_set):
                if isinstance(event, StreamEnded):
                    with self._lock:
                        self._ended = not self._stopped.is_set()
                    yield event
                    return
                yield event
            if self._sender.error is not None and not self._stopped.is_set():
                raise self._sender.error
        finally:
            if self._sender is not None:
                self._sender.stop()
            if not self._ended:
                remote.close()

    def _start_sender(self, remote: RemoteSession, buffer) -> None:
        """Frames go up at the session's rate and the model's size; the end keeps the session open."""
        capture = CaptureSettings.of(remote.settings)
        sender = FrameSender(remote, buffer, self.fmt, shrink=ModelSize(capture, resizer_for(self.fmt)),
                             fps=capture.fps, keep_open=True)
        with self._lock:
            self.remote, self._sender = remote, sender
            pending, self._pending = self._pending, []
        for kind, payload in pending:
            self._apply(kind, payload)
        sender.start()

    def answer(self, question: str) -> Iterator[Event]:
        """After the stream's end: the answer's events, from the session the server kept."""
        if self._ended and not self._stopped.is_set():
            yield from self.remote.answer(question, until=self._stopped.is_set)

    def _open(self) -> RemoteSession:
        """An admitted session with this run's settings: the spare connection while the server still
        holds it (it closes one left idle), else a new one."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            try:
                spare.update(self.instructions, self.settings, self._audio(spare))
                return spare
            except RemoteError:
                spare.close()
        remote = self.server.connect()
        try:
            remote.update(self.instructions, self.settings, self._audio(remote))
        except BaseException:
            remote.close()
            raise
        return remote

    def _audio(self, remote: RemoteSession) -> bool | None:
        """Ask for speech when it is wanted and the server has a voice (None: leave it as it is)."""
        return True if self.speech and remote.voice is not None else None

    # -- commands (any thread) ------------------------------------------------------------------
    def ask(self, question: str) -> None:
        self._command("ask", question)

    def set_query(self, text: str) -> None:
        self._command("query", text)

    def seek(self, seconds: float, reposition: Callable[[float], object] | None = None) -> None:
        """A new conversation at `seconds`: the frame sender tells the server, then moves the source."""
        self._command("seek", (seconds, reposition))

    def set_speech(self, speech: bool) -> None:
        """Speak Toggle mid-run: the server starts or stops speaking (no voice there: nothing to change)."""
        self.speech = speech
        self._command("speech", speech)

    def stop(self) -> None:
        """End the run; after the stream's end, close the session the server kept, and before the run
        opened, the spare connection (a source that failed to open never runs)."""
        self._stopped.set()
        if self._sender is not None:
            self._sender.stop()
        with self._lock:
            kept = self.remote if self._ended else None
            spare, self._spare = self._spare, None
        for remote in (kept, spare):
            if remote is not None:
                remote.close()

    def _command(self, kind: str, payload) -> None:
        with self._lock:
            if self.remote is None:
                self._pending.append((kind, payload))
                return
        self._apply(kind, payload)

    def _apply(self, kind: str, payload) -> None:
        try:
            if kind == "ask":
                self.remote.ask(payload)
            elif kind == "query":
                self.remote.instruct(payload)
            elif kind == "seek":
                self._sender.seek(*payload)
            elif kind == "speech" and self.remote.voice is not None:
                self.remote.speak(payload)
        except RemoteError:  # the connection is gone: the event loop reports why
            pass
