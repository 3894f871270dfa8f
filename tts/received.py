"""Speech made elsewhere (a `livecc serve` server's voice), played by the local SpeechPlayer.

The server joins, bounds and synthesizes phrases (tts/scheduler.py on its side); here each phrase
enters the player's scheduler as its first audio arrives (`play_received`), and `ReceivedVoice`
is the player's synthesizer: it hands over the phrase's audio as it comes instead of making it.
Everything after that is the local path: stale phrases dropped, catch-up, barge-in, voice lag.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tts.scheduler import Kind, Phrase
from tts.synth import Synthesizer

SAMPLE_RATE = 24000  # what a server sends (docs/protocol.md)
PIECE_WAIT_S = 10.0  # a phrase whose next piece takes longer than this is cut (the server went quiet)
MAX_ENTRIES = 32  # phrases kept for the player; older ones were dropped by its scheduler


@dataclass(frozen=True)
class ReceivedAudio:
    """A piece of a phrase spoken elsewhere (`response.output_audio.delta`), or its end (`.done`,
    no samples). `key` names the reply it speaks; commentary carries its video span and due time."""

    key: str
    kind: Kind
    text: str
    samples: np.ndarray  # float32 mono at SAMPLE_RATE
    done: bool
    start: float | None = None
    end: float | None = None
    due: float | None = None


@dataclass(frozen=True)
class NoVoice:
    """The source of received speech has no voice (a server started without --speech); `error`
    is a LiveCCError naming the fix."""

    error: Exception


@dataclass
class _Entry:
    text: str
    pieces: deque = field(default_factory=deque)
    done: bool = False


class ReceivedVoice(Synthesizer):
    """The player's synthesizer for received speech: `stream(text)` yields the audio received for
    that phrase (a phrase the player's scheduler merged: its parts' audio in turn), waiting for
    pieces still on their way."""

    name = "server"
    sample_rate = SAMPLE_RATE

    def __init__(self) -> None:
        self._entries: deque[_Entry] = deque()
        self._cond = threading.Condition()
        self._interrupted = False

    def receive(self, text: str, samples: np.ndarray, done: bool) -> bool:
        """Audio of the phrase `text`; True when it begins a new phrase."""
        with self._cond:
            last = self._entries[-1] if self._entries else None
            new = last is None or last.done or last.text != text
            if new and not len(samples):
                return False  # nothing was said (the server dropped or cut it)
            if new:
                last = _Entry(text)
                self._entries.append(last)
                while len(self._entries) > MAX_ENTRIES:
                    self._entries.popleft()
            if len(samples):
                last.pieces.append(np.asarray(samples, dtype=np.float32))
            last.done = done
            self._cond.notify_all()
            return new

    def synthesize(self, text: str) -> np.ndarray:
        pieces = list(self.stream(text))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def stream(self, text: str) -> Iterator[np.ndarray]:
        with self._cond:
            self._interrupted = False
            parts = self._take(text.strip())
        for entry in parts:
            while (piece := self._next_piece(entry)) is not None:
                yield piece

    def _take(self, text: str) -> list[_Entry]:
        """The received phrases that say `text`, in order, and forget those before them."""
        entries = list(self._entries)
        for first in range(len(entries)):
            said = ""
            for last in range(first, len(entries)):
                said = f"{said} {entries[last].text}".strip()
                if said == text:
                    for _ in range(last + 1):
                        self._entries.popleft()
                    return entries[first:last + 1]
                if not text.startswith(said):
                    break
        return []

    def _next_piece(self, entry: _Entry) -> np.ndarray | None:
        with self._cond:
            ready = self._cond.wait_for(lambda: entry.pieces or entry.done or self._interrupted, PIECE_WAIT_S)
            if not ready or self._interrupted or not entry.pieces:
                return None
            return entry.pieces.popleft()

    def interrupt(self) -> None:
        with self._cond:
            self._interrupted = True
            self._cond.notify_all()


def play_received(player, audio: ReceivedAudio) -> None:
    """Hand `audio` to `player` (a SpeechPlayer whose synthesizer is a ReceivedVoice): the phrase
    enters its scheduler with its first piece."""
    voice = player.synth
    if not isinstance(voice, ReceivedVoice) or not voice.receive(audio.text, audio.samples, audio.done):
        return
    now = player.clock()
    here = player.video.now()
    start = here if audio.start is None else audio.start
    end = here if audio.end is None else audio.end
    player.say_phrase(Phrase(audio.text, audio.kind, start, end, audio.due, ready_at=now), key=audio.key)
