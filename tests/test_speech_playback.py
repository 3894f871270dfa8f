"""Real playback through PortAudio into an ALSA null device set up here; no stub of
sounddevice (issue 4, acceptance 3)."""

from __future__ import annotations

import builtins
import time

import numpy as np
import pytest

from tts.player import PlayerConfig, SpeechPlayer, resolve_output_device
from tts.synth import SpeechError, Synthesizer

sd = pytest.importorskip("sounddevice", reason="sounddevice needs libportaudio2 (apt)")



class ToneSynth(Synthesizer):
    sample_rate = 24000

    def synthesize(self, text: str) -> np.ndarray:
        t = np.arange(int(0.3 * self.sample_rate)) / self.sample_rate
        return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture
def no_audio(tmp_path, monkeypatch):
    """No .asoundrc: on a machine without a sound card ALSA then offers no output device."""
    monkeypatch.setenv("HOME", str(tmp_path))
    sd._terminate()
    sd._initialize()
    if any(d["max_output_channels"] > 0 for d in sd.query_devices()):
        pytest.skip("this machine has a real sound card")
    yield
    sd._terminate()
    monkeypatch.undo()
    sd._initialize()


def test_player_plays_through_a_real_stream(null_audio):
    player = SpeechPlayer(ToneSynth(), PlayerConfig(device="default", block_size=512))
    with player:
        assert player._stream.active
        player.say_answer("hello", done=True)
        assert player.drain(timeout=10.0)
        deadline = time.monotonic() + 5.0
        while player.stats.blocks_played < 14 and time.monotonic() < deadline:
            time.sleep(0.05)  # the device thread plays in real time; wait for it, bounded
        assert player.stats.blocks_played >= 14  # 0.3 s of audio in 512-sample blocks
        assert player.started and player.started[0].phrase.text == "hello"
    assert player.state == "off"


def test_device_by_name_and_missing_device_message(null_audio):
    assert resolve_output_device("nullout") >= 0
    with pytest.raises(SpeechError, match="no audio output device.*--audio-device"):
        resolve_output_device("no such card")


def test_no_device_at_all_names_the_fix(no_audio):
    with pytest.raises(SpeechError, match="no audio output device.*disable speech"):
        SpeechPlayer(ToneSynth()).start()


def test_callback_on_an_empty_queue_returns_silence_at_once(null_audio):
    player = SpeechPlayer(ToneSynth(), PlayerConfig(block_size=256))
    out = np.full((256, 1), 9.0, dtype=np.float32)
    t0 = time.perf_counter()
    player._callback(out, 256, None, sd.CallbackFlags())
    assert time.perf_counter() - t0 < 0.05  # no wait on the empty queue
    assert not out.any() and player.stats.silent_callbacks == 1
    player.say_answer("hi", done=True)
    player.pump()
    for _ in range(3):
        player._callback(out, 256, None, sd.CallbackFlags())
    player._blocks.queue.clear()  # the synthesizer fell behind mid-phrase
    player._callback(out, 256, None, sd.CallbackFlags())
    assert not out.any() and player.stats.underruns == 1


@pytest.fixture
def no_portaudio(monkeypatch):
    """`import sounddevice` fails as it does on a machine without libportaudio2."""
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


def test_missing_portaudio_library_names_the_fix(no_portaudio):
    with pytest.raises(SpeechError, match="PortAudio library not found.*libportaudio2.*make deps.*--voice none"):
        resolve_output_device(None)
    with pytest.raises(SpeechError, match="libportaudio2"):
        SpeechPlayer(ToneSynth()).start()


def test_narrate_speak_without_portaudio_is_one_line_and_exit_2(no_portaudio, tmp_path, capsys):
    from livecc.cli.main import main
    from videos import write_video

    video = write_video(tmp_path / "v.mp4", 2)
    code = main(["narrate", str(video), "--model", str(tmp_path / "no-model"), "--speak", "--voice", "espeak"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("livecc: error: cannot play audio: PortAudio library not found")
