"""Settings > Engine > Server: the model runs on a `livecc serve` server (docs/serve.md). "Loading the
model" is connecting to it, a run's session is a `livecc.client` RemoteStream (the local session's
face: the app runs it as it runs a local one), and the status bar shows the round trip. Nothing here
imports torch, so the app works over a server on a machine without it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from PySide6.QtCore import QObject, QTimer

from desktop_app.model_loader import ModelLoader, load_here
from desktop_app.settings import SERVER, AppSettings
from engine.defaults import min_pixels_for
from livecc.client.live import RemoteStream, ServerAddress
from livecc.client.session import session_url

ROUND_TRIP_EVERY_MS = 1000
SERVER_FIELD_TIP = "Round trip to the server (Settings > Engine), from the connection's last ping"

# How the app words the fix of a server's errors (their codes: livecc/client/session.py).
SERVER_FIXES = {
    "server-url": "give a URL like ws://127.0.0.1:8000 in Settings > Engine",
    "server-unreachable": "check the URL in Settings > Engine and that `livecc serve` is running there",
    "server-token": "enter the server's token in Settings > Engine",
    "server-busy": "press Start again later",
    "server-ended": "press Start when the server is back (the transcript is kept)",
    "server-speech": "start the server with `livecc serve --speech chattts`, or turn Speak off",
}


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a server's address (one line naming the fix), or None."""
    from engine.errors import LiveCCError

    try:
        session_url(url.strip())
    except LiveCCError as exc:
        return exc.worded(SERVER_FIXES).replace("--server ", "", 1)
    return None


@dataclass(frozen=True)
class RemoteConfig:
    """What a run on the server is given: the commentary instruction, the session settings, and
    whether the server speaks the replies (Speak is on)."""

    instructions: str
    settings: dict
    speech: bool = False


def remote_config(settings, instruction: str) -> RemoteConfig:
    """The settings a local run of the app uses (MainWindow._session_config), as the server takes them."""
    return RemoteConfig(instruction, dict(max_new_tokens=settings.max_new_tokens,
                                          repetition_penalty=settings.repetition_penalty,
                                          max_pixels=settings.max_pixels,
                                          min_pixels=min_pixels_for(settings.max_pixels),
                                          live=True, memory=settings.memory), speech=settings.speech_enabled)


class ServerEngine:
    """The "loaded model" of server mode: the server that answered, the model it serves, and the
    connection that checked it, kept for the first run (a one-session server would otherwise still be
    releasing it when that run connects)."""

    precision = "none"  # the server's to choose
    notes: tuple[str, ...] = ()

    def __init__(self, address: ServerAddress, spare):
        self.address, self._spare = address, spare
        created = spare.created["session"]
        self.model, self.replica = created.get("model", "?"), created.get("replica", "")

    @property
    def name(self) -> str:
        return self.model

    def describe(self) -> str:
        return f"{self.model.rstrip('/').rsplit('/', 1)[-1]} on {urlsplit(self.address.url).netloc} (server)"

    def session(self, config: RemoteConfig) -> RemoteStream:
        spare, self._spare = self._spare, None
        return RemoteStream(self.address, config.instructions, config.settings, spare=spare, speech=config.speech)

    def close(self) -> None:
        """Give the server back the slot of a connection no run took."""
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()


def release(loaded) -> None:
    """Give a server back the slot of the connection that checked it, if no run took it."""
    if isinstance(loaded, ServerEngine):
        loaded.close()


def connect_server(address: ServerAddress, report: Callable[[str, float | None], None]) -> ServerEngine:
    """Check that the server answers and admits this token. Raises RemoteError saying what is wrong."""
    report(f"Connecting to {address.url}…", None)
    return ServerEngine(address, address.connect())


def engine_key(s: AppSettings) -> tuple:
    """The settings whose change means another engine: connect again, or load another model."""
    return (s.engine, s.server_url, s.server_token) if s.engine == SERVER else (s.engine, s.model, s.quantize)


class EngineChoice(QObject):
    """Settings > Engine as the window's parts need it: what "load the model" means (connect, in
    server mode: the precision slot of the model choice says SERVER), the session config's shape,
    and the round trip in the status bar."""

    NARRATE_HERE = "File > Narrate runs the model on this computer: choose This computer in Settings > Engine"

    def __init__(self, settings: Callable[[], AppSettings], model_name: Callable[[], str], presenter,
                 run: Callable[[], object], parent: QObject):
        super().__init__(parent)
        self._settings, self._model_name, self.presenter = settings, model_name, presenter
        self.loader = ModelLoader(parent, load_fn=self._load, discard=release)
        self._run = run
        self.round_trip: RoundTrip | None = None
        self.show()

    @property
    def server(self) -> bool:
        return self._settings().engine == SERVER

    def show(self) -> None:
        """The status bar's round-trip field, while the engine is a server (added the first time)."""
        fields = self.presenter.fields
        if self.server and self.round_trip is None:
            label = fields.add("server", "Server –", "Server 9999 ms", SERVER_FIELD_TIP, priority=4)
            self.round_trip = RoundTrip(label, lambda: getattr(self._run(), "session", None), self)
        if self.round_trip is not None:
            fields.want("server", self.server)

    def model_choice(self) -> tuple[str, str]:
        s = self._settings()
        return (s.server_url, SERVER) if self.server else (self._model_name(), s.quantize)

    def _load(self, name: str, report, quantize: str = "auto"):
        if quantize == SERVER:
            s = self._settings()
            return connect_server(ServerAddress(s.server_url, s.server_token), report)
        return load_here(name, report, quantize)


class RoundTrip(QObject):
    """Shows the round trip to the server (the last ping's) in a status field while a run is on it."""

    def __init__(self, label, session: Callable[[], object], parent: QObject | None = None):
        super().__init__(parent)
        self.label, self._session = label, session
        self.timer = QTimer(self)
        self.timer.setInterval(ROUND_TRIP_EVERY_MS)
        self.timer.timeout.connect(self.update)
        self.timer.start()

    def update(self) -> None:
        ms = getattr(self._session(), "round_trip_ms", None)
        if ms is None:
            self.label.setText("Server –")
        else:  # on a LAN or loopback it is under a millisecond: a tenth shows it is measured
            self.label.setText(f"Server {ms:.1f} ms" if ms < 10 else f"Server {ms:.0f} ms")
