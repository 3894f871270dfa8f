"""Catch-up (issue 13): speech that has fallen behind plays faster with its pitch kept, so a voice
that falls behind catches up instead of staying behind; LIVECC_SPEECH_MAX_RATE=1 is the old voice.
The stretcher is checked on signals whose pitch and level are known; the player runs its real
worker (`pump`) and device side (`pull`) on a fake clock."""

from __future__ import annotations

import numpy as np
import pytest

from engine.flags import FlagError as EnvSettingError
from tts.player import PlayerConfig, SpeechPlayer
from tts.scheduler import Kind, SpeechPolicy
from tts.stretch import TimeStretcher, catch_up_rate
from tts.synth import Synthesizer
from tts.timeline import SpeechTimeline
from test_speech_policy import FakeClock

SR = 24000


def voiced(seconds: float, f0: float = 180.0, seed: int = 0) -> np.ndarray:
    """A vowel-like test signal: a pitched harmonic tone with a slow loudness swell and some noise."""
    t = np.arange(int(seconds * SR)) / SR
    tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3))
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * tone * (1 + 0.3 * np.sin(2 * np.pi * 2 * t)) + 0.01 * noise).astype(np.float32)


def stretch(audio: np.ndarray, rates, piece: int = 6144) -> np.ndarray:
    """Stream `audio` through one stretcher in pieces, rate i for piece i (cycling)."""
    stretcher, out = TimeStretcher(SR), []
    for i, start in enumerate(range(0, len(audio), piece)):
        out.append(stretcher.process(audio[start:start + piece], rates[i % len(rates)]))
    out.append(stretcher.flush())
    return np.concatenate(out)


def pitch(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / SR)[np.argmax(spectrum)])


def loudness(audio: np.ndarray, window: int = 240) -> np.ndarray:
    frames = audio[: len(audio) // window * window].reshape(-1, window)
    return np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))


@pytest.mark.parametrize("piece", [100, 1000, 6144, 48000])
def test_at_normal_speed_the_audio_passes_through_unchanged(piece):
    audio = voiced(1.3)
    assert np.array_equal(stretch(audio, [1.0], piece), audio)


@pytest.mark.parametrize("rate", [1.2, 1.5, 2.0])
def test_faster_speech_keeps_its_pitch_and_its_level(rate):
    audio = voiced(2.0)
    out = stretch(audio, [rate])
    assert len(out) == pytest.approx(len(audio) / rate, rel=0.03)
    assert pitch(out) == pytest.approx(pitch(audio), rel=0.01)  # resampling would raise it by `rate`
    # cuts that do not line up in phase cancel: the level would dip every frame
    inner = loudness(out)[5:-5]
    assert inner.min() > 0.6 * loudness(audio)[5:-5].min()


def test_a_flushed_phrase_is_finished():
    stretcher = TimeStretcher(SR)
    out = np.concatenate([stretcher.process(voiced(0.5), 1.5), stretcher.flush()])
    assert len(out) > 0 and stretcher.flush().size == 0  # a second flush adds nothing
    with pytest.raises(RuntimeError, match="new stretcher"):
        stretcher.process(voiced(0.1))


