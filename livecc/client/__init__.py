"""Clients of `livecc serve`: a remote session over one WebSocket, and file narration and questions through it.
They import `engine`'s light modules (events, sources, writers) and never torch, so a client-only
install (no engine extra) can run them."""

from engine._exports import lazy_exports

_EXPORTS = {"RemoteSession": ".session", "RemoteError": ".session", "remote_narrate": ".narrate",
            "remote_ask": ".ask", "RemoteStream": ".live", "ServerAddress": ".live"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
