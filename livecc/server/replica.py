"""A replica: one loaded model and the sessions it holds now, up to its capacity."""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import replace

from .settings import ServerConfigError, ServerSettings

LOG = logging.getLogger(__name__)


class Replica:
    """Holds the model; hands out session slots. Until the batched engine core lands, a model whose
    sessions share one runner (the GPU's fast runner) serves one session at a time; on the CPU each
    session gets its own eager runner, so K sessions share the weights."""

    def __init__(self, settings: ServerSettings, loaded=None, name: str = "local"):
        from engine.model.loading import load_model
        from engine.runtime import shares_runner

        self.settings = settings
        self.name = name  # where a session runs, as the operator sees it (on Ray Serve: the replica's actor)
        self.loaded = loaded if loaded is not None else load_model(settings.model, device=settings.device)
        if settings.sessions > 1 and shares_runner(self.loaded.model):
            raise ServerConfigError(f"--sessions-per-replica {settings.sessions}: a GPU replica holds one session "
                                    "until the batched engine core lands; use 1 and more --replicas")
        self._lock = threading.Lock()
        self._active: set[int] = set()
        self._ids = itertools.count(1)

    @property
    def model_name(self) -> str:
        return self.settings.model

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)

    def admit(self) -> int | None:
        """A slot id, or None when the replica is full (the client is refused, not queued)."""
        with self._lock:
            if len(self._active) >= self.settings.sessions:
                return None
            slot = next(self._ids)
            self._active.add(slot)
            return slot

    def release(self, slot: int) -> None:
        with self._lock:
            self._active.discard(slot)

    def base_config(self):
        """The session config a client starts from: the engine's defaults within this server's budget."""
        from engine.session.session import SessionConfig

        config = SessionConfig()
        budget = self.settings.kv_budget
        return replace(config, kv_budget=budget) if budget is not None and budget < config.kv_budget else config

    def new_session(self, config):
        from engine.session.session import StreamingSession

        return StreamingSession(self.loaded, config)
