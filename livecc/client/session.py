"""A session on a `livecc serve` server, over one WebSocket (docs/protocol.md). Synchronous: one
thread may send frames while another reads events. Imports no torch."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

from engine.errors import LiveCCError
from engine.session.events import Answer, Event
from engine.session.text import checked_text

from livecc import protocol as wire

WAKE_S = 0.5  # how often a wait for events looks at its `until` condition


class RemoteError(LiveCCError):
    """The server could not be reached, refused the session, or ended it."""

    code = "remote"


def session_url(server: str) -> str:
    """ws://host:port (or wss://) -> the realtime route; a URL with a path is taken as is."""
    try:
        parts = urlsplit(server)
        parts.port  # noqa: B018 - a port that is no number, or past 65535, raises here, not in connect()
    except ValueError as exc:
        raise RemoteError(f"--server {server!r} is not a valid URL ({exc})", "give e.g. ws://127.0.0.1:8000",
                          "server-url") from None
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise RemoteError(f"--server {server!r} is not a ws:// or wss:// URL", "give e.g. ws://127.0.0.1:8000",
                          "server-url")
    return server if parts.path not in ("", "/") else server.rstrip("/") + wire.PATH


class RemoteSession:
    """Connected and admitted: `created` is the server's session.created message."""

    def __init__(self, ws, created: dict):
        self.ws, self.created = ws, created
        self.settings = created["session"]["settings"]
        self.warnings: list[str] = []  # error events the session went on after (a bad frame, say)
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, server: str, token: str | None = None, timeout: float = 10.0,
                ping_interval: float | None = 20.0) -> RemoteSession:
        """`ping_interval`: seconds between keepalive pings; each pong updates `round_trip_ms`."""
        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        url = session_url(server)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            ws = connect(url, additional_headers=headers, open_timeout=timeout, max_size=None, legacy=True,
                         ping_interval=ping_interval)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise RemoteError(f"cannot reach the server at {server} ({exc})",
                              "check --server and that `livecc serve` is running there", "server-unreachable") from None
        try:
            first = _receive(ws, timeout)
            if first.get("type") != "session.created":
                raise _refusal(first, server)
            return cls(ws, first)
        except (KeyError, TypeError):  # a session.created without its session: not a LiveCC server
            ws.close()
            raise RemoteError(f"{server} answered with a malformed session", "check --server", "server-url") from None
        except BaseException:  # a refusal, no answer, not our protocol, Ctrl+C: the socket closes here
            ws.close()
            raise

    def send(self, message: dict) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            with self._lock:
                self.ws.send(wire.dumps(message))
        except ConnectionClosed as exc:
            raise _ended(exc) from None

    @property
    def voice(self) -> str | None:
        """The server's speech engine (chattts, espeak), None when it has none."""
        return self.created["session"].get("voice")

    def update(self, instructions: str | None = None, settings: dict | None = None, audio: bool | None = None) -> dict:
        """Set the instruction and settings (before the first frame), and with `audio` whether replies
        are spoken too; returns the session's settings."""
        body = {"settings": settings or {}} | ({"instructions": instructions} if instructions is not None else {})
        self.send({"type": "session.update", "session": body | _modalities(audio)})
        reply = _receive(self.ws)
        if reply.get("type") == "error" and reply["error"].get("code") == "no_speech":
            raise no_voice()
        if reply.get("type") == "error":
            raise RemoteError(f"the server refused the settings: {reply['error']['message']}")
        if reply.get("type") != "session.updated":  # e.g. closed for being idle before the update
            raise RemoteError(f"the server ended the session ({reply.get('reason', reply.get('type'))})",
                              "run again", "server-ended")
        self.settings = reply["session"]
        return self.settings

    def ask(self, question: str) -> None:
        """Send a question; TextError (nothing sent) for one the server would refuse (too long, not text)."""
        self.send(wire.question_message(checked_text(question, "the question")))

    def answer(self, question: str, until: Callable[[], bool] | None = None) -> Iterator[Event]:
        """Ask, then the server's events until the answer is done (or `until()`, as in `events`)."""
        self.ask(question)
        for event in self.events(until):
            yield event
            if isinstance(event, Answer) and event.done:
                return
        if until is None or not until():
            raise RemoteError("the server ended the session before answering: run again")

    def speak(self, audio: bool) -> None:
        """Replies spoken too, or not, from now on (its `session.updated` reply is read with the events)."""
        self.send({"type": "session.update", "session": _modalities(audio)})

    def instruct(self, instructions: str) -> None:
        """A new commentary instruction mid-stream (its `session.updated` reply is read with the events)."""
        self.send({"type": "session.update", "session": {"instructions": instructions}})

    def seek(self, seconds: float) -> None:
        """A new conversation from `seconds` (a player's seek): send the new position's frames after it."""
        self.send({"type": "input_video_buffer.clear", "time": seconds})

    @property
    def round_trip_ms(self) -> float | None:
        """The last ping's round trip to the server, None before the first pong."""
        latency = self.ws.latency
        return latency * 1e3 if latency else None

    def end(self, keep_open: bool = False) -> None:
        """No more frames: the server narrates what it has, then ends the session, or with `keep_open`
        keeps it for questions until the client closes it."""
        self.send({"type": "input_video_buffer.end"} | ({"keep_open": True} if keep_open else {}))

    def events(self, until: Callable[[], bool] | None = None) -> Iterator[Event]:
        """The engine's events as the server sends them, until the session closes (or `until()` is
        true: it is checked between events, and every WAKE_S while none comes). An error the session
        goes on after is kept in `warnings`; one that ends it raises RemoteError."""
        from websockets.exceptions import ConnectionClosed

        while until is None or not until():
            try:
                message = json.loads(self.ws.recv(None if until is None else WAKE_S))
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == wire.NORMAL:
                    return
                raise _ended(exc) from None
            event = self._handle(message)
            if event is not None:
                yield event

    def _handle(self, message: dict) -> Event | None:
        if message.get("type") == "error":
            error = message["error"]
            if error.get("type") == "server_error":
                raise RemoteError(f"the server failed: {error['message']}", code="server-ended")
            self.warnings.append(error["message"])
            return None
        if message.get("type") == "session.closed" and message.get("reason") != "stream ended":
            raise RemoteError(f"the server ended the session: {message.get('reason')}", "run again later",
                              "server-ended")
        return wire.message_event(message)

    def close(self) -> None:
        self.ws.close()


