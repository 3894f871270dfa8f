"""A replica: one loaded model and the sessions it holds now, up to its capacity."""

from __future__ import annotations

import itertools
import logging
import threading

from engine.errors import LiveCCError

from .settings import ServerConfigError, ServerSettings
from .speech import server_voice

LOG = logging.getLogger(__name__)


class Replica:
    """Holds the model and one engine core (engine/core) whose K session slabs are this replica's
    sessions, batched together; hands out the slots."""

    def __init__(self, settings: ServerSettings, loaded=None, name: str = "local", voice=None):
        """`voice`: a server.speech.ReplicaVoice (None: the one `settings.speech` names, if any)."""
        from engine.core import EngineCore
        from engine.defaults import KV_BUDGET
        from engine.model.loading import load_model

        self.settings = settings
        self.name = name  # where a session runs, as the operator sees it (on Ray Serve: the replica's actor)
        self.loaded = loaded if loaded is not None else load_model(settings.model, device=settings.device)
        self.voice = voice if voice is not None else server_voice(settings.speech)
        budget = settings.kv_budget or KV_BUDGET
        plan = getattr(self.loaded, "plan", None)
        if plan is not None and settings.kv_budget is None:  # the memory plan may have cut the default to fit the card
            budget = min(budget, plan.kv_budget)
        try:
            self.core = EngineCore(self.loaded, sessions=settings.sessions, kv_budget=budget)
        except LiveCCError as exc:
            if self.voice is not None:
                self.voice.close()
            raise ServerConfigError(f"--sessions-per-replica {settings.sessions} of {budget} KV tokens: "
                                    f"{exc}") from None
        self.core.start()
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

    @property
    def kv_budget(self) -> int:
        """Tokens of KV a session holds here: the most a client may ask for, and what it gets by default."""
        return self.core.kv_budget

    def base_config(self):
        """The session config a client starts from: the engine's defaults with this server's budget
        and video window (`livecc serve --kv-budget`, `--video-window`)."""
        from engine.defaults import MAX_WAITING_QUESTIONS, VIDEO_WINDOW_S
        from engine.session.session import SessionConfig

        return SessionConfig(max_waiting_questions=MAX_WAITING_QUESTIONS,  # a client cannot queue without end
                             kv_budget=self.kv_budget, video_window_s=self.settings.video_window_s or VIDEO_WINDOW_S)

    def open(self, buffer, config, on_event, on_end):
        """A session of this replica's engine core reading `buffer` (engine/core/engine.py `open`)."""
        return self.core.open(buffer, config, on_event, on_end)

    def close(self) -> None:
        self.core.close()
        if self.voice is not None:
            self.voice.close()