def test_the_rate_can_change_between_pieces():
    audio = voiced(3.0)
    out = stretch(audio, [1.0, 1.5], piece=SR // 4)  # 0.25 s pieces, alternating
    expected = len(audio) / 2 + len(audio) / 2 / 1.5
    assert len(out) == pytest.approx(expected, rel=0.05)
    assert pitch(out) == pytest.approx(pitch(audio), rel=0.01)


def test_catch_up_rate_says_the_backlog_in_the_horizon():
    assert catch_up_rate(0.5, horizon_s=1.0, max_rate=1.5) == 1.0  # on time: normal speed
    assert catch_up_rate(1.2, horizon_s=1.0, max_rate=1.5) == pytest.approx(1.2)
    assert catch_up_rate(9.0, horizon_s=1.0, max_rate=1.5) == 1.5  # never faster than the cap
    assert catch_up_rate(9.0, horizon_s=1.0, max_rate=1.0) == 1.0  # the off switch


# -- the player --------------------------------------------------------------------------------
class ToneSynth(Synthesizer):
    """A pitched voice at 14 characters a second (English speech), in 0.25 s streamed pieces."""

    sample_rate = SR

    def synthesize(self, text: str) -> np.ndarray:
        return voiced(len(text) / 14.0, f0=300.0 if text.startswith("ANSWER") else 180.0)

    def stream(self, text: str):
        audio = self.synthesize(text)
        for i in range(0, len(audio), SR // 4):
            yield audio[i:i + SR // 4]


COMMENTS = ["The home side kick off", "from left to right,", "nice early pressure", "from the number nine",
            "who wins it back,", "", "plays it wide", "to the full back.", "The cross comes in", ""]


def live_commentary(policy: SpeechPolicy, seconds: float = 60.0):
    """Commentary as fast as it can be said (one fragment a second), played on a fake clock."""
    clock, block = FakeClock(), 1200
    config = PlayerConfig(block_size=block, queue_seconds=120.0, live=True, policy=policy)  # pump() cannot wait
    player = SpeechPlayer(ToneSynth(), config, clock=clock)
    played, step, steps_per_s = [], 0, SR // block
    while clock.t < seconds:
        if step % steps_per_s == 0 and clock.t >= 1.0:
            player.say_commentary(COMMENTS[step // steps_per_s % len(COMMENTS)], clock.t - 1, clock.t)
        player.pump()
        played.append(player.pull(block))
        step += 1
        clock.t = step * block / SR
        player.set_video_time(clock.t)
    return player, np.concatenate(played)


def lags(player: SpeechPlayer) -> np.ndarray:
    return np.array([s.lag_s for s in player.started if s.phrase.kind is Kind.COMMENTARY])


def test_catch_up_keeps_the_voice_near_the_picture():
    policy = SpeechPolicy(max_lag_s=4.0, max_rate=1.5)
    caught_up, _ = live_commentary(policy)
    behind, _ = live_commentary(SpeechPolicy(max_lag_s=4.0, max_rate=1.0))
    assert caught_up.stats.sped_up_pieces > 0 and 1.0 < caught_up.stats.fastest_rate <= 1.5
    assert np.percentile(lags(caught_up), 95) < 0.6 * np.percentile(lags(behind), 95)
    dropped = lambda p: p.scheduler.stats.dropped_stale + p.stats.stale_dropped  # noqa: E731
    assert dropped(caught_up) <= dropped(behind)


def test_the_speech_rate_is_tallied_over_what_is_heard():
    caught_up, _ = live_commentary(SpeechPolicy(max_lag_s=4.0, max_rate=1.5))
    plain, _ = live_commentary(SpeechPolicy(max_lag_s=4.0, max_rate=1.0))
    assert plain.stats.said_s > 10 and plain.stats.played_s == plain.stats.said_s
    assert (plain.stats.mean_rate, plain.stats.fast_share) == (1.0, 0.0)
    stats = caught_up.stats
    assert 1.0 < stats.mean_rate <= 1.5 and stats.played_s < stats.said_s
    assert (stats.fast_share > 0) == (stats.fastest_rate > 1.25) and stats.fast_share <= 1.0


def test_without_catch_up_the_voice_is_played_as_synthesized():
    player, played = live_commentary(SpeechPolicy(max_lag_s=4.0, max_rate=1.0), seconds=12.0)
    assert player.stats.sped_up_pieces == 0
    first = next(s.phrase.text for s in player.started)
    expected = ToneSynth().synthesize(first)
    start = int(np.flatnonzero(played)[0])
    assert np.array_equal(played[start:start + len(expected)], expected)


def test_the_wav_writer_catches_up_as_the_player_does():
    def placed(max_rate: float):
        timeline = SpeechTimeline(ToneSynth(), SpeechPolicy(max_lag_s=4.0, max_rate=max_rate))
        for k in range(60):
            timeline.add_commentary(COMMENTS[k % len(COMMENTS)], float(k), k + 1.0)
        timeline.finish()
        return timeline.placements

    fast, slow = placed(1.5), placed(1.0)
    lag = lambda placements: np.percentile([p.start - p.phrase.due for p in placements], 95)  # noqa: E731
    assert lag(fast) < 0.6 * lag(slow)
    said = lambda p: len(ToneSynth().synthesize(p.phrase.text)) / SR  # noqa: E731
    assert any(p.end - p.start < 0.9 * said(p) for p in fast)  # some phrases were sped up
    assert all(p.end - p.start == pytest.approx(said(p), abs=1e-3) for p in slow)
    assert all(b.start >= a.end for a, b in zip(fast, fast[1:]))  # never overlapping


def test_answers_are_said_at_the_voices_own_speed():
    clock = FakeClock()
    config = PlayerConfig(block_size=1200, queue_seconds=120.0, policy=SpeechPolicy(max_rate=1.5))
    player = SpeechPlayer(ToneSynth(), config, clock=clock)
    for i in range(5):  # plenty of commentary waiting: catch-up would speed this up
        player.say_commentary(COMMENTS[i], float(i), i + 1.0)
    player.say_answer("ANSWER: the number nine won it back in midfield.", done=True)
    player.pump()
    answer = ToneSynth().synthesize("ANSWER: the number nine won it back in midfield.")
    audio = np.concatenate([player.pull(1200) for _ in range(len(answer) // 1200 + 1)])
    assert np.array_equal(audio[: len(answer)], answer)
    assert player.stats.sped_up_pieces == 0


def test_the_catch_up_switch(monkeypatch):
    assert SpeechPolicy().max_rate == 1.75
    monkeypatch.setenv("LIVECC_SPEECH_MAX_RATE", "1")
    assert SpeechPolicy().max_rate == 1.0  # off: the voice's own speed, always
    monkeypatch.setenv("LIVECC_SPEECH_MAX_RATE", "1.25")
    assert SpeechPolicy().max_rate == 1.25
    for bad in ("fast", "0.5", "3", "nan"):
        monkeypatch.setenv("LIVECC_SPEECH_MAX_RATE", bad)
        with pytest.raises(EnvSettingError, match=f"LIVECC_SPEECH_MAX_RATE='{bad}' is not a number from 1 to 2"):
            SpeechPolicy()
