"""The synthesizer interface: text in, float32 mono audio out, whole or in pieces."""

from __future__ import annotations

import abc
from collections.abc import Iterator

import numpy as np

from engine import LiveCCError


class SpeechError(LiveCCError):
    """Speech cannot run as asked (missing engine, no audio device, bad voice); names the fix. Codes:
    "audio-device", "audio-library", "voice" (a front end words its own fix for them)."""

    code = "speech"


class Synthesizer(abc.ABC):
    """Turns text into float32 mono samples in [-1, 1] at `sample_rate` Hz."""

    name: str = "synth"
    sample_rate: int = 24000

    @abc.abstractmethod
    def synthesize(self, text: str) -> np.ndarray:
        """The whole utterance as one 1-D float32 array (empty for empty text)."""

    def stream(self, text: str) -> Iterator[np.ndarray]:
        """Pieces of the utterance in order, so playback can start early. Default: one piece."""
        audio = self.synthesize(text)
        if audio.size:
            yield audio

    def interrupt(self) -> None:
        """Ask a running `stream()` to stop soon (barge-in). Default: nothing to interrupt."""

    def close(self) -> None:
        """Release models or processes. Idempotent."""


class NullSynth(Synthesizer):
    """Silence of a plausible length (for silent runs and for timing the policies)."""

    name = "null"

    def __init__(self, sample_rate: int = 16000, seconds_per_char: float = 0.0) -> None:
        self.sample_rate = sample_rate
        self.seconds_per_char = seconds_per_char  # 0.0: emit nothing at all

    def synthesize(self, text: str) -> np.ndarray:
        n = int(round(len(text.strip()) * self.seconds_per_char * self.sample_rate))
        return np.zeros(n, dtype=np.float32)


def as_mono_float32(audio: np.ndarray) -> np.ndarray:
    """Flatten (1, n) or (n, 1) to (n,), float32, clipped to [-1, 1]."""
    flat = np.asarray(audio, dtype=np.float32).reshape(-1)
    return np.clip(flat, -1.0, 1.0)
