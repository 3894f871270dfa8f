"""What to speak and when: the pure policy behind the player and the offline timeline.

No threads, no audio, no clock of its own: every call takes `now` (the caller's clock, real or
simulated) and, where staleness matters, `video_now` (the video time the listener is at).

- Phrase joining: LiveCC comments arrive as ~1 s fragments. `start_at="clause"` (the default)
  speaks a fragment as soon as it holds a few words or ends at a clause or sentence boundary, so
  the next fragment continues the sentence as its own phrase; only a lone word is held.
  `start_at="sentence"` (LIVECC_SPEECH_START=sentence, for comparison) holds fragments until
  sentence punctuation. Either way a held phrase is released at an empty comment (the model chose
  silence), after a pause with no new fragment, after the oldest fragment was held too long, or
  when too long.
- Queue bound: `max_pending=1` (default; LIVECC_SPEECH_MAX_PENDING=8 gives a queue of 8)
  merges a newer phrase into the one waiting, so speech is never more than one phrase behind.
- Staleness: a comment's video time is the end of its chunk (the earliest moment it can
  exist). A commentary phrase whose speech would start more than `max_lag_s` after the video
  time of its oldest fragment is dropped, never queued behind.
- Catch-up: commentary is played faster (up to `max_rate`, pitch kept; see tts/stretch.py) at the
  rate that says the speech still to come, the current phrase's rest included, in about
  `catch_up_horizon_s`. Commentary arrives about as fast as it can be said, so without it a voice
  that falls behind stays behind. LIVECC_SPEECH_MAX_RATE=1 turns it off.
- Priority: answers go before commentary. A new answer barges in: pending commentary (and any
  older answer) is discarded; the caller flushes audio already queued.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass, field, replace

from engine import flags

SENTENCE_END = re.compile(r"[.!?;…。！？]+[\"')\]]*(?=\s|$)")
CLAUSE_END = re.compile(r"[,:;—–…，、；：.!?。！？]+[\"')\]]*$")
START_POLICIES = flags.REGISTRY["LIVECC_SPEECH_START"].choices  # one list: the switch's and the policy's
MAX_RATE = flags.REGISTRY["LIVECC_SPEECH_MAX_RATE"].maximum  # 2: beyond this, sped-up speech is hard to follow


def _env_start() -> str:
    return flags.get("LIVECC_SPEECH_START")


def _env_max_pending() -> int:
    return flags.get("LIVECC_SPEECH_MAX_PENDING")


def _env_max_rate() -> float:
    return flags.get("LIVECC_SPEECH_MAX_RATE")


class Kind(enum.Enum):
    COMMENTARY = "commentary"
    ANSWER = "answer"


@dataclass(frozen=True)
class SpeechPolicy:
    """Timing bounds. Seconds are video seconds for staleness, clock seconds for holding."""

    max_lag_s: float = 4.0  # drop commentary whose speech would start later than this behind
    pause_s: float = 1.2  # release a partial phrase when no fragment came for this long
    max_hold_s: float = 2.5  # release a partial phrase when its oldest fragment is this old
    max_phrase_chars: int = 200
    # commentary phrases waiting to be spoken: 1 = a newer phrase merges into the waiting one;
    # more = a queue that drops its oldest beyond this (docs/speech.md, "Keeping up")
    max_pending: int = field(default_factory=_env_max_pending)
    start_at: str = field(default_factory=_env_start)  # "clause": speak a fragment at once; "sentence": old
    min_words: int = 2  # clause policy: a fragment this long is spoken without waiting for punctuation
    max_rate: float = field(default_factory=_env_max_rate)  # catch-up: fastest playback (1 = off)
    catch_up_horizon_s: float = 0.75  # catch-up: say the speech still to come in about this long

    def __post_init__(self) -> None:
        if not 0 < self.pause_s <= self.max_hold_s < self.max_lag_s:
            raise ValueError("speech policy needs 0 < pause_s <= max_hold_s < max_lag_s")
        if self.start_at not in START_POLICIES:
            raise ValueError(f"speech start policy must be one of {START_POLICIES}, got {self.start_at!r}")
        if self.max_phrase_chars < 20 or self.max_pending < 1:
            raise ValueError("speech policy needs max_phrase_chars >= 20 and max_pending >= 1")
        if not (1.0 <= self.max_rate <= MAX_RATE and self.catch_up_horizon_s > 0):
            raise ValueError(f"speech policy needs 1 <= max_rate <= {MAX_RATE} and catch_up_horizon_s > 0")


def policy_with_max_lag(max_lag_s: float, default: SpeechPolicy | None = None) -> SpeechPolicy:
    """A policy for a user-chosen lag bound, holding phrases proportionally less when it is short.
    `default`: the policy it adapts (None: SpeechPolicy(), with the environment's switches)."""
    if not max_lag_s > 0.5:  # NaN too
        raise ValueError(f"speech max lag must be > 0.5 s, got {max_lag_s}")
    default = default or SpeechPolicy()
    return replace(default, max_lag_s=max_lag_s, pause_s=min(default.pause_s, 0.3 * max_lag_s),
                   max_hold_s=min(default.max_hold_s, 0.6 * max_lag_s))


@dataclass(frozen=True)
class Phrase:
    """Text to speak in one go. `due`: video time it is measured against (None: never stale)."""

    text: str
    kind: Kind
    video_start: float
    video_end: float
    due: float | None
    ready_at: float  # caller's clock when the phrase was released


@dataclass
class _Fragment:
    text: str
    start: float
    end: float
    arrived: float


@dataclass
class SchedulerStats:
    phrases: int = 0
    dropped_stale: int = 0
    dropped_overflow: int = 0
    dropped_barge_in: int = 0
    merged: int = 0  # phrases merged into the one waiting (the queue bound)


@dataclass
class _AnswerState:
    key: object = None
    spoken_chars: int = 0
    done: bool = True


def join_fragments(texts: list[str]) -> str:
    return " ".join(t.strip() for t in texts if t.strip())


def split_at_last_sentence_end(text: str) -> tuple[str, str]:
    """("complete sentences", "rest"); ("", text) when no sentence has ended yet."""
    ends = list(SENTENCE_END.finditer(text))
    if not ends:
        return "", text
    cut = ends[-1].end()
    return text[:cut].strip(), text[cut:].strip()


@dataclass
class SpeechScheduler:
    policy: SpeechPolicy = field(default_factory=SpeechPolicy)
    stats: SchedulerStats = field(default_factory=SchedulerStats)

    def __post_init__(self) -> None:
        self._fragments: list[_Fragment] = []
        self._commentary: deque[Phrase] = deque()
        self._answers: deque[Phrase] = deque()
        self._answer = _AnswerState()

    # -- commentary -------------------------------------------------------------------------

    def add_commentary(self, text: str, video_start: float, video_end: float, now: float) -> None:
        """One fragment; empty text means the model chose silence (a pause)."""
        if not text.strip():
            self._release_fragments(now)
            return
        self._fragments.append(_Fragment(text.strip(), video_start, video_end, now))
        if self.policy.start_at == "clause":
            self._release_clause(now)
        else:
            self._release_sentences(now)
        if len(join_fragments([f.text for f in self._fragments])) >= self.policy.max_phrase_chars:
            self._release_fragments(now)

    def poll(self, now: float) -> None:
        """Release a held partial phrase whose pause or hold time has passed."""
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self._release_fragments(now)

    def release_held(self, now: float) -> None:
        """Release held fragments now (end of stream)."""
        self._release_fragments(now)

    def next_deadline(self) -> float | None:
        """Clock time at which `poll` would release the held fragments (None: nothing held)."""
        if not self._fragments:
            return None
        pause = self._fragments[-1].arrived + self.policy.pause_s
        hold = self._fragments[0].arrived + self.policy.max_hold_s
        return min(pause, hold)

    def _release_sentences(self, now: float) -> None:
        """Speak every completed sentence now; keep the unfinished tail held.

        Checked on every fragment, so a sentence end can only lie in the newest fragment:
        the tail inherits that fragment's times."""
        done, rest = split_at_last_sentence_end(join_fragments([f.text for f in self._fragments]))
        if not done:
            return
        last = self._fragments[-1]
        self._emit(done, self._fragments, now)
        self._fragments = [_Fragment(rest, last.start, last.end, now)] if rest else []

    def _release_clause(self, now: float) -> None:
        """Speak what is held unless it is shorter than min_words with no boundary: then hold the tail
        after the last sentence end (or everything) for the next fragment, a pause or the hold time."""
        done, rest = split_at_last_sentence_end(join_fragments([f.text for f in self._fragments]))
        if not rest or len(rest.split()) >= self.policy.min_words or CLAUSE_END.search(rest):
            self._release_fragments(now)
        elif done:
            self._release_sentences(now)

    def _release_fragments(self, now: float) -> None:
        if self._fragments:
            self._emit(join_fragments([f.text for f in self._fragments]), self._fragments, now)
            self._fragments = []

    def _emit(self, text: str, fragments: list[_Fragment], now: float) -> None:
        self._queue(Phrase(text, Kind.COMMENTARY, fragments[0].start, fragments[-1].end,
                           due=fragments[0].end, ready_at=now))

    def _queue(self, phrase: Phrase) -> None:
        """A commentary phrase joins the queue, within its bound (max_pending)."""
        if self.policy.max_pending == 1 and self._commentary:
            phrase = self._merge(self._commentary.pop(), phrase)
        self._commentary.append(phrase)
        while len(self._commentary) > self.policy.max_pending:
            self._commentary.popleft()  # a backlog is never worth speaking
            self.stats.dropped_overflow += 1

    def _merge(self, waiting: Phrase, newer: Phrase) -> Phrase:
        """One phrase instead of two in the queue. The waiting one is dropped instead when it is
        far older (merged, it would make the newer one stale too) or both are too long to join."""
        text = f"{waiting.text} {newer.text}"
        if newer.due - waiting.due > self.policy.max_lag_s / 2:
            self.stats.dropped_stale += 1
            return newer
        if len(text) > self.policy.max_phrase_chars:
            self.stats.dropped_overflow += 1
            return newer
        self.stats.merged += 1
        return Phrase(text, Kind.COMMENTARY, waiting.video_start, newer.video_end, waiting.due, newer.ready_at)

    # -- answers ----------------------------------------------------------------------------

    def add_answer(self, text: str, done: bool, now: float, key: object = None) -> bool:
        """The answer so far (cumulative). Returns True when it starts a new answer (barge-in)."""
        new = self._answer.done or key != self._answer.key
        if new:
            self.barge_in()
            self._answer = _AnswerState(key=key, spoken_chars=0, done=False)
        fresh = text[self._answer.spoken_chars:]
        ready, _ = (fresh.strip(), "") if done else split_at_last_sentence_end(fresh)
        if ready:
            self._answer.spoken_chars += fresh.find(ready) + len(ready)
            self._answers.append(Phrase(ready, Kind.ANSWER, now, now, due=None, ready_at=now))
        self._answer.done = done
        return new

    def add_phrase(self, phrase: Phrase, key: object = None) -> bool:
        """A phrase made elsewhere (a server's, whose audio comes with it): commentary is queued and
        merged within the queue's bound as the scheduler's own; an answer with a new `key` barges in
        (returns True)."""
        if phrase.kind is Kind.COMMENTARY:
            self._queue(phrase)
            return False
        new = key != self._answer.key
        if new:
            self.barge_in()
            self._answer = _AnswerState(key=key)  # done: the next local answer starts afresh
        self._answers.append(phrase)
        return new

    def barge_in(self) -> None:
        """Discard everything pending: held fragments, queued commentary, older answers."""
        self.stats.dropped_barge_in += len(self._commentary) + len(self._answers) + bool(self._fragments)
        self._fragments.clear()
        self._commentary.clear()
        self._answers.clear()

    # -- output -----------------------------------------------------------------------------

    def is_stale(self, phrase: Phrase, video_now: float, ahead_s: float = 0.0) -> bool:
        """Would speech starting `ahead_s` from now begin more than max_lag_s behind?"""
        return phrase.due is not None and video_now + ahead_s - phrase.due > self.policy.max_lag_s

    def next_phrase(self, video_now: float, ahead_s: float = 0.0) -> Phrase | None:
        """The next phrase to speak: answers first, stale commentary dropped on the way."""
        if self._answers:
            self.stats.phrases += 1
            return self._answers.popleft()
        while self._commentary:
            phrase = self._commentary.popleft()
            if self.is_stale(phrase, video_now, ahead_s):
                self.stats.dropped_stale += 1
                continue
            self.stats.phrases += 1
            return phrase
        return None

    def pending_commentary_chars(self) -> int:
        """Characters of commentary waiting: queued phrases and held fragments (catch-up sizes on it)."""
        return sum(len(p.text) for p in self._commentary) + sum(len(f.text) + 1 for f in self._fragments)

    def has_pending(self) -> bool:
        return bool(self._answers or self._commentary)

    def answer_in_progress(self) -> bool:
        return not self._answer.done or bool(self._answers)
