"""`--speech-wav`: speech placed on the video timeline (issue 4, acceptance 5). Segment
onsets are found in the written WAV by energy, not taken from the code under test."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile

from engine import Commentary
from tts.cli_support import SpeechSink
from tts.espeak import EspeakSynth
from tts.scheduler import SpeechPolicy
from tts.timeline import SpeechTimeline
from test_speech_policy import MarkerSynth

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing (apt)")

FRAME_S = 0.02


def speech_onsets(audio: np.ndarray, rate: int, threshold: float = 0.01, min_gap_s: float = 0.6) -> list[float]:
    """Start times of voiced runs; gaps shorter than min_gap_s (between words) do not split."""
    n = int(FRAME_S * rate)
    frames = audio[: len(audio) // n * n].reshape(-1, n)
    voiced = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > threshold)
    onsets, last = [], -1e9
    for i in voiced:
        if (i - last) * FRAME_S > min_gap_s:
            onsets.append(i * FRAME_S)
        last = i
    return onsets


@needs_espeak
def test_segments_start_at_or_after_their_comments(tmp_path):
    # (text, start, end) fragments as LiveCC emits them: first chunk 3 s, then 1 s chunks
    events = [("A red ball appears.", 0.0, 3.0), ("", 3.0, 4.0), ("", 4.0, 5.0),
              ("It rolls to", 5.0, 6.0), ("the left.", 6.0, 7.0), ("", 7.0, 8.0), ("", 8.0, 9.0),
              ("", 9.0, 10.0), ("A blue bar spins", 10.0, 11.0), ("", 11.0, 12.0), ("", 12.0, 13.0),
              ("", 13.0, 14.0), ("Now it stops.", 14.0, 15.0), ("", 15.0, 16.0)]
    synth = EspeakSynth("en-us")
    timeline = SpeechTimeline(synth, SpeechPolicy(start_at="sentence"))  # joins "It rolls to" "the left."
    for text, start, end in events:
        timeline.add_commentary(text, start, end)
    path = tmp_path / "speech.wav"
    timeline.write(path, video_duration=16.0)

    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == synth.sample_rate and len(audio) >= 16.0 * rate
    onsets = speech_onsets(audio, rate)
    placed = timeline.placements
    assert [p.phrase.text for p in placed] == ["A red ball appears.", "It rolls to the left.",
                                               "A blue bar spins", "Now it stops."]
    assert len(onsets) == len(placed)
    for onset, placement in zip(onsets, placed):
        assert onset >= placement.phrase.video_end - FRAME_S  # never before what it describes
        assert onset == pytest.approx(placement.start, abs=0.15)
        assert onset - placement.phrase.due <= SpeechPolicy().max_lag_s
    assert onsets[2] >= 12.0 - FRAME_S  # no sentence end: held until the model's silence at 12 s


@needs_espeak
def test_backlog_is_dropped_not_delayed(tmp_path):
    synth = EspeakSynth("en-us")
    timeline = SpeechTimeline(synth, SpeechPolicy(max_lag_s=4.0))
    for k in range(10):  # far more speech than video time
        timeline.add_commentary(f"Comment number {k} is a rather long sentence about the scene.", 2.0 + k, 3.0 + k)
    timeline.finish()
    assert timeline.scheduler.stats.dropped_stale > 0
    for a, b in zip(timeline.placements, timeline.placements[1:]):
        assert b.start >= a.end  # never overlapping
    assert all(p.start - p.phrase.due <= 4.0 for p in timeline.placements)


@needs_espeak
def test_livecc_narrate_writes_speech_wav(tiny_model_dir, tmp_path):
    from livecc.cli.main import main
    from videos import write_video

    video = write_video(tmp_path / "v.mp4", 10)
    wav, jsonl = tmp_path / "speech.wav", tmp_path / "c.jsonl"
    code = main(["narrate", str(video), "--model", str(tiny_model_dir), "--max-pixels", "20000",
                 "--jsonl", str(jsonl), "--speech-wav", str(wav), "--voice", "espeak"])
    assert code == 0
    comments = [json.loads(line) for line in jsonl.read_text().splitlines()]
    spoken = [c for c in comments if c["text"].strip()]
    audio, rate = soundfile.read(wav, dtype="float32")
    assert len(audio) >= 9.5 * rate
    onsets = speech_onsets(audio, rate)
    assert spoken and onsets
    assert onsets[0] >= spoken[0]["end"] - FRAME_S  # nothing is said before the first comment exists


# -- the WAV's length: the video's when known, its speech's when not (a live source) -------------
def sink_wav(tmp_path, video_duration: float) -> tuple[np.ndarray, int]:
    """The last comment's phrase (1.14 s of audio from 3.0 s) runs past the last chunk's end (4.0 s)."""
    synth = MarkerSynth()
    policy = SpeechPolicy(start_at="clause", max_rate=1.0)  # no catch-up: the phrase as synthesized
    sink = SpeechSink(synth, wav_path=tmp_path / "speech.wav", policy=policy,
                      video_duration=video_duration)
    sink.on_event(Commentary(0.0, 3.0, "A red ball appears.", 0))
    sink.on_event(Commentary(3.0, 4.0, "", 1))
    sink.close()
    audio, rate = soundfile.read(tmp_path / "speech.wav", dtype="float32")
    return audio, rate


def test_unknown_length_keeps_the_last_phrase_whole(tmp_path):
    audio, rate = sink_wav(tmp_path, video_duration=0.0)
    spoken = len(MarkerSynth().synthesize("A red ball appears."))
    assert len(audio) == 3 * rate + spoken > 4 * rate  # past the last chunk's end: nothing cut
    assert np.all(audio[3 * rate:] > 0.05)  # the whole phrase is there, to its last sample


def test_known_length_cuts_the_wav_at_the_videos_end(tmp_path):
    audio, rate = sink_wav(tmp_path, video_duration=3.5)
    assert len(audio) == int(3.5 * rate)
    assert np.all(audio[3 * rate:] > 0.05)


# -- like the player: a phrase is taken when the voice is free ---------------------------------
def test_comments_that_come_while_the_voice_speaks_wait_and_merge_as_in_the_player():
    """Eight 2.3 s comments, one a second: the voice takes the next phrase only when it falls silent,
    so comments that came meanwhile are said together (max_pending=1), and the newest is said
    instead of being dropped behind a backlog of older ones placed one by one."""
    timeline = SpeechTimeline(MarkerSynth(), SpeechPolicy(max_rate=1.0, max_pending=1, start_at="clause"))
    words = ["Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven"]
    for k, word in enumerate(words):
        start, end = (0.0, 3.0) if k == 0 else (2.0 + k, 3.0 + k)  # a 3 s first chunk, then 1 s chunks
        timeline.add_commentary(f"{word} is said for two seconds and a bit.", start, end)
    timeline.finish(10.0)
    said = [[w for w in words if p.phrase.text.count(f"{w} is said")] for p in timeline.placements]
    assert said == [["Zero"], ["One", "Two"], ["Six"], ["Seven"]]
    for a, b in zip(timeline.placements, timeline.placements[1:]):
        assert b.start == pytest.approx(max(a.end, b.phrase.video_end))  # taken when the voice fell silent
    assert timeline.scheduler.stats.merged == 3 and timeline.scheduler.stats.dropped_stale == 1  # Three-Five


def test_voice_none_says_its_wav_is_silent_and_the_summary_lists_the_wav(tiny_model_dir, tmp_path, capsys):
    from livecc.cli.main import main
    from videos import write_video

    video = write_video(tmp_path / "v.mp4", 3)
    wav, jsonl = tmp_path / "speech.wav", tmp_path / "c.jsonl"
    assert main(["narrate", str(video), "--model", str(tiny_model_dir), "--max-pixels", "20000",
                 "--jsonl", str(jsonl), "--speech-wav", str(wav), "--voice", "none"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert f"speech: wrote {wav} (silent: --voice none says nothing; give --voice espeak or a ChatTTS seed to " \
           f"hear it)" in err, err
    assert err[-1].endswith(f"wrote {jsonl}, {wav}"), err[-1]
