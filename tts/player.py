"""SpeechPlayer: speaks commentary and answers without ever lagging the video.

Threads: the caller (engine or GUI) only enqueues text; a synthesis worker turns phrases into
audio blocks on a bounded queue; PortAudio's callback pulls blocks with get_nowait and plays
silence when the queue is dry (moshi-style: it never blocks, it counts underruns).

Catch-up: commentary that would fall behind plays faster, pitch kept (tts/stretch.py): each
synthesized piece is stretched at the rate that says the speech still to come (queued audio, the
rest of this phrase, the commentary waiting) in about the policy's horizon, up to its max_rate, so
a phrase longer than the horizon is sped up even when nothing waits behind it.

Barge-in: every block carries the generation it was made in; `say_answer` bumps the
generation and drains the queue, and the callback skips blocks of an older generation, so an
answer's audio starts at the next block the device asks for.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tts.scheduler import Kind, Phrase, SpeechPolicy, SpeechScheduler
from tts.stretch import TimeStretcher, catch_up_rate
from tts.synth import SpeechError, Synthesizer

LOG = logging.getLogger(__name__)
SECONDS_PER_CHAR = 0.07  # English speech, ~14 characters a second: catch-up's guess until it has heard the voice
Clock = Callable[[], float]
DEVICE_FIX = "use --audio-device (see `python -m sounddevice`) or disable speech"
FAST_RATE = 1.25  # catch-up above this is noticeably fast: the share of speech heard faster is reported


@dataclass(frozen=True)
class PlayerConfig:
    device: int | str | None = None  # PortAudio output device, by index or (part of) its name
    block_size: int = 1024  # samples per block and per callback (~43 ms at 24 kHz)
    queue_seconds: float = 0.5  # audio queued ahead of the device: bounds barge-in and lag
    live: bool = True  # video time runs on between set_video_time calls (live sources)
    max_extrapolate_s: float = 2.0  # ...but never more than this past the last report
    stop_timeout_s: float = 2.0
    policy: SpeechPolicy = field(default_factory=SpeechPolicy)
    history: int = 256  # phrase starts kept in `started` (benchmarks keep a whole run)

    def __post_init__(self) -> None:
        if self.block_size < 64 or self.queue_seconds <= 0:
            raise ValueError("block_size must be >= 64 and queue_seconds > 0")


@dataclass(frozen=True)
class Block:
    samples: np.ndarray  # float32 mono, at most block_size long; empty = end-of-phrase marker
    generation: int
    phrase: Phrase
    first: bool  # the phrase starts with this block
    last: bool  # the phrase ends with this block


@dataclass
class PlayerStats:
    blocks_played: int = 0
    silent_callbacks: int = 0  # callbacks that found nothing to play at all
    underruns: int = 0  # the queue ran dry in the middle of a phrase
    stale_dropped: int = 0  # phrases dropped after synthesis because they came too late
    status_flags: int = 0  # PortAudio reported an over/underflow
    sped_up_pieces: int = 0  # synthesized pieces played faster than normal (catch-up)
    fastest_rate: float = 1.0
    said_s: float = 0.0  # commentary synthesized, in seconds at the voice's own speed
    played_s: float = 0.0  # the same after catch-up: what the listener hears
    fast_played_s: float = 0.0  # of played_s, the part played faster than FAST_RATE

    def tally(self, seconds: float, rate: float) -> None:
        """A piece of `seconds` of commentary played at `rate`."""
        self.said_s += seconds
        self.played_s += seconds / rate
        if rate > FAST_RATE:
            self.fast_played_s += seconds / rate

    @property
    def mean_rate(self) -> float:
        """The average speed-up of commentary, weighted by time heard (1 = none)."""
        return self.said_s / self.played_s if self.played_s else 1.0

    @property
    def fast_share(self) -> float:
        """The share of commentary heard faster than FAST_RATE."""
        return self.fast_played_s / self.played_s if self.played_s else 0.0


@dataclass(frozen=True)
class Started:
    """A phrase began playing at `clock` (player clock) while the video was at `video_time`."""

    phrase: Phrase
    clock: float
    video_time: float

    @property
    def lag_s(self) -> float | None:
        """How far behind its video the phrase began (video seconds); None for answers."""
        return None if self.phrase.due is None else self.video_time - self.phrase.due


class VideoClock:
    """The listener's video time: the last reported time, run on by the clock for live sources."""

    def __init__(self, clock: Clock, live: bool, max_extrapolate_s: float) -> None:
        self._clock, self._live, self._max = clock, live, max_extrapolate_s
        self._video, self._at = 0.0, clock()

    def set(self, video_time: float) -> None:
        if video_time >= self.now():  # reports only move it forward (events arrive out of order)
            self._video, self._at = video_time, self._clock()

    def now(self) -> float:
        run_on = min(self._clock() - self._at, self._max) if self._live else 0.0
        return self._video + run_on


