"""Speech in the desktop app: builds the synthesizer off the GUI thread, runs one SpeechPlayer
per run and feeds it the engine's events; Qt only at this edge (`tts` is Qt-free).

Lifetimes: the synthesizer (ChatTTS can take a minute to load) lives as long as its voice
setting; the player lives from Start until the next Start, Stop or closing the window, because
its video clock only moves forward and a new run starts again at 0 s. A run that ends on its
own keeps its player, so the last phrase is not cut off. Over a server (Settings > Engine) the
server's voice speaks: the synthesizer is a tts.received.ReceivedVoice, fed with the audio that
comes among the events, and nothing is loaded here.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, replace

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from desktop_app.transcript import clean_text
from desktop_app.workers import BackgroundTask, user_message
from engine import Answer, Commentary, LiveCCError, Stats
from tts.received import NoVoice, ReceivedAudio, play_received
from tts.synth import SpeechError, Synthesizer

log = logging.getLogger(__name__)
POLL_MS = 250  # the status bar follows the player's state at 4 Hz
PLAYER_STOP_S = 1.0  # leaves the engine its share of the window's 2 s closing budget
ENGINE_NAMES = {"chattts": "ChatTTS", "espeak": "espeak-ng", "null": "silent", "server": "server"}
APP_DEVICE_FIX = "choose another Audio output in Settings, or turn Speak off"
APP_VOICE_FIX = "choose another Voice in Settings, or turn Speak off"
# The app's own fix for each kind of speech error (their `fix` names CLI flags).
APP_FIXES = {"audio-device": APP_DEVICE_FIX, "voice": APP_VOICE_FIX, "bad-setting": "fix or unset it, then restart",
             "audio-library": "install PortAudio (`sudo apt install libportaudio2`), or turn Speak off",
             "server-speech": "start the server with `livecc serve --speech chattts`, or turn Speak off"}


def app_wording(error: BaseException) -> str:
    """The error in the app's words: the problem, then the app's fix for its code."""
    return error.worded(APP_FIXES) if isinstance(error, LiveCCError) else user_message(error)


def speech_notice(error: BaseException | None, fallback: BaseException | None) -> tuple[str, str]:
    """(a short banner in the app's words, the details) for a speech problem; `fallback` is why
    ChatTTS gave way to espeak-ng."""
    details = "\n".join(app_wording(e) for e in (error, fallback) if e is not None)
    if error is None:
        return "ChatTTS could not load: speaking with espeak-ng instead.", details
    problem = error.problem if isinstance(error, LiveCCError) else str(error)
    gist = re.split(r"[:;(]", problem, maxsplit=1)[0].strip()
    fix = APP_FIXES.get(getattr(error, "code", ""), APP_VOICE_FIX)
    return f"Speech is off: {gist}; {fix}.", details


@dataclass(frozen=True)
class SpeechConfig:
    """What Settings say about speech; a change of voice or device rebuilds speech at once."""

    enabled: bool = False
    voice: str = ""  # tts.parse_voice forms; "" = ChatTTS with its default speaker
    device: str = ""  # PortAudio output by index or (part of its) name; "" = system default
    server: bool = False  # the model runs on a server, whose voice speaks: nothing to load here

    def output(self) -> int | str | None:
        text = self.device.strip()
        return int(text) if text.isdigit() else (text or None)


@dataclass(frozen=True)
class Built:
    synth: Synthesizer
    fallback: SpeechError | None  # why ChatTTS fell back to espeak-ng
    device_error: SpeechError | None  # the synthesizer works but there is nothing to play it on


def build_synthesizer(config: SpeechConfig, cancelled: threading.Event) -> Built | None:
    """Runs on a worker thread: load the voice, check the output device. None if cancelled."""
    from tts.factory import SynthChoice, make_synthesizer, parse_voice
    from tts.player import resolve_output_device
    from tts.received import ReceivedVoice

    choice = SynthChoice(ReceivedVoice()) if config.server else make_synthesizer(*parse_voice(config.voice))
    if cancelled.is_set():  # the window closed or the voice changed during a long load
        choice.synth.close()
        return None
    try:
        resolve_output_device(config.output())
        device_error = None
    except SpeechError as error:
        device_error = error
    return Built(choice.synth, choice.error, device_error)


class SpeechController(QObject):
    """The window's one handle on speech; every method runs on the GUI thread. Feeding events returns
    at once (SpeechPlayer's methods only take a short lock and enqueue); stopping a player waits
    for its worker for up to 1 s, and loading a voice runs on a background thread."""

    state_changed = Signal(str)  # "off" | "loading…" | "ready" | player states | "error: ..."
    voice_lag_changed = Signal(str)  # "Voice +0.8 s": how far speech starts behind its video; "Voice –"
    message = Signal(str, str, str)  # text, message level, details

    def __init__(self, config: SpeechConfig = SpeechConfig(), parent: QObject | None = None):
        super().__init__(parent)
        self.config = config
        self.synth: Synthesizer | None = None
        self.player = None  # tts.SpeechPlayer while a run (or its last phrase) speaks
        self._task: BackgroundTask | None = None
        self._cancelled = threading.Event()
        self._rebuild = False  # settings changed while loading: load again when it ends
        self._running = False  # a run is on: the player should exist
        self._session = None  # the run's session, while it runs
        self._error: str | None = None
        self._shown = ""
        self._shown_lag = ""
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._poll)
        self._timer.start(POLL_MS)
        if config.enabled:
            self._load()

    # -- settings and the toggle -------------------------------------------------------------
    def configure(self, config: SpeechConfig) -> None:
        """New settings: a new voice or device replaces the synthesizer and the player now."""
        old, self.config = self.config, config
        if (config.voice, config.device, config.server) != (old.voice, old.device, old.server):
            self._stop_player()
            self._close_synth()
            self._error = None
        self.set_enabled(config.enabled)

    def set_enabled(self, enabled: bool) -> None:
        """Off mutes (the synthesizer stays loaded so on is instant); on loads what is missing. A run on
        a server is told: its voice speaks only while Speak is on."""
        tell_server = getattr(self._session, "set_speech", None)
        if tell_server is not None and enabled != self.config.enabled:
            tell_server(enabled)
        self.config = replace(self.config, enabled=enabled)
        if self.player is not None:
            self.player.mute(not enabled)
        if enabled and self.synth is None and self._task is None:
            self._load()
        elif enabled:
            self._ensure_player()  # no-op while loading: the load ends with it
        self._poll()

    # -- runs ----------------------------------------------------------------------------------
    def begin_run(self, session=None) -> None:
        """A run starts at video time 0: a fresh player (a retry, too, after a device error).
        `session`: the run's session (a server's is told when Speak changes)."""
        self._stop_player()
        self._running, self._session = True, session
        if self.config.enabled and self.synth is None and self._task is None:
            self._load()  # also a retry after a failed load
        self._ensure_player()

    def end_run(self, silence: bool, answers_go_on: bool = False) -> None:
        """The run ended; `silence` (the user pressed Stop) also cuts off what is being said.
        `answers_go_on`: a file's session kept for questions, whose answers are spoken too."""
        self._running, self._session = answers_go_on, None
        if silence:
            self._stop_player()
        self._poll()

    @Slot(object)
    def on_event(self, event) -> None:
        if isinstance(event, NoVoice) and self.config.enabled:
            self._device_failed(event.error)
            self._poll()
            return
        player = self.player
        if player is None or not self._running:
            return
        if isinstance(event, ReceivedAudio):
            play_received(player, event)
        elif isinstance(event, Stats):
            player.set_video_time(event.end)
        elif self.config.server:
            return  # the server's voice says the text: its audio comes as ReceivedAudio
        elif isinstance(event, Commentary):
            player.say_commentary(clean_text(event.text), event.start, event.end)
        elif isinstance(event, Answer):
            player.say_answer(clean_text(event.text), event.done, key=(event.question, event.time))

    # -- state ---------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        if not self.config.enabled and self.player is None:
            return "off"
        if self._error is not None:
            return f"error: {self._error}"
        if self._task is not None:
            return "loading…"
        if self.player is not None:
            return self.player.state
        return "ready" if self.synth is not None else "off"

    @property
    def engine_name(self) -> str:
        return ENGINE_NAMES.get(self.synth.name, self.synth.name) if self.synth is not None else ""

    @property
    def voice_lag(self) -> str:
        """The measured voice latency for the status bar (median of the last few phrases)."""
        lag = self.player.voice_lag_s() if self.player is not None else None
        return "Voice –" if lag is None else f"Voice {lag:+.1f} s"

    @Slot()
    def _poll(self) -> None:
        state, lag = self.state, self.voice_lag
        if state != self._shown:
            self._shown = state
            self.state_changed.emit(state)
        if lag != self._shown_lag:
            self._shown_lag = lag
            self.voice_lag_changed.emit(lag)

    # -- loading -------------------------------------------------------------------------------
    def _load(self) -> None:
        if self._task is not None:
            self._rebuild = True
            return
        self._error = None
        config, cancelled = self.config, self._cancelled
        self._task = BackgroundTask(lambda _report: build_synthesizer(config, cancelled),
                                    name="livecc-speech-load", parent=self)
        self._task.succeeded.connect(self._on_built)
        self._task.failed.connect(self._on_failed)
        self._task.start()
        self._poll()

    def _finish_load(self) -> bool:
        """Forget the finished task; True when newer settings want another load instead."""
        self._task = None
        if not self._rebuild or self._cancelled.is_set():
            return False
        self._rebuild = False
        self._load()
        return True

    @Slot(object)
    def _on_built(self, built: Built | None) -> None:
        if built is None:
            self._task = None
            return
        if self._cancelled.is_set() or self._finish_load():
            built.synth.close()
            return
        self.synth, self._error = built.synth, None
        if built.device_error:
            self._device_failed(built.device_error, also=built.fallback)
        else:
            if built.fallback:
                summary, details = speech_notice(None, built.fallback)
                self.message.emit(summary, "warning", details)
            self._ensure_player()
        self._poll()

    @Slot(object)
    def _on_failed(self, exc: BaseException) -> None:
        if self._finish_load() or self._cancelled.is_set():
            return
        self._error = app_wording(exc)
        summary, details = speech_notice(exc, None)
        self.message.emit(summary, "warning", details)
        self._poll()

    def _device_failed(self, error: LiveCCError, also: LiveCCError | None = None) -> None:
        """One message naming the app's fix, not the CLI's; the raw text goes to its details."""
        self._error = app_wording(error)
        summary, details = speech_notice(error, also)
        self.message.emit(summary, "warning", details)

    def _ensure_player(self) -> None:
        if self.player is not None or self.synth is None or not (self._running and self.config.enabled):
            return
        from engine.flags import FlagError
        from tts.player import PlayerConfig, SpeechPlayer

        try:  # a bad LIVECC_SPEECH_* switch is a message too, not a traceback
            # live: the app plays every source in real time, so video time runs on between events
            config = PlayerConfig(device=self.config.output(), live=True, stop_timeout_s=PLAYER_STOP_S)
        except FlagError as error:
            self._device_failed(error)
            return
        player = SpeechPlayer(self.synth, config)
        try:
            self.player = player.start()  # opens the device: quick, unlike loading a voice
            self._error = None
        except SpeechError as error:
            player.stop()
            self._device_failed(error)
        self._poll()

    # -- teardown ------------------------------------------------------------------------------
    def _stop_player(self) -> None:
        player, self.player = self.player, None
        if player is not None:
            player.stop()

    def _close_synth(self) -> None:
        synth, self.synth = self.synth, None
        if synth is not None:
            synth.close()
        if self._task is not None:
            self._rebuild = True  # the load in progress is for the old voice

    def shutdown(self, timeout_s: float) -> bool:
        """Stop speaking and release the voice. A ChatTTS load cannot be interrupted: it is a
        daemon thread, told to drop its result. True when every speech thread has ended."""
        started = time.monotonic()
        self._timer.stop()
        self._cancelled.set()
        self._running = False
        self._stop_player()
        self._close_synth()
        task = self._task
        left = max(0.0, timeout_s - (time.monotonic() - started))
        return task is None or task.join(left)
