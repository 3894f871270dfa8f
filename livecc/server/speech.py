"""Speech on the server (docs/protocol.md, "Speech"): one synthesizer per replica, on its own thread
(never the engine's), speaks for every session that asks for audio. Each such session has its own
SpeechScheduler (tts/scheduler.py), so phrases are joined, bounded and dropped when stale exactly as
a local player does; a session whose audio waits unsent holds its phrases back, where they merge or
go stale instead of piling up for a slow client."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from livecc import protocol as wire
from tts.scheduler import Kind, Phrase, SpeechPolicy, SpeechScheduler
from tts.synth import Synthesizer

LOG = logging.getLogger(__name__)
MAX_QUEUED_S = 2.0  # a session's audio waiting to be sent; past it, its next phrase waits
CLOSE_S = 5.0
DRAIN_S = 10.0  # at the stream's end, the last phrases get this long to be said


def server_voice(spec: str) -> ReplicaVoice | None:
    """`livecc serve --speech` (tts.parse_voice forms: chattts, chattts:SEED, espeak, espeak:VOICE,
    none): the replica's voice, None for none. ChatTTS that cannot load falls back to espeak-ng."""
    from tts.factory import SynthKind, make_synthesizer, parse_voice

    kind, voice = parse_voice(spec)
    if kind is SynthKind.NULL:
        return None
    choice = make_synthesizer(kind, voice)
    if choice.warning:
        LOG.warning("%s", choice.warning)
    return ReplicaVoice(choice.synth)


def at_audio_rate(samples: np.ndarray, rate: int) -> np.ndarray:
    """Samples at `rate` Hz resampled to the protocol's 24 kHz (espeak-ng speaks at 22.05 kHz)."""
    if rate == wire.AUDIO_RATE or not len(samples):
        return samples
    count = round(len(samples) * wire.AUDIO_RATE / rate)
    return np.interp(np.arange(count) * rate / wire.AUDIO_RATE, np.arange(len(samples)), samples).astype(np.float32)


class SessionSpeech:
    """One session's speech: its scheduler, fed with the text messages the session sends, and the
    audio it has waiting to be sent. `post(message)` hands an audio message to the session (from
    the voice's thread). Its state is guarded by the voice's lock."""

    def __init__(self, voice: ReplicaVoice, post: Callable[[dict], None]):
        self.voice, self.post = voice, post
        self.scheduler = SpeechScheduler(voice.policy)
        self.video_now = 0.0  # the engine's video time: staleness is measured against it
        self.queued_s = 0.0
        self.generation = 0  # bumped by a barge-in: the phrase being said is cut
        self.speaking = False  # the voice is saying one of this session's phrases
        self.closed = False
        self._chunks: dict[float, str] = {}  # commentary start -> its reply's id, until spoken
        self._answer = ""

    def hear(self, message: dict) -> None:
        """A message the session sends (on the event loop): its text becomes speech to schedule."""
        kind, response = message["type"], message.get("response", {})
        with self.voice.cond:
            if kind == "response.output_text.done" and response["kind"] == "commentary":
                self._commentary(message, response["id"])
            elif kind.startswith("response.output_text.") and response["kind"] == "answer":
                if self.scheduler.add_answer(message["text"], kind.endswith(".done"), self.voice.clock(),
                                             key=response["id"]):
                    self.generation += 1
                    self._answer = response["id"]
            elif kind == "stats":
                self.video_now = max(self.video_now, message["stats"]["end"])
                message["speech"] = self.stats()
            elif kind == "input_video_buffer.cleared":  # a seek: what was said before is out of date
                self.scheduler.barge_in()
                self.generation += 1
                self.video_now = message["time"]
                self._chunks.clear()
            self.voice.cond.notify_all()

    def _commentary(self, message: dict, reply: str) -> None:
        if message["text"].strip():
            self._chunks[message["start"]] = reply
        self.scheduler.add_commentary(message["text"], message["start"], message["end"], self.voice.clock())
        self.video_now = max(self.video_now, message["end"])

    def sent(self, message: dict) -> None:
        """An audio message left for the client (on the event loop): room for the next phrase."""
        with self.voice.cond:
            self.queued_s = max(0.0, self.queued_s - wire.audio_seconds(message))
            self.voice.cond.notify_all()

    def wait_said(self, timeout: float) -> None:
        """At the stream's end: say what is held and queued, and wait (at most `timeout`) until it is."""
        with self.voice.cond:
            self.scheduler.release_held(self.voice.clock())
            self.voice.cond.notify_all()
            self.voice.cond.wait_for(lambda: self.closed or not (self.speaking or self.scheduler.has_pending()),
                                     timeout)

    def stats(self) -> dict:
        stats = self.scheduler.stats
        return {name: getattr(stats, name) for name in stats.__dataclass_fields__}

    # -- the voice's side (under its lock) -------------------------------------------------------
    def take(self, now: float) -> tuple[Phrase, dict, int] | None:
        """The next phrase to say, its `response` and generation; None while audio waits unsent."""
        if self.closed or self.queued_s > MAX_QUEUED_S:
            return None
        self.scheduler.poll(now)
        phrase = self.scheduler.next_phrase(self.video_now, self.queued_s)
        return None if phrase is None else (phrase, self._response(phrase), self.generation)

    def _response(self, phrase: Phrase) -> dict:
        """The reply a phrase speaks: an answer's id, or the first commentary reply it joins."""
        if phrase.kind is Kind.ANSWER:
            return {"id": self._answer, "kind": "answer", "text": phrase.text}
        earlier = sorted(start for start in self._chunks if start <= phrase.video_start)
        reply = self._chunks[earlier[-1]] if earlier else "commentary"
        for start in earlier[:-1]:
            del self._chunks[start]
        return {"id": reply, "kind": "commentary", "text": phrase.text, "start": phrase.video_start,
                "end": phrase.video_end, "due": phrase.due}

    def current(self, generation: int) -> bool:
        return not self.closed and generation == self.generation

    def queue(self, message: dict) -> None:
        with self.voice.cond:
            self.queued_s += wire.audio_seconds(message)
        self.post(message)


