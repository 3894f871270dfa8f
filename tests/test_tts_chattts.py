"""ChatTTS code path on CPU with randomly initialised assets built here (issue 4, acceptance 1).

Noise comes out, but through the real loading (`Chat._load`) and inference (`Chat.infer`,
streamed and not) code of the installed ChatTTS."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ChatTTS", reason="ChatTTS is installed by `python -m tts.install` (make test does it)")

from tts.chattts_assets import build_random_assets  # noqa: E402
from tts.chattts_synth import SAMPLE_RATE, ChatTTSOptions, ChatTTSSynth, voice_seed  # noqa: E402
from tts.factory import make_synthesizer  # noqa: E402
from tts.synth import SpeechError  # noqa: E402

SAMPLES_PER_TOKEN = 512  # one code token = 2 mel frames of 256 samples at 24 kHz


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    assets = build_random_assets(tmp_path_factory.mktemp("chattts"), scale="tiny")
    # min_token_fraction=1: random weights stop at random; this makes the length the budget's
    options = ChatTTSOptions(asset_dir=assets.root, device="cpu", tokens_per_char=2.0,
                             token_floor=8, min_token_fraction=1.0, sampling_seed=7)
    s = ChatTTSSynth(options, config=assets.config)
    yield s
    s.close()


def test_synthesis_is_float32_at_24khz_and_scales_with_text(synth):
    assert synth.sample_rate == SAMPLE_RATE == 24000
    short, long = synth.synthesize("hi there"), synth.synthesize("hello there, how are you all doing")
    for audio in (short, long):
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert np.all(np.abs(audio) <= 1.0) and np.abs(audio).max() > 0
    assert len(long) > 2 * len(short)
    _, high = synth.token_budget("hello there, how are you all doing")
    assert len(long) <= high * SAMPLES_PER_TOKEN


def test_stream_yields_pieces_that_add_up(synth):
    text = "one two three four five six seven eight nine ten"
    pieces = list(synth.stream(text))
    assert len(pieces) >= 2  # playback can start before the sentence is done
    assert all(p.dtype == np.float32 and p.ndim == 1 for p in pieces)
    _, high = synth.token_budget(text)
    assert sum(len(p) for p in pieces) == pytest.approx(high * SAMPLES_PER_TOKEN, rel=0.05)


def test_voice_seed_is_stable_and_selectable(synth):
    assert voice_seed("1234") == 1234 and voice_seed("alice") == voice_seed("alice")
    assert synth._speaker_embedding(1) == synth._speaker_embedding(1)
    assert synth._speaker_embedding(1) != synth._speaker_embedding(2)


def test_missing_assets_name_the_fix(tmp_path):
    with pytest.raises(SpeechError, match="lacks"):
        ChatTTSSynth(ChatTTSOptions(asset_dir=tmp_path, device="cpu"))


def test_factory_falls_back_to_espeak_with_a_message(tmp_path, monkeypatch):
    if not __import__("shutil").which("espeak-ng"):
        pytest.skip("espeak-ng not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no weights can be had: the fallback must kick in
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    choice = make_synthesizer("chattts", voice="2222", device="cpu")
    assert choice.synth.name == "espeak"
    assert "ChatTTS unavailable" in choice.warning and "espeak-ng" in choice.warning


def test_qwen2vl_and_chattts_import_together():
    code = "from transformers import Qwen2VLForConditionalGeneration; import ChatTTS; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
