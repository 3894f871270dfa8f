"""The AppController without widgets: its states and the transitions between them, with a fake
model loader, a fake source and a fake session whose steps the test drives (no sleeps)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from PySide6.QtCore import QObject, Signal

from desktop_app.controller import ALLOWED, AppController, IllegalTransition, Reload, State
from desktop_app.source_picker import SourceSpec
from engine import Answer, Commentary, StreamEnded

WAIT_MS = 20_000


class FakeLoader(QObject):
    progress = Signal(str, object)
    loaded = Signal(object)
    failed = Signal(object)

    def __init__(self):
        super().__init__()
        self.busy, self.quantize, self.names = False, "auto", []

    def load(self, name: str) -> None:
        self.busy = True
        self.names.append((name, self.quantize))

    def finish(self, model="a model") -> None:
        self.busy = False
        self.loaded.emit(model)

    def join(self, timeout_s: float) -> bool:
        return True


class FakeSource:
    def start(self, buffer) -> None:
        self.paused = False

    def stop(self, timeout_s: float = 0) -> None:
        pass

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False


@dataclass(frozen=True)
class FakeSpec(SourceSpec):
    def make_source(self):
        return FakeSource()


class FakeSession:
    """run() yields one comment, then waits until stopped or told to reach the end of the file."""

    def __init__(self):
        self.release = threading.Event()
        self.reach_end = False
        self.asked: list[str] = []

    def run(self, buffer):
        yield Commentary(0.0, 1.0, "a comment", 0)
        self.release.wait(WAIT_MS / 1000)
        if self.reach_end:
            yield StreamEnded(1.0)

    def end(self) -> None:
        self.reach_end = True
        self.release.set()

    def stop(self) -> None:
        self.release.set()

    def ask(self, question: str) -> None:
        self.asked.append(question)

    def answer(self, question: str):
        self.asked.append(question)
        yield Answer(question, "an answer", True, 1.0)


class Harness:
    def __init__(self, consent: bool = True):
        self.loader = FakeLoader()
        self.sessions: list[FakeSession] = []
        self.consent = consent  # whether the user agreed to download the model (a test may change it)
        self.controller = AppController(lambda: ("tiny", "int8"), lambda spec: None, self._session,
                                        consent=lambda: self.consent, loader=self.loader)
        self.states: list[State] = []
        self.notices: list[str] = []
        self.controller.state_changed.connect(self.states.append)
        self.controller.notice.connect(lambda text, level, key: self.notices.append(text))

    def _session(self, loaded, config) -> FakeSession:
        self.sessions.append(FakeSession())
        return self.sessions[-1]

    def loaded(self) -> AppController:
        self.controller.load_model()
        self.loader.finish()
        self.states.clear()
        return self.controller


SPEC = FakeSpec("file", path="clip.mp4", label="clip.mp4")


@pytest.fixture
def harness(qapp):
    made = []

    def make(**kwargs) -> Harness:
        made.append(Harness(**kwargs))
        return made[-1]

    yield make
    for h in made:
        h.controller.shutdown(5.0)


def test_every_state_has_its_transitions_and_idle_is_the_start(harness):
    assert set(ALLOWED) == set(State)
    assert all(state not in ALLOWED[state] for state in State)  # a move to the same state is no transition
    assert harness().controller.state is State.IDLE


def test_load_then_start_then_stop(harness, qtbot):
    h = harness()
    c = h.controller
    assert c.load_model() is None and c.state is State.LOADING_MODEL
    assert h.loader.names == [("tiny", "int8")]  # the model with its precision
    h.loader.finish("model")
    assert c.state is State.IDLE and c.loaded == "model"
    with qtbot.waitSignal(c.event, timeout=WAIT_MS):
        c.start(SPEC)
    assert c.state is State.RUNNING and c.can_ask
    with qtbot.waitSignal(c.run_ended, timeout=WAIT_MS) as ended:
        c.stop()
        assert c.state is State.STOPPING
    assert ended.args[1] is False  # stopped: no session kept for questions
    assert h.states == [State.LOADING_MODEL, State.IDLE, State.RUNNING, State.STOPPING, State.IDLE]
    assert c.run is None and not c.can_ask


def test_start_before_the_model_queues_it_and_starts_once_loaded(harness, qtbot):
    h = harness()
    c = h.controller
    c.start(SPEC)
    assert c.state is State.LOADING_MODEL and c.waiting_for_model and c.queued == SPEC
    with qtbot.waitSignal(c.run_started, timeout=WAIT_MS):
        h.loader.finish()
    assert c.state is State.RUNNING and c.queued is None
    assert h.states == [State.LOADING_MODEL, State.IDLE, State.RUNNING]


def test_no_consent_no_download(harness):
    h = harness(consent=False)
    h.controller.start(SPEC)
    assert h.controller.state is State.IDLE and h.loader.names == []  # the consent question is on screen
    assert h.controller.waiting_for_model


def test_pause_and_resume_and_illegal_pauses(harness, qtbot):
    h = harness()
    c = h.loaded()
    with pytest.raises(IllegalTransition):
        c.set_paused(True)  # nothing runs
    with qtbot.waitSignal(c.event, timeout=WAIT_MS):
        c.start(SPEC)
    c.set_paused(True)
    assert c.state is State.PAUSED and c.run.source.paused
    c.set_paused(True)  # again: already paused, nothing moves
    c.set_paused(False)
    assert c.state is State.RUNNING and not c.run.source.paused
    assert h.states == [State.RUNNING, State.PAUSED, State.RUNNING]


def test_illegal_moves_raise_and_leave_the_state_alone(harness):
    c = harness().controller
    for target in (State.PAUSED, State.STOPPING, State.ENDED):
        with pytest.raises(IllegalTransition, match=f"idle to {target.value}"):
            c._move(target)
    assert c.state is State.IDLE
    c.load_model()
    with pytest.raises(IllegalTransition):
        c._move(State.RUNNING)  # a run starts from rest, once the model has loaded
    with pytest.raises(IllegalTransition):
        c.set_narrating(True)
    assert c.state is State.LOADING_MODEL


def test_a_file_that_ends_keeps_answering_then_a_new_start_forgets_it(harness, qtbot):
    h = harness()
    c = h.loaded()
    with qtbot.waitSignal(c.event, timeout=WAIT_MS):
        c.start(SPEC)
    with qtbot.waitSignal(c.run_ended, timeout=WAIT_MS) as ended:
        h.sessions[-1].end()
    assert ended.args[1] is True and c.state is State.ENDED and c.can_ask
    answers = []
    c.event.connect(lambda e: answers.append(e) if isinstance(e, Answer) else None)
    with qtbot.waitSignal(c.ended.finished, timeout=WAIT_MS):
        assert c.ask("what happened?")
    assert [a.text for a in answers] == ["an answer"]
    with qtbot.waitSignal(c.run_started, timeout=WAIT_MS):
        c.start(SPEC)
    assert c.ended is None and c.state is State.RUNNING
    assert h.states == [State.RUNNING, State.ENDED, State.IDLE, State.RUNNING]


def test_narration_has_the_model_and_a_model_change_waits_for_it(harness):
    h = harness()
    c = h.loaded()
    c.set_narrating(True)
    assert c.state is State.NARRATING and not c.can_ask
    c.start(SPEC)
    assert c.run is None and "a narration is running" in h.notices[-1]
    assert "narration is running" in c.load_model() and c.queued == Reload()
    c.set_narrating(False)  # the queued model loads now
    assert c.state is State.LOADING_MODEL and c.loaded is None and c.queued is None
    assert h.states == [State.NARRATING, State.IDLE, State.LOADING_MODEL]


def test_a_model_change_while_running_stops_then_loads_and_no_start_jumps_the_queue(harness, qtbot):
    h = harness()
    c = h.loaded()
    with qtbot.waitSignal(c.event, timeout=WAIT_MS):
        c.start(SPEC)
    assert "stop it first" in c.load_model()
    with qtbot.waitSignal(c.loading, timeout=WAIT_MS):
        c.start(SPEC)  # a Start meanwhile does not replace the model change
        assert c.state is State.STOPPING and c.queued == Reload()
    assert c.state is State.LOADING_MODEL and c.queued is None and len(h.loader.names) == 2
    assert h.states == [State.RUNNING, State.STOPPING, State.IDLE, State.LOADING_MODEL]


def test_ask_with_nothing_to_answer_says_start_first(harness):
    h = harness()
    assert not h.controller.ask("anyone?")
    assert h.notices[-1].startswith("Start a source first")


def test_a_question_a_session_cannot_take_is_a_message(harness):
    """A paste of 5000 characters was queued, and the tokenizer then failed on the engine thread."""
    h = harness()
    assert not h.controller.ask("x" * 5000)
    assert "5000 characters, over 4000; shorten it" in h.notices[-1]


def test_a_superseded_load_is_discarded_and_the_newest_is_delivered(qtbot):
    """A second model chosen while the first loads: the first's result is handed to `discard` (a
    server's checked connection gives its slot back), the second's is the one loaded."""
    from desktop_app.model_loader import ModelLoader

    first_started, release_first = threading.Event(), threading.Event()

    def load(name, report):
        if name == "first":
            first_started.set()
            release_first.wait(WAIT_MS / 1000)
        return f"engine {name}"

    discarded, failed = [], []
    loader = ModelLoader(load_fn=load, discard=discarded.append)
    loader.failed.connect(failed.append)
    with qtbot.waitSignal(loader.loaded, timeout=WAIT_MS) as delivered:
        loader.load("first")
        assert first_started.wait(WAIT_MS / 1000)
        loader.load("second")  # queued behind the load that cannot be interrupted
        release_first.set()
    assert delivered.args == ["engine second"] and discarded == ["engine first"] and not failed
    assert loader.join(WAIT_MS / 1000)


class FakeConnection:
    """A server's checked connection (livecc.client RemoteSession) as ServerEngine holds it."""

    created = {"session": {"model": "tiny", "replica": "r0"}}

    def __init__(self):
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_closing_gives_back_a_server_connection_even_one_that_arrives_after(harness):
    from desktop_app.remote_run import ServerEngine
    from livecc.client.live import ServerAddress

    address = ServerAddress("ws://127.0.0.1:8000")
    h = harness()
    checked = FakeConnection()
    h.controller.load_model()
    h.loader.finish(ServerEngine(address, checked))
    assert not checked.closed  # kept for the first Start
    h.controller.shutdown(5.0)
    assert checked.closed

    h = harness()
    late = FakeConnection()
    h.controller.load_model()
    h.controller.shutdown(5.0)  # the window closes while the app is still connecting
    h.loader.finish(ServerEngine(address, late))
    assert late.closed and h.controller.loaded is None