def _modalities(audio: bool | None) -> dict:
    return {} if audio is None else {"output_modalities": list(wire.MODALITIES if audio else wire.MODALITIES[:1])}


def no_voice() -> RemoteError:
    return RemoteError("the server has no speech", "drop --speak, or start the server with "
                       "`livecc serve --speech chattts`", "server-speech")


def _ended(exc) -> RemoteError:
    """The connection closed under a session: the server's reason, if it gave one."""
    reason = exc.rcvd.reason if exc.rcvd is not None else "connection lost"
    return RemoteError(f"the server ended the session ({reason or 'no reason given'})", "run again when it is back",
                       "server-ended")


def _receive(ws, timeout: float | None = None) -> dict:
    from websockets.exceptions import ConnectionClosed

    try:
        message = json.loads(ws.recv(timeout))
    except (ConnectionClosed, TimeoutError) as exc:
        raise RemoteError(f"the server closed the connection before the session started ({exc})",
                          code="server-ended") from None
    except ValueError:  # bytes, or text that is not JSON
        message = None
    if not isinstance(message, dict):
        raise RemoteError("the server's reply is not a LiveCC message (is it `livecc serve`?)", "check --server",
                          "server-url")
    return message


def _refusal(message: dict, server: str) -> RemoteError:
    error = message.get("error")
    if message.get("type") == "error" and isinstance(error, dict) and error.get("code") == "bad_token":
        return RemoteError(f"{server} refused the token", "pass the server's token with --token "
                           "(or LIVECC_SERVER_TOKEN)", "server-token")
    if message.get("type") == "session.closed" and message.get("reason") == "busy":
        return RemoteError(f"{server} is busy (every session slot is taken)", "try later", "server-busy")
    if message.get("type") == "session.closed":
        return RemoteError(f"{server} refused the session: {message.get('reason')}", code="server-ended")
    return RemoteError(f"{server} answered with {message.get('type')!r}, not a LiveCC session", "check --server",
                       "server-url")
