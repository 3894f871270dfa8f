"""The gate in front of the app inside Ray Serve's HTTP proxy (Serve imports `proxy_middlewares`
through RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH, set by `ray_app.init_ray`).

A replica takes exactly its K sessions (`max_ongoing_requests`), so Serve never sends a session to a
full replica and finds a free slot wherever there is one; with every slot taken it would queue the
connection until one frees. The gate turns that wait into the protocol's busy close after PLACE_S,
and a session whose replica dies (Serve ends the call without the app's close) into an `error`
event that says so, then close 1011.
"""

from __future__ import annotations

import asyncio
import json
import logging

from livecc import protocol as wire

LOG = logging.getLogger(__name__)
CALLBACK = "livecc.server.gate:proxy_middlewares"
PLACE_S = 1.0  # Serve places a connection on a free slot in milliseconds; this long means none is free
RETRY_AFTER_S = 5
REPLICA_LOST = ("replica_lost", "the server's replica holding this session stopped (it died or was removed): "
                "start the session again")
_ANSWERS = ("websocket.accept", "websocket.close", "websocket.http.response.start", "http.response.start")


def proxy_middlewares() -> list:
    """Serve's proxy callback: the middlewares its HTTP server runs."""
    from starlette.middleware import Middleware

    return [Middleware(PlacementGate)]


class PlacementGate:
    """ASGI middleware: a request Serve has not placed on a replica within `place_s` is answered here
    (a session: busy; HTTP: 503), and a session Serve drops is told why."""

    def __init__(self, app, place_s: float = PLACE_S):
        self.app, self.place_s = app, place_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        passage = Passage(receive, send)
        inner = asyncio.ensure_future(self.app(scope, passage.receive, passage.send))
        if not await passage.answered_within(inner, self.place_s):
            await passage.refuse(inner, scope["type"])
            return
        try:
            await inner
        finally:
            if scope["type"] == "websocket" and passage.dropped():
                await passage.tell_lost()


class Passage:
    """One request's messages through the gate: whether the app answered, accepted, closed, and whether
    the client left. Once the gate has answered itself, the app's late messages are dropped."""

    def __init__(self, receive, send):
        self._receive, self._send = receive, send
        self.answered = asyncio.Event()
        self.accepted = self.closed = self.client_left = self.refused = False

    async def receive(self) -> dict:
        message = await self._receive()
        self.client_left |= message["type"] in ("websocket.disconnect", "http.disconnect")
        return message

    async def send(self, message: dict) -> None:
        if self.refused:
            return
        kind = message["type"]
        self.accepted |= kind == "websocket.accept"
        self.closed |= kind == "websocket.close"
        if kind in _ANSWERS:
            self.answered.set()
        await self._send(message)

    async def answered_within(self, inner: asyncio.Future, timeout: float) -> bool:
        """False when the app neither answered nor ended within `timeout` (Serve is still placing it)."""
        answered = asyncio.ensure_future(self.answered.wait())
        done, _ = await asyncio.wait({inner, answered}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        answered.cancel()
        return bool(done)

    def dropped(self) -> bool:
        """The session was accepted, and ended with neither the app's close nor the client leaving."""
        return self.accepted and not self.closed and not self.client_left

    async def refuse(self, inner: asyncio.Future, kind: str) -> None:
        self.refused = True
        inner.cancel()  # Serve takes the request out of its queue
        try:
            await inner
        except asyncio.CancelledError:
            pass
        if kind == "websocket":
            await self._deliver({"type": "websocket.accept"}, _text(wire.closed("busy")),
                                {"type": "websocket.close", "code": wire.TRY_LATER, "reason": wire.BUSY_REASON})
        else:
            body = json.dumps({"status": "busy", "detail": "every session slot is taken: try later"}).encode()
            await self._deliver({"type": "http.response.start", "status": 503,
                                 "headers": [(b"content-type", b"application/json"),
                                             (b"retry-after", str(RETRY_AFTER_S).encode())]},
                                {"type": "http.response.body", "body": body})

    async def tell_lost(self) -> None:
        LOG.warning("a session's replica stopped under it")
        await self._deliver(_text(wire.error(*REPLICA_LOST, kind="server_error")),
                            {"type": "websocket.close", "code": wire.SERVER_ERROR, "reason": "replica lost"})

    async def _deliver(self, *messages: dict) -> None:
        try:
            for message in messages:
                await self._send(message)
        except Exception:  # the client left first: nothing to tell it
            LOG.debug("gate: client gone", exc_info=True)


def _text(message: dict) -> dict:
    return {"type": "websocket.send", "text": wire.dumps(message)}
