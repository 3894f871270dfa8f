"""The ASGI app: a WebSocket route per session, GET /healthz and GET /v1/models. The same app runs
under Ray Serve (livecc/server/ray_app.py) and under uvicorn alone (`serve_uvicorn`, one process)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, HTTPException, Request, WebSocket

from livecc import protocol as wire

from .connection import Connection
from .settings import bearer_token

LOG = logging.getLogger(__name__)
DRAIN_S = 20.0  # sessions get this long to say goodbye; the process exits within 30 s of SIGTERM


class Hub:
    """The replica's live connections, so a drain can tell each one "server stopping"."""

    def __init__(self, replica):
        self.replica = replica
        self.stopping = asyncio.Event()
        self.connections: set[Connection] = set()
        self.idle = asyncio.Event()  # set while no session is open
        self.idle.set()

    async def serve(self, ws: WebSocket) -> None:
        if self.stopping.is_set():
            await ws.accept()
            await ws.send_text(wire.dumps(wire.closed(wire.STOPPING_REASON)))
            await ws.close(wire.GOING_AWAY, wire.STOPPING_REASON)
            return
        connection = Connection(ws, self.replica, self.stopping)
        self.connections.add(connection)
        self.idle.clear()
        try:
            await connection.serve()
        finally:
            self.connections.discard(connection)
            if not self.connections:
                self.idle.set()

    async def drain(self, timeout: float = DRAIN_S) -> None:
        """Tell every session the server is stopping and wait (at most `timeout`) for them to close."""
        self.stopping.set()
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
        except asyncio.TimeoutError:
            LOG.warning("%d sessions did not close in %.0f s", len(self.connections), timeout)


def create_app(replica) -> FastAPI:
    app = FastAPI(title="livecc serve", version=wire.PROTOCOL)
    hub = Hub(replica)
    app.state.hub = hub

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "sessions": replica.active, "capacity": replica.settings.sessions}

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        """The model (its name may be a path on the server): with a token set, for its holders only."""
        if not replica.settings.allows(bearer_token(request.headers)):
            raise HTTPException(401, "wrong or missing token: pass the server's --token",
                                headers={"WWW-Authenticate": "Bearer"})
        return {"object": "list", "data": [{"id": replica.model_name, "object": "model", "owned_by": "livecc",
                                            "protocol": wire.PROTOCOL}]}

    @app.websocket(wire.PATH)
    async def realtime(ws: WebSocket) -> None:
        await hub.serve(ws)

    return app
