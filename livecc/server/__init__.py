"""`livecc serve`: the engine behind a WebSocket (docs/protocol.md). `create_app` is the ASGI app
(FastAPI); `ray_app` deploys it on Ray Serve, `local` runs it under uvicorn alone."""

from engine._exports import lazy_exports

_EXPORTS = {"create_app": ".app", "Replica": ".replica", "ServerSettings": ".settings", "check_bind": ".settings"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