def test_no_model_loads_without_consent_however_it_is_asked_for(harness):
    """Settings > OK with another model or precision asks the controller to load: without consent
    (the download question is on screen) nothing loads, and a Start waits for the model chosen."""
    h = harness()
    c = h.loaded()
    h.consent = False  # Settings chose a model that is not downloaded yet
    assert c.load_model() is None
    assert h.loader.names == [("tiny", "int8")] and c.state is State.IDLE and c.loaded is None
    c.start(SPEC)
    assert c.waiting_for_model and h.loader.names == [("tiny", "int8")]


def test_a_load_in_progress_is_let_go_when_a_model_awaiting_consent_replaces_it(harness):
    h = harness()
    c = h.controller
    dropped = []
    c.model_dropped.connect(lambda: dropped.append(True))
    c.load_model()  # e.g. the start-up load of the model chosen before
    assert c.state is State.LOADING_MODEL
    h.consent = False  # Settings chose a model that is not downloaded yet
    assert c.load_model() is None and c.state is State.IDLE
    h.loader.finish("the model chosen before")  # arrives after it was replaced: not loaded, not started
    assert c.loaded is None and dropped == [True] and c.state is State.IDLE


def test_a_start_that_waits_for_the_model_can_be_cancelled(harness, qtbot):
    h = harness()
    c = h.controller
    c.start(SPEC)
    assert c.waiting_for_model and c.state is State.LOADING_MODEL
    assert c.cancel_start() and not c.waiting_for_model and c.queued is None
    assert h.notices[-1].startswith("Start cancelled")
    h.loader.finish()  # the model arrives: nothing starts by itself
    assert c.state is State.IDLE and c.run is None
    assert not c.cancel_start()  # nothing waits any more


def test_while_stopping_a_pause_is_ignored_and_a_question_refused(harness, qtbot):
    h = harness()
    c = h.loaded()
    with qtbot.waitSignal(c.event, timeout=WAIT_MS):
        c.start(SPEC)
    c.stop()  # the engine thread's end reaches the GUI thread only through its event loop
    assert c.state is State.STOPPING
    c.set_paused(True)  # a click that came as the run stops: no IllegalTransition
    assert c.state is State.STOPPING and not c.can_ask
    assert c.ask("where?") is False and h.sessions[-1].asked == []
    with qtbot.waitSignal(c.run_ended, timeout=WAIT_MS):
        pass
    assert c.state is State.IDLE
