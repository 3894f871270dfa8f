"""Offline speech: render what the player would say into one WAV aligned to video time
(`livecc narrate --speech-wav F`). Same scheduler and policies, catch-up included, with a
simulated clock that is the video time itself: a comment becomes available at the end of its chunk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tts.scheduler import Phrase, SpeechPolicy, SpeechScheduler
from tts.stretch import TimeStretcher, catch_up_rate
from tts.synth import Synthesizer


@dataclass(frozen=True)
class Placement:
    """A phrase placed on the video timeline at [start, end) seconds."""

    phrase: Phrase
    start: float
    end: float


@dataclass
class SpeechTimeline:
    synth: Synthesizer
    policy: SpeechPolicy = field(default_factory=SpeechPolicy)
    latency_s: float = 0.0  # extra delay between a chunk's end and its comment (engine time)

    def __post_init__(self) -> None:
        self.scheduler = SpeechScheduler(self.policy)
        self.placements: list[Placement] = []
        self._audio: list[tuple[int, np.ndarray]] = []
        self._cursor = 0.0  # where the previous phrase's audio ends (s)
        self._now = 0.0

    def add_commentary(self, text: str, video_start: float, video_end: float) -> None:
        """Commentary events in video order; empty text = the model chose silence."""
        available = max(video_end + self.latency_s, self._now)
        self._advance(available)
        self.scheduler.add_commentary(text, video_start, video_end, available)
        self._place_ready(available)

    def _advance(self, until: float) -> None:
        """Run, in time order, what happens before `until`: held phrases released at their deadline,
        and the voice falling silent with a phrase waiting."""
        while (moment := self._next_moment()) is not None and moment <= until:
            self.scheduler.poll(moment)
            self._place_ready(moment)
        self._now = until

    def _next_moment(self) -> float | None:
        free = max(self._cursor, self._now) if self.scheduler.has_pending() else None
        return min((m for m in (self.scheduler.next_deadline(), free) if m is not None), default=None)

    def _place_ready(self, now: float) -> None:
        """Like the player: the next phrase is taken when the voice is free, so comments that come
        while it speaks wait and merge (max_pending) instead of each being queued behind."""
        self._now = max(self._now, now)
        while self._cursor <= now and (phrase := self.scheduler.next_phrase(now)) is not None:
            self._place(phrase, now)

    def _place(self, phrase: Phrase, start: float) -> None:
        audio = self.synth.synthesize(phrase.text)
        if not audio.size:
            return
        audio = self._catch_up(phrase, audio, start)
        end = start + audio.size / self.synth.sample_rate
        self._audio.append((int(round(start * self.synth.sample_rate)), audio))
        self.placements.append(Placement(phrase, start, end))
        self._cursor = end

    def finish(self, video_duration: float | None = None) -> np.ndarray:
        """Release everything still held and return the whole track (at least the video long)."""
        self._advance(float("inf"))
        rate = self.synth.sample_rate
        length = max([s + len(a) for s, a in self._audio] + [int((video_duration or 0.0) * rate)])
        track = np.zeros(length, dtype=np.float32)
        for start, audio in self._audio:
            track[start:start + len(audio)] = audio
        return track

    def write(self, path: Path, video_duration: float | None = None) -> np.ndarray:
        """The track as a 16-bit WAV: exactly the video long when its length is known (> 0; speech
        past the end is cut), else as long as its speech (a live source: nothing is cut)."""
        import soundfile

        track = self.finish(video_duration)
        if video_duration and video_duration > 0:
            track = track[: int(round(video_duration * self.synth.sample_rate))]
        soundfile.write(str(path), track, self.synth.sample_rate, subtype="PCM_16")
        return track

    def _catch_up(self, phrase: Phrase, audio: np.ndarray, start: float) -> np.ndarray:
        """The player's catch-up for a whole phrase: the rate that says what is still playing, this
        phrase and the commentary waiting behind it in about the policy's horizon."""
        if self.policy.max_rate <= 1.0:
            return audio
        rate_hz = self.synth.sample_rate
        per_char = audio.size / rate_hz / max(1, len(phrase.text))
        backlog = (start - self._now) + audio.size / rate_hz + self.scheduler.pending_commentary_chars() * per_char
        rate = catch_up_rate(backlog, self.policy.catch_up_horizon_s, self.policy.max_rate)
        if rate <= 1.0:
            return audio
        stretcher = TimeStretcher(rate_hz)
        return np.concatenate([stretcher.process(audio, rate), stretcher.flush()])

