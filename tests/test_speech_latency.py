"""Speech that keeps up (issue 13): the clause start policy, the one-phrase queue, barge-in on a
real stream, the staleness bound under the new policy, every lever's off switch, and the live
benchmark's CPU smoke run. Fake clocks; real PortAudio into an ALSA null device where a device
is used (that sink takes audio faster than real time, so timing comes from the fake clock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tts.player import PlayerConfig, SpeechPlayer
from tts.scheduler import Kind, SpeechPolicy, SpeechScheduler
from tts.synth import Synthesizer
from test_speech_policy import RATE, FakeClock, MarkerSynth

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 400  # 50 ms
FIRST, SECOND = "The man in the red jacket", "walks his dog across the street."


class LevelSynth(MarkerSynth):
    """MarkerSynth's levels (answers 0.5, commentary 0.1) in 0.1 s pieces, as a streaming engine."""

    def stream(self, text: str):
        audio = self.synthesize(text)
        for i in range(0, len(audio), RATE // 10):
            yield audio[i:i + RATE // 10]


def clock_at(t: float) -> FakeClock:
    clock = FakeClock()
    clock.t = t
    return clock


def wait_for(condition, timeout: float = 30.0) -> bool:
    """Bounded wait for the player's threads (the worker and PortAudio's)."""
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.005)
    return condition()


def device_player(policy: SpeechPolicy, clock: FakeClock, synth: Synthesizer | None = None) -> SpeechPlayer:
    config = PlayerConfig(device="default", block_size=BLOCK, live=True, policy=policy)
    return SpeechPlayer(synth or LevelSynth(), config, clock=clock).start()


# -- the phrase policy, on a real stream ---------------------------------------------------------
def test_clause_policy_speaks_the_first_fragment_before_the_second_arrives(null_audio):
    clock = clock_at(3.0)
    with device_player(SpeechPolicy(start_at="clause"), clock) as player:
        player.say_commentary(FIRST, 0.0, 3.0)
        assert wait_for(lambda: len(player.started) == 1)
        first = player.started[0]
        assert (first.phrase.text, first.clock) == (FIRST, 3.0)  # began while the video was at 3 s
        clock.t = 4.0
        player.say_commentary(SECOND, 3.0, 4.0)
        assert wait_for(lambda: len(player.started) == 2)
        assert player.started[1].phrase.text == SECOND  # the sentence goes on as the next phrase


def test_sentence_policy_still_waits_for_the_full_stop(null_audio):
    clock = clock_at(3.0)
    with device_player(SpeechPolicy(start_at="sentence"), clock) as player:
        player.say_commentary(FIRST, 0.0, 3.0)
        time.sleep(0.2)  # the fake clock stands still: the pause and hold deadlines never come
        assert not player.started
        clock.t = 4.0
        player.say_commentary(SECOND, 3.0, 4.0)
        assert wait_for(lambda: len(player.started) == 1)
        assert player.started[0].phrase.text == f"{FIRST} {SECOND}"
        assert player.started[0].clock == 4.0


def test_a_lone_word_is_held_for_the_next_fragment():
    s = SpeechScheduler(SpeechPolicy(start_at="clause"))
    s.add_commentary("And", 0.0, 3.0, now=3.0)
    assert s.next_phrase(3.0) is None  # one word, no boundary: wait for the rest
    s.add_commentary("in the middle,", 3.0, 4.0, now=4.0)
    assert s.next_phrase(4.0).text == "And in the middle,"
    s.add_commentary("Lovely turn", 4.0, 5.0, now=5.0)
    assert s.next_phrase(5.0).text == "Lovely turn"  # two words are spoken at once (min_words)
    s.add_commentary("Goal!", 5.0, 6.0, now=6.0)
    assert s.next_phrase(6.0).text == "Goal!"  # short, but a sentence


# -- the queue bound -----------------------------------------------------------------------------
def test_one_phrase_queue_merges_and_drops_what_is_far_behind():
    s = SpeechScheduler(SpeechPolicy(start_at="clause", max_pending=1, max_lag_s=4.0))
    s.add_commentary("a man walks in", 0.0, 3.0, now=3.0)
    s.add_commentary("and sits down", 3.0, 4.0, now=4.0)
    phrase = s.next_phrase(4.0)
    assert phrase.text == "a man walks in and sits down" and phrase.due == 3.0  # one phrase, oldest due
    s.add_commentary("a dog barks", 4.0, 5.0, now=5.0)
    s.add_commentary("the door opens", 7.0, 8.0, now=8.0)  # 3 s after the waiting one: more than half the bound
    assert s.next_phrase(8.0).text == "the door opens"
    assert s.stats.dropped_stale == 1 and s.next_phrase(8.0) is None


def test_old_queue_keeps_phrases_apart():
    s = SpeechScheduler(SpeechPolicy(start_at="clause", max_pending=8))
    s.add_commentary("a man walks in", 0.0, 3.0, now=3.0)
    s.add_commentary("and sits down", 3.0, 4.0, now=4.0)
    assert [s.next_phrase(4.0).text, s.next_phrase(4.0).text] == ["a man walks in", "and sits down"]


# -- the staleness bound ---------------------------------------------------------------------------
@pytest.mark.parametrize("start_at,max_pending", [("clause", 1), ("clause", 8), ("sentence", 8)])
def test_nothing_is_spoken_more_than_the_bound_behind(start_at, max_pending):
    """Chatty commentary (~3.5 s of speech per video second, more than catch-up's fastest rate
    can say) through the real player logic."""
    clock = FakeClock()
    policy = SpeechPolicy(max_lag_s=3.0, pause_s=1.0, max_hold_s=1.5, start_at=start_at, max_pending=max_pending)
    player = SpeechPlayer(LevelSynth(), PlayerConfig(block_size=BLOCK, queue_seconds=120.0, live=True, policy=policy),
                          clock=clock)
    block_s, step = BLOCK / RATE, 0
    while clock.t < 30.0:
        if step % 20 == 0 and clock.t >= 3.0:  # a fragment every video second
            player.say_commentary(f"at {clock.t:.0f} s the runner keeps going and going and going,", clock.t - 1, clock.t)
        player.pump()
        player.pull(BLOCK)
        step += 1
        clock.t = step * block_s
        player.set_video_time(clock.t)
    spoken = [s for s in player.started if s.phrase.kind is Kind.COMMENTARY]
    assert len(spoken) >= 5
    assert max(s.lag_s for s in spoken) <= policy.max_lag_s + block_s
    sched = player.scheduler.stats
    assert sched.dropped_stale + player.stats.stale_dropped + sched.merged + sched.dropped_overflow > 0


def test_a_started_player_is_not_started_twice(null_audio):
    clock = clock_at(0.0)
    player = device_player(SpeechPolicy(), clock)
    stream, worker = player._stream, player._worker
    with player:  # __enter__ starts it: with an open stream and a worker already, nothing new
        assert (player._stream, player._worker) == (stream, worker)
    assert player._stream is None and not worker.is_alive()


# -- barge-in on a real stream ---------------------------------------------------------------------
def test_barge_in_on_a_real_stream_stops_commentary_within_one_block(null_audio):
    clock = clock_at(3.0)
    played: list[tuple[float, bool]] = []  # (callback start, played commentary samples)

    player = device_player(SpeechPolicy(), clock)
    pull = player.pull

    def recording_pull(frames: int) -> np.ndarray:
        t = time.perf_counter()
        out = pull(frames)
        played.append((t, bool(np.any(np.isclose(out, 0.1)))))
        return out

    player.pull = recording_pull
    with player:
        player.say_commentary("a very long commentary that goes on and on " * 200, 0.0, 3.0)
        assert wait_for(lambda: any(c for _, c in played))  # commentary is playing
        barge = time.perf_counter()
        player.say_answer("ANSWER: a cat.", done=True)
        assert wait_for(lambda: player.started[-1].phrase.kind is Kind.ANSWER)
        late = [t for t, commentary in played if commentary and t > barge]
        assert len(late) <= 1  # at most the callback already under way


# -- off switches --------------------------------------------------------------------------------
def test_policy_off_switches_restore_the_old_policy(monkeypatch):
    assert (SpeechPolicy().start_at, SpeechPolicy().max_pending) == ("clause", 1)
    monkeypatch.setenv("LIVECC_SPEECH_START", "sentence")
    monkeypatch.setenv("LIVECC_SPEECH_MAX_PENDING", "8")
    old = SpeechPolicy()
    assert (old.start_at, old.max_pending) == ("sentence", 8)
    s = SpeechScheduler(old)
    s.add_commentary(FIRST, 0.0, 3.0, now=3.0)
    assert s.next_phrase(3.0) is None  # held for the full stop, as before
    monkeypatch.setenv("LIVECC_SPEECH_START", "word")
    with pytest.raises(ValueError, match="clause"):
        SpeechPolicy()


def test_chattts_off_switches(monkeypatch):
    from tts.chattts_synth import ChatTTSOptions

    fast = ChatTTSOptions()
    assert (fast.pass_first_n_batches, fast.stream_batch, fast.warm_up, fast.side_stream, fast.cuda_graph) == \
        (0, 12, True, True, True)
    monkeypatch.setenv("LIVECC_TTS_FAST_START", "0")
    monkeypatch.setenv("LIVECC_TTS_SIDE_STREAM", "0")
    monkeypatch.setenv("LIVECC_TTS_CUDA_GRAPH", "0")
    old = ChatTTSOptions()
    assert (old.pass_first_n_batches, old.stream_batch, old.warm_up, old.side_stream, old.cuda_graph) == \
        (2, 24, False, False, False)
    monkeypatch.setenv("LIVECC_TTS_FAST_START", "maybe")  # yes/no are switch spellings now (engine/flags.py)
    with pytest.raises(ValueError, match="LIVECC_TTS_FAST_START='maybe' is not one of 1, 0"):
        ChatTTSOptions()


def test_a_bad_switch_does_not_break_the_import(monkeypatch):
    env = dict(os.environ, LIVECC_SPEECH_START="word", LIVECC_SPEECH_MAX_PENDING="lots", LIVECC_TTS_FAST_START="yes",
               LIVECC_SPEECH_MAX_RATE="fast", LIVECC_TTS_CUDA_GRAPH="maybe",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", "import tts, tts.cli_support, tts.chattts_synth"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    monkeypatch.setenv("LIVECC_SPEECH_MAX_PENDING", "lots")
    with pytest.raises(ValueError, match="LIVECC_SPEECH_MAX_PENDING='lots' is not a whole number >= 1"):
        SpeechPolicy()


@pytest.mark.parametrize("env, flags, message", [
    ({"LIVECC_SPEECH_START": "word"}, [],
     "bad environment setting: LIVECC_SPEECH_START='word' is not one of clause, sentence"),
    ({"LIVECC_SPEECH_MAX_RATE": "3"}, [],
     "bad environment setting: LIVECC_SPEECH_MAX_RATE='3' is not a number from 1 to 2"),
    ({}, ["--speech-max-lag", "0.2"], "bad --speech-max-lag: speech max lag must be > 0.5 s, got 0.2"),
])
def test_narrate_names_the_bad_setting_in_one_line(env, flags, message, tmp_path, monkeypatch, capsys):
    from livecc.cli.main import main
    from videos import write_video

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    video = write_video(tmp_path / "v.mp4", 2)
    code = main(["narrate", str(video), "--model", str(tmp_path / "no-model"), "--speech-wav",
                 str(tmp_path / "speech.wav"), "--voice", "none", *flags])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"livecc: error: {message}"


# -- the benchmark's CPU smoke run -----------------------------------------------------------------
@pytest.mark.slow
def test_bench_live_smoke_runs_and_reports(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_live.py"), "--smoke", "--voice", "none",
                           "--phases", "base:4,on:4,on-catchup:3,on@1.25x1.5:3", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("live_*_smoke.json")).read_text())
    phases = {p["phase"]: p for p in report["phases"]}
    assert set(phases) == {"base", "on", "on-catchup", "on@1.25x1.5"}
    # on-LEVER runs the player with that lever's switch off, and only that phase
    assert (phases["on"]["policy"]["max_rate"], phases["on-catchup"]["policy"]["max_rate"]) == (1.75, 1.0)
    assert phases["on-catchup"]["sped_up_pieces"] == 0 and phases["on-catchup"]["comments"] >= 1
    assert phases["on-catchup"]["mean_rate"] == 1.0 and phases["on-catchup"]["fast_share"] == 0.0
    variant = phases["on@1.25x1.5"]  # on@RATExHORIZON: the catch-up policy under test
    assert (variant["policy"]["max_rate"], variant["policy"]["catch_up_horizon_s"]) == (1.25, 1.5)
    assert 1.0 <= variant["mean_rate"] <= 1.25 and variant["fast_share"] == 0.0
    on = phases["on"]
    assert on["caption_s"]["n"] == on["engine"]["chunks"] >= 2
    assert on["comments"] >= 1 and on["first_audio_s"]["n"] >= 1
    assert on["first_audio_s"]["p50"] > on["caption_s"]["p50"] > 0  # speech follows its caption
    assert "chunk_p95_ratio" in report and (tmp_path / next(tmp_path.glob("*.md")).name).read_text()


# -- the desktop status bar ----------------------------------------------------------------------
def test_status_bar_text_follows_the_players_measured_voice_lag(qtbot):
    from desktop_app.speech import SpeechController

    controller = SpeechController()
    clock = clock_at(3.0)
    player = SpeechPlayer(LevelSynth(), PlayerConfig(block_size=BLOCK, queue_seconds=120.0, live=False), clock=clock)
    controller.player = player
    assert controller.voice_lag == "Voice –"  # nothing spoken yet
    player.say_commentary("a man walks in and sits down", 0.0, 3.0)
    player.set_video_time(3.8)  # the listener's video moved on while it was synthesized
    player.pump()
    player.pull(BLOCK)
    with qtbot.waitSignal(controller.voice_lag_changed, timeout=2000) as shown:
        controller._poll()
    assert shown.args == ["Voice +0.8 s"]
    controller.player = None
    controller.shutdown(1.0)
