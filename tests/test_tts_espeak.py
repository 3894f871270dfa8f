"""espeak-ng: real speech out of the real binary (issue 4, acceptance 2)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tts.espeak import EspeakSynth, parse_wav_stream
from tts.synth import NullSynth, SpeechError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng missing: `make deps` installs it as root")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@needs_espeak
def test_espeak_speaks_with_plausible_duration_and_energy():
    synth = EspeakSynth("en-us", words_per_minute=175)
    text = "The red ball rolls slowly across the wooden table and falls onto the floor."  # 14 words
    audio = synth.synthesize(text)
    seconds = len(audio) / synth.sample_rate
    assert audio.dtype == np.float32 and synth.sample_rate == 22050
    assert 2.5 < seconds < 9.0  # 14 words at 175 wpm is ~4.8 s, plus pauses
    assert _rms(audio) > 0.02  # speech, not silence
    frames = audio[: len(audio) // 441 * 441].reshape(-1, 441)  # 20 ms frames
    voiced = np.sqrt(np.mean(frames**2, axis=1)) > 0.01
    assert 0.3 < voiced.mean() < 0.98  # words and the gaps between them
    longer = synth.synthesize(text + " " + text)
    assert len(longer) > 1.6 * len(audio)


@needs_espeak
def test_espeak_voice_is_selectable_and_bad_voice_names_the_fix():
    assert EspeakSynth("en-gb").synthesize("hello").size > 0
    with pytest.raises(SpeechError, match="espeak-ng"):
        EspeakSynth("xx-no-such-voice")


def test_missing_espeak_names_the_fix(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SpeechError, match="apt-get install espeak-ng"):
        EspeakSynth()


def test_wav_stream_parser_ignores_placeholder_sizes():
    header = (b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x22\x56\x00\x00"
              b"\x44\xac\x00\x00\x02\x00\x10\x00data\xff\xff\xff\x7f")
    audio, rate = parse_wav_stream(header + np.array([16384, -16384], "<i2").tobytes())
    assert rate == 22050 and audio.tolist() == [0.5, -0.5]


def test_null_synth_is_silent():
    assert NullSynth().synthesize("anything").size == 0
    audio = NullSynth(16000, seconds_per_char=0.1).synthesize("abcd")
    assert audio.size == 6400 and not audio.any()
