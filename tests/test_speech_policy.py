"""Phrase joining, the staleness drop and barge-in, with a fake clock (issue 4, acceptance 4).

The player runs its real worker logic (`pump`) and its real device-side logic (`pull`, what
the PortAudio callback calls) in this thread, so time is simulated exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tts.player import PlayerConfig, SpeechPlayer
from tts.scheduler import Kind, SpeechPolicy, SpeechScheduler, split_at_last_sentence_end
from tts.synth import Synthesizer

RATE = 8000
BLOCK = 400  # 50 ms


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class MarkerSynth(Synthesizer):
    """Constant-level audio, 60 ms per character: answers at 0.5, commentary at 0.1."""

    sample_rate = RATE

    def synthesize(self, text: str) -> np.ndarray:
        level = 0.5 if text.startswith("ANSWER") else 0.1
        return np.full(int(0.06 * len(text) * RATE), level, dtype=np.float32)


def test_sentence_split():
    assert split_at_last_sentence_end("a dog runs. it jumps") == ("a dog runs.", "it jumps")
    assert split_at_last_sentence_end("no end yet") == ("", "no end yet")
    assert split_at_last_sentence_end("3.5 m tall") == ("", "3.5 m tall")  # no split inside numbers


def test_fragments_join_at_punctuation():
    s = SpeechScheduler(SpeechPolicy(start_at="sentence"))
    s.add_commentary("a man walks", 0.0, 3.0, now=3.0)
    s.add_commentary("into the kitchen.", 3.0, 4.0, now=4.0)
    s.add_commentary("He opens", 4.0, 5.0, now=5.0)
    phrase = s.next_phrase(video_now=5.0)
    assert phrase.text == "a man walks into the kitchen."
    assert (phrase.video_start, phrase.video_end, phrase.due) == (0.0, 4.0, 3.0)
    assert s.next_phrase(video_now=5.0) is None  # "He opens" is held: no sentence end yet


def test_pause_and_silence_release_a_partial_phrase():
    policy = SpeechPolicy(pause_s=1.2, max_hold_s=2.5, start_at="sentence")
    s = SpeechScheduler(policy)
    s.add_commentary("a red car", 0.0, 3.0, now=3.0)
    assert s.next_deadline() == pytest.approx(4.2)
    s.poll(4.1)
    assert s.next_phrase(4.1) is None
    s.poll(4.2)
    assert s.next_phrase(4.2).text == "a red car"
    s.add_commentary("a blue bus", 4.0, 5.0, now=5.0)
    s.add_commentary("", 5.0, 6.0, now=6.0)  # the model chose silence: a pause
    assert s.next_phrase(6.0).text == "a blue bus"


def test_long_run_without_punctuation_is_released_by_max_hold():
    s = SpeechScheduler(SpeechPolicy(pause_s=1.2, max_hold_s=2.5, start_at="sentence"))
    for k in range(3):  # a fragment every second never leaves a 1.2 s pause
        s.add_commentary(f"word{k}", 3.0 + k, 4.0 + k, now=4.0 + k)
    s.poll(6.5)
    assert s.next_phrase(6.5).text == "word0 word1 word2"


def test_stale_commentary_is_dropped_not_queued():
    s = SpeechScheduler(SpeechPolicy(max_lag_s=4.0))
    s.add_commentary("old news.", 0.0, 3.0, now=3.0)
    s.add_commentary("fresh news.", 6.0, 7.0, now=7.0)
    assert s.next_phrase(video_now=7.5).text == "fresh news."
    assert s.stats.dropped_stale == 1
    s.add_commentary("late.", 7.0, 8.0, now=8.0)
    assert s.next_phrase(video_now=9.0, ahead_s=3.5) is None  # would start 4.5 s behind


def test_answer_barges_in_and_streams_by_sentence():
    s = SpeechScheduler()
    s.add_commentary("a cat sleeps.", 0.0, 3.0, now=3.0)
    s.add_commentary("it wakes", 3.0, 4.0, now=4.0)
    assert s.add_answer("The cat is", done=False, now=4.1) is True  # barge-in
    assert s.next_phrase(4.1) is None  # commentary discarded; answer sentence not finished
    assert s.add_answer("The cat is grey. It has", done=False, now=4.3) is False
    assert s.next_phrase(4.3).text == "The cat is grey."
    s.add_answer("The cat is grey. It has stripes", done=True, now=4.5)
    phrase = s.next_phrase(100.0)  # answers never go stale
    assert (phrase.text, phrase.kind) == ("It has stripes", Kind.ANSWER)
    assert s.add_answer("Another answer.", done=True, now=5.0) is True  # previous was done


def _player(max_lag: float = 4.0) -> tuple[SpeechPlayer, FakeClock]:
    clock = FakeClock()
    config = PlayerConfig(block_size=BLOCK, queue_seconds=120.0, live=True,
                          policy=SpeechPolicy(max_lag_s=max_lag, pause_s=1.2, max_hold_s=2.5))
    return SpeechPlayer(MarkerSynth(), config, clock=clock), clock


def test_no_comment_is_spoken_more_than_the_bound_behind_its_video_time():
    player, clock = _player(max_lag=4.0)
    block_s = BLOCK / RATE
    step = 0
    while clock.t < 40.0:
        if step % 20 == 0 and clock.t >= 3.0:  # one chatty sentence per video second
            second = clock.t
            player.say_commentary(f"at {second:.0f} seconds a person keeps walking along.", second - 1, second)
        player.pump()
        player.pull(BLOCK)
        step += 1
        clock.t = step * block_s
        player.set_video_time(clock.t)
    started = list(player.started)
    assert len(started) >= 5
    for s in started:
        assert s.video_time - s.phrase.due <= 4.0 + block_s, s
    dropped = player.scheduler.stats.dropped_stale + player.stats.stale_dropped
    assert dropped > 0  # 3.4 s of speech per video second: the policy must have dropped some


def test_answer_starts_within_one_block_of_being_queued():
    player, clock = _player()
    player.say_commentary("a long commentary sentence that keeps going for a while.", 2.0, 3.0)
    player.pump()
    assert player.pull(BLOCK)[0] == pytest.approx(0.1)  # commentary is playing
    player.say_answer("ANSWER: it is a cat.", done=True)
    player.pump()  # the worker queued the answer audio
    block = player.pull(BLOCK)
    assert np.all(block == pytest.approx(0.5))  # the very next block is the answer
    while (b := player.pull(BLOCK)).any():
        assert np.all(b[b > 0] == pytest.approx(0.5))  # no commentary resumes after it
    assert player.started[-1].phrase.kind is Kind.ANSWER


def test_mute_silences_and_drops_pending_text():
    player, clock = _player()
    player.say_commentary("something happens.", 2.0, 3.0)
    player.pump()
    player.mute(True)
    assert player.state in ("off", "muted")
    player.say_commentary("more happens.", 3.0, 4.0)
    assert player.pump() == 0
    assert not player.pull(BLOCK).any()
    player.mute(False)
    player.say_commentary("back again.", 4.0, 5.0)
    player.pump()
    assert player.pull(BLOCK).any()


def test_worker_thread_speaks_and_stops_cleanly():
    player, _ = _player()
    player.clock = __import__("time").monotonic  # the real worker waits on real time
    player.start(open_device=False)
    assert player.state == "idle"
    player.say_answer("ANSWER: yes.", done=True)
    assert player.drain(timeout=5.0)
    assert player.pull(BLOCK).any()
    player.stop()
    assert player.state == "off"
    assert not player._worker.is_alive()