class ReplicaVoice:
    """The replica's synthesizer and the one thread that speaks with it, serving its sessions'
    schedulers in turn."""

    def __init__(self, synth: Synthesizer, policy: SpeechPolicy | None = None, clock=time.monotonic,
                 start: bool = True):
        self.synth, self.clock = synth, clock
        self.policy = policy or SpeechPolicy()  # a bad LIVECC_SPEECH_* switch fails the server's start
        self.cond = threading.Condition()
        self._sessions: list[SessionSpeech] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="livecc-server-speech", daemon=True)
        if start:
            self._thread.start()

    @property
    def name(self) -> str:
        return self.synth.name

    def attach(self, post: Callable[[dict], None]) -> SessionSpeech:
        speech = SessionSpeech(self, post)
        with self.cond:
            self._sessions.append(speech)
        return speech

    def detach(self, speech: SessionSpeech) -> None:
        with self.cond:
            speech.closed = True
            if speech in self._sessions:
                self._sessions.remove(speech)

    def close(self) -> None:
        with self.cond:
            self._closed = True
            self.cond.notify_all()
        self.synth.interrupt()
        if self._thread.is_alive():
            self._thread.join(CLOSE_S)
        self.synth.close()

    def _run(self) -> None:
        while (job := self._wait_for_job()) is not None:
            self._speak(*job)

    def step(self) -> bool:
        """Say the next phrase that is ready now, on this thread (tests); False when none is."""
        with self.cond:
            job = self._next_job()
        if job is not None:
            self._speak(*job)
        return job is not None

    def _wait_for_job(self):
        with self.cond:
            while not self._closed:
                job = self._next_job()
                if job is not None:
                    return job
                self.cond.wait(self._wait_s())
        return None

    def _next_job(self):
        """The next session with a phrase ready, taking sessions in turn (under the lock)."""
        now = self.clock()
        for i, speech in enumerate(self._sessions):
            taken = speech.take(now)
            if taken is not None:
                self._sessions.append(self._sessions.pop(i))  # the others go first next time
                speech.speaking = True
                return (speech, *taken)
        return None

    def _wait_s(self) -> float | None:
        """Until the first held phrase is due for release (None: until woken)."""
        deadlines = [d for s in self._sessions if (d := s.scheduler.next_deadline()) is not None]
        return max(0.01, min(deadlines) - self.clock()) if deadlines else None

    def _speak(self, speech: SessionSpeech, phrase: Phrase, response: dict, generation: int) -> None:
        samples, problem = 0, None
        try:
            for piece in self.synth.stream(phrase.text):
                if not speech.current(generation):  # a barge-in, a seek or the session's end
                    self.synth.interrupt()
                    break
                audio = at_audio_rate(piece, self.synth.sample_rate)
                samples += len(audio)
                speech.queue({"type": wire.AUDIO_DELTA, "response": response, "delta": wire.encode_pcm(audio)})
        except Exception as exc:  # a synthesizer's failure costs this phrase, not the session
            LOG.warning("speech failed for %r", phrase.text, exc_info=True)
            problem = str(exc)
        done = {"type": wire.AUDIO_DONE, "response": response, "samples": samples}
        speech.queue(done | ({"error": problem} if problem else {}))
        with self.cond:
            speech.speaking = False
            self.cond.notify_all()