def import_sounddevice():
    """sounddevice, or a SpeechError naming the fix when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as error:  # sounddevice raises OSError("PortAudio library not found")
        raise SpeechError(f"cannot play audio: {error}", code="audio-library",
                          fix="install it (`sudo apt install libportaudio2`, or `make deps`), or turn speech off "
                              "(drop --speak, or --voice none)") from error
    return sounddevice


def resolve_output_device(device: int | str | None) -> int:
    """The PortAudio output device index, or a SpeechError that names the fix."""
    sd = import_sounddevice()
    try:
        info = sd.query_devices(device, kind="output")
    except (ValueError, sd.PortAudioError) as error:
        raise SpeechError(f"no audio output device: {error}", DEVICE_FIX, "audio-device") from error
    if info["max_output_channels"] < 1:
        raise SpeechError(f"no audio output device: {info['name']!r} has no output channels", DEVICE_FIX,
                          "audio-device")
    return int(info["index"])


class SpeechPlayer:
    """Owns the output stream and the synthesis worker. See the module docstring."""

    def __init__(self, synth: Synthesizer, config: PlayerConfig | None = None,
                 clock: Clock = time.monotonic) -> None:
        """`config`: None = the defaults, with the environment's switches read now (tts/env.py)."""
        config = config or PlayerConfig()
        self.synth = synth
        self.config = config
        self.clock = clock
        self.scheduler = SpeechScheduler(config.policy)
        self.stats = PlayerStats()
        self.started: deque[Started] = deque(maxlen=config.history)  # recent phrase starts, for tests/UI
        self.video = VideoClock(clock, config.live, config.max_extrapolate_s)
        capacity = max(2, int(config.queue_seconds * synth.sample_rate / config.block_size))
        self._blocks: queue.Queue[Block] = queue.Queue(maxsize=capacity)
        self._cond = threading.Condition()  # guards the scheduler; wakes the worker
        self._generation = 0
        self._phrase_generation = 0  # the generation a phrase was taken under (worker thread only)
        self._generation_lock = threading.Lock()
        self._current: Block | None = None
        self._pos = 0
        self._muted = False
        self._worker_idle = True
        self._playing = False
        self._error: str | None = None
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._stream = None
        self._seconds_per_char = SECONDS_PER_CHAR  # the voice's speaking rate, learned per phrase

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, open_device: bool = True) -> "SpeechPlayer":
        """Open the output stream (unless `open_device` is False: pull() by hand) and the worker.
        A started player is not started again (`with player.start():` opens one stream, not two)."""
        if self._worker is not None:
            return self
        if open_device:
            self._stream = self._open_stream()
            self._stream.start()
        self._worker = threading.Thread(target=self._work, name="speech-synth", daemon=True)
        self._worker.start()
        return self

    def _open_stream(self):
        sd = import_sounddevice()
        index = resolve_output_device(self.config.device)
        try:
            return sd.OutputStream(samplerate=self.synth.sample_rate, blocksize=self.config.block_size,
                                   device=index, channels=1, dtype="float32", callback=self._callback)
        except sd.PortAudioError as error:
            raise SpeechError(f"no audio output device: cannot open device {index} at "
                              f"{self.synth.sample_rate} Hz ({error})", DEVICE_FIX, "audio-device") from error

    def stop(self) -> None:
        """Stop speaking, close the stream, join the worker (bounded wait). Idempotent."""
        self._stopping.set()
        self._flush()
        self.synth.interrupt()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=self.config.stop_timeout_s)
            if self._worker.is_alive():
                LOG.warning("speech worker did not stop within %.1f s", self.config.stop_timeout_s)
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None

    def drain(self, timeout: float) -> bool:
        """Speak what is held and queued, then return (True) or give up after `timeout` s."""
        end = time.monotonic() + timeout
        with self._cond:
            self.scheduler.release_held(self.clock())
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: self._worker_idle and not self.scheduler.has_pending(),
                                       timeout=timeout)
        if done:  # the rest is audio already queued: wait for it to play out, once
            self._stopping.wait(min(max(0.0, end - time.monotonic()),
                                    self.queued_seconds() + 2 * self.config.block_size / self.synth.sample_rate))
        return done

    def __enter__(self) -> "SpeechPlayer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the API the engine and the app call ------------------------------------------------

    def say_commentary(self, text: str, video_start: float, video_end: float) -> None:
        """A commentary fragment for video [start, end); empty text = the model is silent."""
        self.set_video_time(video_end)
        if self._muted:
            return
        with self._cond:
            self.scheduler.add_commentary(text, video_start, video_end, self.clock())
            self._cond.notify_all()

    def say_answer(self, text: str, done: bool = True, key: object = None) -> None:
        """An answer so far (cumulative text, as `Answer` events carry it). The first call of a
        new answer (after the previous one was `done`, or with a new `key`) barges in."""
        if self._muted:
            return
        with self._cond:
            if self.scheduler.add_answer(text, done, self.clock(), key=key):
                self._flush()
            self._cond.notify_all()

    def say_phrase(self, phrase: Phrase, key: object = None) -> None:
        """A phrase spoken elsewhere (a server's), its audio from the synthesizer (tts/received.py);
        an answer with a new `key` barges in, as in `say_answer`."""
        if self._muted:
            return
        with self._cond:
            if self.scheduler.add_phrase(phrase, key):
                self._flush()
            self._cond.notify_all()

    def set_video_time(self, video_time: float) -> None:
        self.video.set(video_time)

    def mute(self, muted: bool = True) -> None:
        self._muted = muted
        if muted:
            with self._cond:
                self.scheduler.barge_in()
            self._flush()

    def voice_lag_s(self, recent: int = 5) -> float | None:
        """Median lag of the last `recent` commentary starts behind their video (status bar)."""
        lags = [s.lag_s for s in list(self.started) if s.lag_s is not None][-recent:]
        return float(np.median(lags)) if lags else None

    @property
    def state(self) -> str:
        """"off" | "muted" | "speaking" | "idle" | "error: ..." for a status bar."""
        if self._error is not None:
            return f"error: {self._error}"
        if self._worker is None or self._stopping.is_set():
            return "off"
        if self._muted:
            return "muted"
        return "speaking" if self._playing else "idle"

    # -- barge-in ---------------------------------------------------------------------------

    def _flush(self) -> None:
        """Invalidate queued audio (the callback skips old generations) and free the queue."""
        with self._generation_lock:  # callers on several threads (engine, GUI) may flush at once
            self._generation += 1
        self.synth.interrupt()
        while True:
            try:
                self._blocks.get_nowait()
            except queue.Empty:
                return

    # -- the device side: never blocks ------------------------------------------------------

    def _callback(self, outdata, frames, time_info, status) -> None:
        if status:
            self.stats.status_flags += 1
        outdata[:, 0] = self.pull(frames)

    def pull(self, frames: int) -> np.ndarray:
        """The next `frames` samples to play; silence where nothing is queued. Never blocks."""
        out = np.zeros(frames, dtype=np.float32)
        filled = 0
        while filled < frames and self._next_block():
            block = self._current
            n = min(frames - filled, len(block.samples) - self._pos)
            out[filled:filled + n] = block.samples[self._pos:self._pos + n]
            filled += n
            self._pos += n
        self._account(filled, frames)
        return out

    def _next_block(self) -> bool:
        """Make `_current` a block with samples left, of the current generation."""
        current = self._current
        if current is not None and current.generation == self._generation and self._pos < len(current.samples):
            return True
        while True:
            try:
                block = self._blocks.get_nowait()
            except queue.Empty:
                if current is not None and current.generation != self._generation:
                    self._current = None  # barged in: forget the interrupted phrase
                return False
            if block.generation != self._generation:
                continue
            self._current, self._pos = block, 0
            if block.first:
                self.started.append(Started(block.phrase, self.clock(), self.video.now()))
            if len(block.samples):
                return True  # else an end-of-phrase marker: look further

    def _account(self, filled: int, frames: int) -> None:
        self._playing = filled > 0
        if filled:
            self.stats.blocks_played += 1
        if filled < frames:
            current = self._current
            mid_phrase = current is not None and not current.last and current.generation == self._generation
            if mid_phrase:
                self.stats.underruns += 1
            elif not filled:
                self.stats.silent_callbacks += 1

    def queued_seconds(self) -> float:
        """Audio waiting ahead of the device (approximate: whole blocks)."""
        return self._blocks.qsize() * self.config.block_size / self.synth.sample_rate

    # -- the synthesis worker ---------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            phrase = self._take_phrase(wait=True)
            if phrase is not None:
                self._speak_safely(phrase)

    def pump(self) -> int:
        """Synthesize and queue every phrase that is ready now, in this thread (tests, tools)."""
        spoken = 0
        while (phrase := self._take_phrase(wait=False)) is not None:
            self._speak_safely(phrase)
            spoken += 1
        return spoken

    def _take_phrase(self, wait: bool) -> Phrase | None:
        with self._cond:
            now = self.clock()
            self.scheduler.poll(now)
            phrase = self.scheduler.next_phrase(self.video.now(), self.queued_seconds())
            self._phrase_generation = self._generation  # under the lock: a barge-in after this is seen
            self._worker_idle = phrase is None
            if phrase is None:
                self._cond.notify_all()  # drain() waits for an idle worker
            if phrase is None and wait and not self._stopping.is_set():
                deadline = self.scheduler.next_deadline()
                self._cond.wait(timeout=None if deadline is None else max(0.01, deadline - now))
            return phrase

    def _speak_safely(self, phrase: Phrase) -> None:
        try:
            self._speak(phrase)
            self._error = None
        except SpeechError as error:
            self._error = str(error)
            LOG.warning("speech: %s", error)
        except Exception as error:  # a synthesizer bug must not kill speech for the session
            self._error = f"{type(error).__name__}: {error}"
            LOG.exception("speech synthesis failed for %r", phrase.text)

    def _speak(self, phrase: Phrase) -> None:
        generation = self._phrase_generation
        stretch = self._stretcher(phrase)
        first, said_s = True, 0.0  # said_s: seconds synthesized so far, at normal speed
        for piece in self.synth.stream(phrase.text):
            if generation != self._generation or self._stopping.is_set():
                self.synth.interrupt()  # barge-in or stop: abandon this phrase
                return
            if first and phrase.kind is Kind.COMMENTARY and self._too_late(phrase):
                self.synth.interrupt()
                return
            seconds = len(piece) / self.synth.sample_rate
            said_s += seconds
            rate = 1.0 if stretch is None else self._catch_up_rate(phrase, said_s)
            if phrase.kind is Kind.COMMENTARY:
                self.stats.tally(seconds, rate)
            audio = piece if stretch is None else stretch.process(piece, rate)
            if not self._enqueue(audio, phrase, generation, first):
                return
            first = first and not len(audio)
        if stretch is not None:
            rest = stretch.flush()
            if not self._enqueue(rest, phrase, generation, first):
                return
            first = first and not len(rest)
        if said_s and phrase.text:
            self._seconds_per_char = 0.5 * self._seconds_per_char + 0.5 * said_s / len(phrase.text)
        if not first:  # an empty marker ends the phrase, so a dry queue after it is no underrun
            self._put(Block(np.zeros(0, np.float32), generation, phrase, first=False, last=True))

    def _stretcher(self, phrase: Phrase) -> TimeStretcher | None:
        """Commentary can catch up; answers are said at the voice's own speed."""
        if phrase.kind is Kind.COMMENTARY and self.config.policy.max_rate > 1.0:
            return TimeStretcher(self.synth.sample_rate)
        return None

    def _catch_up_rate(self, phrase: Phrase, said_s: float) -> float:
        """The rate for the piece just synthesized, from the speech still to come at normal speed."""
        with self._cond:
            waiting_chars = self.scheduler.pending_commentary_chars()
        rest_of_phrase = max(0.0, len(phrase.text) * self._seconds_per_char - said_s)
        backlog = self.queued_seconds() + rest_of_phrase + waiting_chars * self._seconds_per_char
        policy = self.config.policy
        rate = catch_up_rate(backlog, policy.catch_up_horizon_s, policy.max_rate)
        if rate > 1.0:
            self.stats.sped_up_pieces += 1
            self.stats.fastest_rate = max(self.stats.fastest_rate, rate)
        return rate

    def _too_late(self, phrase: Phrase) -> bool:
        """Re-checked once audio exists: synthesis itself may have taken too long."""
        if self.scheduler.is_stale(phrase, self.video.now(), self.queued_seconds()):
            self.stats.stale_dropped += 1
            return True
        return False

    def _enqueue(self, audio: np.ndarray, phrase: Phrase, generation: int, first: bool) -> bool:
        size = self.config.block_size
        for i, start in enumerate(range(0, len(audio), size)):
            block = Block(audio[start:start + size], generation, phrase, first=first and i == 0, last=False)
            if not self._put(block):
                return False
        return True

    def _put(self, block: Block) -> bool:
        """Blocking put with a short timeout so barge-in and stop are noticed promptly."""
        while not self._stopping.is_set() and block.generation == self._generation:
            try:
                self._blocks.put(block, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
