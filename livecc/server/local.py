"""The ASGI app under uvicorn in one process (no Ray): what the GPU machine runs, and the tests.
SIGTERM or SIGINT drains first: every session gets "server stopping", then uvicorn exits."""

from __future__ import annotations

import asyncio

import uvicorn

from .app import create_app


class DrainingServer(uvicorn.Server):
    """uvicorn, whose first stop signal drains the sessions before the usual shutdown; a second
    signal stops at once."""

    def __init__(self, config: uvicorn.Config, hub, on_ready=None, replica=None):
        super().__init__(config)
        self.hub, self.replica = hub, replica
        self.on_ready = on_ready  # called with the bound port once the server listens
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.on_ready is not None and self.started:
            self.on_ready(self.servers[0].sockets[0].getsockname()[1])

    async def shutdown(self, sockets=None) -> None:
        await super().shutdown(sockets)
        if self.replica is not None:
            await asyncio.to_thread(self.replica.close)  # the engine core's thread ends with the server

    def handle_exit(self, sig, frame) -> None:
        if self._draining or self._loop is None:
            super().handle_exit(sig, frame)
            return
        self._draining = True
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain_then_exit()))

    async def _drain_then_exit(self) -> None:
        await self.hub.drain()
        self.should_exit = True


def uvicorn_server(replica, host: str, port: int, ssl_certfile=None, ssl_keyfile=None, on_ready=None) -> DrainingServer:
    app = create_app(replica)
    limit = replica.settings.max_message_bytes
    # The socket layer allows twice the app's limit, so an oversized message gets the app's error event.
    config = uvicorn.Config(app, host=host, port=port, ws_max_size=2 * limit + 1024, log_level="warning",
                            timeout_graceful_shutdown=5, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    return DrainingServer(config, app.state.hub, on_ready, replica)
