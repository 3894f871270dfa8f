"""Pitch-preserving speed-up for speech that has fallen behind the picture (WSOLA).

Commentary arrives about as fast as speech can say it, so a voice that falls behind never catches
up by itself (a queue at full load). Like a podcast player at 1.3x, the player plays the backlog a
little faster instead of dropping it: `catch_up_rate` picks the rate from the speech still to say,
and `TimeStretcher` applies it to streamed pieces without changing the pitch.

WSOLA (waveform-similarity overlap-add): output frames of `frame` samples, Hann-windowed at 50%
overlap, are cut from the input `rate` times further apart than they are laid down; each cut is
moved by up to `search` samples to where it best continues the previous one (cross-correlation),
so the waveform stays in phase. At rate 1 each cut is the natural continuation and the output
equals the input. The rate may change between pieces.
"""

from __future__ import annotations

import numpy as np


def catch_up_rate(backlog_s: float, horizon_s: float, max_rate: float) -> float:
    """The playback rate that says `backlog_s` of speech (at normal speed) in about `horizon_s`,
    never slower than normal nor faster than `max_rate`."""
    if max_rate <= 1.0 or not backlog_s > horizon_s:
        return 1.0
    return min(max_rate, backlog_s / horizon_s)


class TimeStretcher:
    """Streams float32 mono audio through WSOLA at a rate given per piece. One per phrase."""

    def __init__(self, sample_rate: int, frame_ms: float = 20.0, search_ms: float = 5.0) -> None:
        self.hop = max(16, int(sample_rate * frame_ms / 2000))  # output samples laid down per frame
        self.frame = 2 * self.hop
        self.search = max(1, int(sample_rate * search_ms / 1000))
        self.window = np.sin(np.pi * np.arange(self.frame) / self.frame) ** 2  # periodic Hann: sums to 1 at 50%
        pad = self.hop + self.search  # the first frame starts a hop early, so sample 0 gets both halves
        self._input = np.zeros(pad, np.float32)
        self._base = -pad  # input index of self._input[0]
        self._cut = float(-self.hop)  # input index of the next frame's nominal cut
        self._follow = -self.hop  # input index that continues the last frame naturally
        self._tail = np.zeros(self.hop)  # the last frame's second half, still to be overlapped
        self._frames = 0
        self._end = None  # input length, once flushed

    def process(self, audio: np.ndarray, rate: float = 1.0) -> np.ndarray:
        """The output for `audio` at `rate` (>= 1 speeds up); holds back about one frame."""
        if self._end is not None:
            raise RuntimeError("TimeStretcher: the phrase was flushed; use a new stretcher")
        self._input = np.concatenate([self._input, np.asarray(audio, np.float32).reshape(-1)])
        return self._run(rate)

    def flush(self) -> np.ndarray:
        """The rest of the phrase, at its end (again: nothing more)."""
        if self._end is not None:
            return np.zeros(0, np.float32)
        self._end = self._base + len(self._input)
        self._input = np.concatenate([self._input, np.zeros(self.frame + 2 * self.search, np.float32)])
        return self._run(1.0)

    def _run(self, rate: float) -> np.ndarray:
        out = []
        available = self._base + len(self._input)
        while True:
            nominal = int(round(self._cut))
            if nominal + self.frame + self.search > available or (self._end is not None and nominal >= self._end):
                break
            start = self._choose(nominal, rate)
            frame = self._slice(start, self.frame) * self.window
            if self._frames:  # the first frame's first half is padding
                out.append((frame[:self.hop] + self._tail).astype(np.float32))
            self._tail = frame[self.hop:]
            self._follow = start + self.hop
            self._cut += self.hop * max(1.0, rate)
            self._frames += 1
        self._trim()
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _choose(self, nominal: int, rate: float) -> int:
        """Where to cut the next frame: within +-search of `nominal`, the place most like the natural
        continuation of the last frame (normalized cross-correlation). At rate 1, when the natural
        continuation is in reach, it is taken as is, so unhurried audio passes through unchanged."""
        if abs(self._follow - nominal) <= self.search and rate <= 1.0:
            return self._follow
        template = self._slice(self._follow, self.frame)
        lo = max(nominal - self.search, self._base)
        region = self._slice(lo, self.frame + nominal + self.search - lo)
        corr = np.correlate(region, template, mode="valid")
        energy = np.convolve(region * region, np.ones(self.frame), mode="valid")[: corr.size]
        score = corr / np.sqrt(energy + 1e-12) - 1e-9 * np.abs(np.arange(corr.size) + lo - nominal)
        return lo + int(np.argmax(score))

    def _slice(self, start: int, length: int) -> np.ndarray:
        i = start - self._base
        return self._input[i:i + length].astype(np.float64)

    def _trim(self) -> None:
        """Drop input that no later cut or template can reach."""
        keep_from = min(int(self._cut) - self.search, self._follow) - self._base
        if keep_from > 4 * self.frame:
            self._input = self._input[keep_from:]
            self._base += keep_from
