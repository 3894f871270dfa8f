"""The app's logic without widgets (mu's Editor to the window's Window): one explicit state and
the transitions between states, the model, the run in progress and the file that played to its
end. The window builds widgets, calls the commands here and follows the signals.

One model serves one stream at a time: a Start or a model change that arrives while the model
is busy is queued (`queued`) and carried out when it is free.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import QObject, Signal, Slot

from desktop_app.live_run import STOP_TIMEOUT_S, EndedRun, LiveRun
from desktop_app.model_loader import ModelLoader
from desktop_app.remote_run import EngineChoice, ServerEngine, release
from desktop_app.source_picker import SourceSpec
from engine import LiveCCError, checked_text

log = logging.getLogger(__name__)
START_FIRST = "Start a source first: questions are answered from what the model has seen."


class State(enum.Enum):
    IDLE = "idle"  # nothing uses the model (it may be loaded or not)
    LOADING_MODEL = "loading model"
    RUNNING = "running"
    PAUSED = "paused"
    ENDED = "ended"  # a file played to its end: its session still answers questions
    NARRATING = "narrating"  # File > Narrate to subtitles has the model
    STOPPING = "stopping"  # Stop was asked; the engine thread has not ended yet


ALLOWED: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.LOADING_MODEL, State.RUNNING, State.NARRATING}),
    State.LOADING_MODEL: frozenset({State.IDLE}),
    State.RUNNING: frozenset({State.PAUSED, State.STOPPING, State.IDLE, State.ENDED}),
    State.PAUSED: frozenset({State.RUNNING, State.STOPPING, State.IDLE, State.ENDED}),
    State.STOPPING: frozenset({State.IDLE, State.ENDED}),
    State.ENDED: frozenset({State.IDLE, State.LOADING_MODEL, State.RUNNING, State.NARRATING}),
    State.NARRATING: frozenset({State.IDLE, State.ENDED}),
}


class IllegalTransition(RuntimeError):
    """A command the current state does not allow (the window disables what would cause one)."""


@dataclass(frozen=True)
class Reload:
    """Queued: load the chosen model once the current run, answer or narration has ended."""


_STRAGGLERS: set[QObject] = set()  # threads that outlived their use, kept until they end


def keep_until_finished(owner) -> None:
    """Never destroy a QThread that still runs: hold its owner until its `finished`."""
    owner.setParent(None)
    _STRAGGLERS.add(owner)
    owner.finished.connect(lambda *_: _STRAGGLERS.discard(owner))


def join_stragglers(timeout_s: float) -> None:
    """At exit: give runs (and a narration still writing) that outlived their window a last chance to end."""
    for owner in list(_STRAGGLERS):
        owner.join(timeout_s)


def default_session_factory(loaded, config):
    if isinstance(loaded, ServerEngine):
        return loaded.session(config)  # the model runs on the server: no torch here
    from engine import StreamingSession  # torch loads here, not with the window

    return StreamingSession(loaded, config)


class AppController(QObject):
    """`model_choice()` -> (model name, precision); `session_config(spec)` -> SessionConfig;
    `consent()` -> False while the model may not be downloaded yet (it asks the user itself)."""

    state_changed = Signal(object)  # State
    busy_changed = Signal()  # an answer after the end started or ended: the model is busy or free
    loading = Signal(str, str)  # the model name and the precision asked for: a load started
    load_progress = Signal(str, object)  # message, fraction or None
    model_loaded = Signal(object)  # LoadedModel
    model_failed = Signal(object)  # the exception
    model_dropped = Signal()  # a load ended whose model a newer choice no longer wants
    run_started = Signal(object)  # LiveRun, before its thread starts
    run_ended = Signal(object, bool)  # LiveRun or None, True when its session was kept for questions
    event = Signal(object)  # an engine event of the current run or of the ended file's session
    run_failed = Signal(object)  # the exception that ended a run or an answer
    notice = Signal(str, str, str)  # text, level, key: for the message stack
    status = Signal(str, int)  # a transient status bar message, its time in ms (0: until replaced)

    def __init__(self, model_choice: Callable[[], tuple[str, str]], session_config: Callable,
                 session_factory: Callable | None = None, consent: Callable[[], bool] = lambda: True,
                 loader: ModelLoader | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self._model_choice, self._session_config = model_choice, session_config
        self._session_factory = session_factory or default_session_factory
        self._consent = consent
        self.loader = loader or ModelLoader(self)
        self.loader.progress.connect(self.load_progress)
        self.loader.loaded.connect(self._on_model_loaded)
        self.loader.failed.connect(self._on_model_failed)
        self.state = State.IDLE
        self.loaded = None  # engine.model.LoadedModel once loaded
        self.run: LiveRun | None = None
        self.ended: EndedRun | None = None  # the last file's session, after its end: it still answers
        self.queued: SourceSpec | Reload | None = None  # what to do once the model is free or loaded
        self._narrator = None
        self._closed = False  # shut down: a model or connection that arrives now is let go
        self._unwanted_load = False  # the load in progress is of a choice since replaced by one awaiting consent

    # -- state ------------------------------------------------------------------------------------
    def _move(self, new: State) -> None:
        if new is self.state:
            return
        if new not in ALLOWED[self.state]:
            raise IllegalTransition(f"cannot go from {self.state.value} to {new.value}")
        log.debug("state %s -> %s", self.state.value, new.value)
        self.state = new
        self.state_changed.emit(new)

    def _rest(self) -> None:
        """Back to rest: the ended file's session answers questions, else idle."""
        self._move(State.ENDED if self.ended is not None else State.IDLE)

    def busy_reason(self) -> str | None:
        """Why the model cannot take another stream now (one model, one stream at a time), or None."""
        if self.state is State.NARRATING:
            return "a narration is running: cancel it or wait for it"
        if self.ended is not None and self.ended.answering:
            return "the last question is still being answered"
        if self.run is not None:
            return "a source is playing: stop it first"
        return None

    def narration_blocker(self) -> str | None:
        """Why a file cannot be narrated now, or None."""
        if isinstance(self.loaded, ServerEngine):
            return EngineChoice.NARRATE_HERE
        return "the model is not loaded yet" if self.loaded is None else self.busy_reason()

    @property
    def can_ask(self) -> bool:
        return (self.run is not None and self.state is not State.STOPPING) or self.state is State.ENDED

    @property
    def waiting_for_model(self) -> bool:
        return self.run is None and self.loaded is None and isinstance(self.queued, SourceSpec)

    # -- the model --------------------------------------------------------------------------------
    def load_model(self) -> str | None:
        """Load the chosen model; while the model is busy it is queued: returns why."""
        why = self.busy_reason()
        if why:
            self.queued = Reload()  # never two models at once: this one loads when that ends
            return why
        if isinstance(self.queued, Reload):
            self.queued = None
        self.forget_ended()  # its context belongs to the model that goes
        release(self.loaded)
        self.loaded = None  # a Start now waits for the chosen model, not the one that goes
        if not self._consent():  # the download question is on screen: the model loads once the user agrees
            self._unwanted_load = self.loader.busy  # what still loads is the previous choice: let it go
            if self.state is State.LOADING_MODEL:
                self._move(State.IDLE)
            return None
        self._unwanted_load = False  # the loader drops a superseded load itself
        name, quantize = self._model_choice()
        self._move(State.LOADING_MODEL)
        self.loader.quantize = quantize
        self.loader.load(name)
        self.loading.emit(name, quantize)
        return None

    @Slot(object)
    def _on_model_loaded(self, loaded) -> None:
        if self._closed or self._unwanted_load:  # after closing, or of a choice since replaced: let it go
            self._unwanted_load = False
            release(loaded)
            self.model_dropped.emit()
            return
        self.loaded = loaded
        self._move(State.IDLE)
        self.model_loaded.emit(loaded)
        if isinstance(self.queued, SourceSpec):
            spec, self.queued = self.queued, None
            self.start(spec)

    @Slot(object)
    def _on_model_failed(self, exc) -> None:
        if self._unwanted_load:  # the failure of a model no longer chosen is not the user's concern
            self._unwanted_load = False
            self.model_dropped.emit()
            return
        self.queued = None
        self._move(State.IDLE)
        self.model_failed.emit(exc)

    # -- runs -------------------------------------------------------------------------------------
    def start(self, spec: SourceSpec) -> None:
        """Start watching `spec`; waits (without blocking) for the model or a stopping run."""
        if self.run is not None:
            if not isinstance(self.queued, Reload):  # a model change goes first, as Stop said
                self.queued = spec
            self.stop()
            return
        why = self.busy_reason()
        if why:  # a narration, or an answer after the end, has the model
            self.notice.emit(f"Cannot start {spec.title()} now: {why}.", "info", "start")
            return
        if self.loaded is None:
            self._start_after_load(spec)
            return
        self.forget_ended()
        try:
            run = LiveRun(spec, self._session_factory(self.loaded, self._session_config(spec)), self)
        except LiveCCError as exc:
            self.notice.emit(str(exc), "error", "run")
            return
        self.run = run
        run.event.connect(self._on_event)
        run.errored.connect(self._on_run_error)
        run.finished.connect(self._on_run_finished)
        self._move(State.RUNNING)
        self.run_started.emit(run)
        run.start()

    def _start_after_load(self, spec: SourceSpec) -> None:
        self.queued = spec
        if not self.loader.busy:
            if not self._consent():
                return
            self.load_model()
        name, _ = self._model_choice()
        self.status.emit("Starting as soon as the model is loaded…", 0)
        self.notice.emit(f"Loading the model {name}: {spec.title()} starts when it is ready.", "info", "start")

    def cancel_start(self) -> bool:
        """Forget a Start that waits for the model (its button says so); True when there was one."""
        if not self.waiting_for_model:
            return False
        self.queued = None
        self.status.emit("Start cancelled", 4000)  # replaces "Starting as soon as the model is loaded…"
        self.notice.emit("Start cancelled: press Start when the model is ready.", "info", "start")
        self.busy_changed.emit()
        return True

    def stop(self) -> None:
        """Ask the run to stop; the state is Stopping until its thread has ended."""
        if self.run is None:
            return
        self.run.stop()
        if self.state is not State.STOPPING:
            self._move(State.STOPPING)

    def set_paused(self, paused: bool) -> None:
        if paused and self.state is State.RUNNING:
            self.run.pause()
            self._move(State.PAUSED)
        elif not paused and self.state is State.PAUSED:
            self.run.resume()
            self._move(State.RUNNING)
        elif self.state is State.STOPPING:
            return  # a click that came as the run stops: it ends anyway
        elif self.state not in (State.RUNNING, State.PAUSED):
            raise IllegalTransition(f"cannot {'pause' if paused else 'resume'} while {self.state.value}")

    @Slot(object)
    def _on_event(self, event) -> None:
        if self._is_current(self.sender()):
            self.event.emit(event)

    @Slot(object)
    def _on_run_error(self, exc) -> None:
        if self._is_current(self.sender()):
            self.run_failed.emit(exc)

    def _is_current(self, sender) -> bool:
        return sender is not None and (sender is self.run or sender is self.ended)

    @Slot()
    def _on_run_finished(self) -> None:
        if self.sender() is not self.run:
            return
        self._end_run(keep=True)
        if isinstance(self.queued, Reload):
            self.load_model()
        elif isinstance(self.queued, SourceSpec):
            spec, self.queued = self.queued, None
            self.start(spec)

    def _end_run(self, keep: bool) -> None:
        """The run's thread has ended: a file that reached its end keeps its session for questions."""
        run, self.run = self.run, None
        if run is not None and keep and run.reached_end and run.answers_after_end:
            self.ended = EndedRun(run.session, self)
            self.ended.event.connect(self._on_event)
            self.ended.errored.connect(self._on_run_error)
            self.ended.finished.connect(self._model_freed)
        self._rest()
        self.run_ended.emit(run, self.ended is not None)
        if run is not None and run not in _STRAGGLERS:
            run.deleteLater()

    def forget_ended(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """A new run or model, or closing: the ended file's session (its KV cache and memory) goes."""
        ended, self.ended = self.ended, None
        if ended is None:
            return
        if ended.close(timeout_s):
            ended.deleteLater()
        else:  # mid-step on a slow machine: never destroy a running thread
            log.warning("the answer thread did not stop within %.1f s", timeout_s)
            keep_until_finished(ended)
        if self.state is State.ENDED:
            self._move(State.IDLE)

    # -- questions and the instruction ------------------------------------------------------------
    def ask(self, question: str) -> bool:
        """Ask the run, or the ended file's session; False (and a message) when nothing can answer
        or the question is refused (too long, too many waiting): the run goes on."""
        try:
            return self._ask(checked_text(question, "the question"))
        except LiveCCError as exc:
            self.notice.emit(str(exc), "error", "question")
            return False

    def _ask(self, question: str) -> bool:
        if self.run is not None and self.state is State.STOPPING:
            self.status.emit("Cannot ask now: the run is stopping", 4000)
            return False
        if self.run is not None:
            self.run.ask(question)
            return True
        if self.ended is None:
            self.notice.emit(START_FIRST, "info", "start")
            return False
        why = self.busy_reason()  # an answer still being written, or a narration
        if why:
            self.status.emit(f"Cannot ask now: {why}", 4000)
            return False
        self.ended.ask(question)
        self.busy_changed.emit()
        return True

    def set_query(self, text: str) -> bool:
        if self.run is None:
            return False
        try:
            self.run.set_query(text)
        except LiveCCError as exc:
            self.notice.emit(str(exc), "error", "question")
            return False
        return True

    # -- narration --------------------------------------------------------------------------------
    def attach_narrator(self, narrator) -> None:
        """The File > Narrate controller: while it narrates, it has the model."""
        self._narrator = narrator
        narrator.busy_changed.connect(self.set_narrating)

    @Slot(bool)
    def set_narrating(self, busy: bool) -> None:
        if busy:
            self._move(State.NARRATING)
        elif self.state is State.NARRATING:
            self._rest()
            self._model_freed()

    def _model_freed(self, *_) -> None:
        """A narration or an answer after the end ended: a model chosen meanwhile loads now."""
        self.busy_changed.emit()
        if isinstance(self.queued, Reload) and self.busy_reason() is None:
            self.load_model()

    # -- closing ----------------------------------------------------------------------------------
    def shutdown(self, timeout_s: float = STOP_TIMEOUT_S, while_stopping: Callable[[float], object] = lambda _: None
                 ) -> bool:
        """Stop the narration, the ended session and the run, and join their threads within `timeout_s`
        (`while_stopping(seconds)` runs while the engine winds down); False when one was left to end."""
        self.queued = None
        self._closed = True
        release(self.loaded)
        started = time.monotonic()
        narration_ended = self._shutdown_narration(timeout_s / 4)
        self.forget_ended(timeout_s / 4)
        run = self.run
        if run is not None:
            run.stop()
        while_stopping(timeout_s / 2)
        if run is None:
            return narration_ended
        joined = run.join(max(0.1, timeout_s - (time.monotonic() - started)))
        if not joined:  # mid-step on a slow machine: let it finish on its own, never destroy it running
            log.warning("the engine thread did not stop within %.1f s", timeout_s)
            keep_until_finished(run)
        self._end_run(keep=False)  # closing: no questions after the end any more
        return joined and narration_ended

    def _shutdown_narration(self, timeout_s: float) -> bool:
        narrator = self._narrator
        narration = narrator.narration if narrator is not None else None
        if narration is None:
            return True
        if narrator.shutdown(timeout_s):
            return True
        log.warning("the narration did not stop within %.1f s", timeout_s)  # it may finish its cue
        keep_until_finished(narration)
        return False
