"""`livecc narrate` / `livecc ask` on generated videos with the tiny model (acceptance 4, 6)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livecc.cli.main import main
from videos import write_video

SMALL = ["--max-pixels", "20000"]  # keeps the tiny model fast; the pipeline is the same


@pytest.fixture(scope="module")
def video20(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "shapes20.mp4", seconds=20, fps=30)


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    def secs(stamp: str) -> float:
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for block in text.strip().split("\n\n"):
        lines = block.splitlines()
        assert lines[0].isdigit(), block
        a, b = re.fullmatch(r"(\S+) --> (\S+)", lines[1]).groups()
        cues.append((secs(a), secs(b), "\n".join(lines[2:])))
    return cues


def test_narrate_writes_ordered_subtitles_and_one_jsonl_record_per_chunk(tiny_model_dir, video20, tmp_path, capsys):
    srt, vtt, jsonl = tmp_path / "out.srt", tmp_path / "out.vtt", tmp_path / "out.jsonl"
    code = main(["narrate", str(video20), "--model", str(tiny_model_dir), "--srt", str(srt), "--vtt", str(vtt),
                 "--jsonl", str(jsonl), *SMALL])
    assert code == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 1 + (20 - 3)  # a 3 s first chunk, then one per second
    assert [r["chunk_index"] for r in records] == list(range(18))
    assert records[0]["start"] == 0.0 and records[0]["end"] == 3.0 and records[-1]["end"] == 20.0
    cues = parse_srt(srt.read_text())
    assert cues, "no subtitles"
    for (a0, b0, _), (a1, b1, _) in zip(cues, cues[1:]):
        assert a0 < b0 <= a1 < b1  # ordered, non-overlapping
    spoken = [(r["start"], r["end"]) for r in records if r["text"]]
    assert [(a, b) for a, b, _ in cues] == spoken  # every comment is a cue over exactly its chunk
    after3 = [(r["start"], r["end"]) for r in records[1:]]
    assert after3 == [(3.0 + k, 4.0 + k) for k in range(17)]  # chunks tile the video after 3 s
    assert vtt.read_text().startswith("WEBVTT")
    assert len(re.findall("-->", vtt.read_text())) == len(cues)
    out = capsys.readouterr().out
    assert "[00:00.0-00:03.0]" in out or not records[0]["text"]


def test_realtime_paces_to_wall_clock(tiny_model_dir, tmp_path):
    video = write_video(tmp_path / "five.mp4", seconds=5, fps=30)
    jsonl = tmp_path / "rt.jsonl"
    t0 = time.monotonic()
    assert main(["narrate", str(video), "--model", str(tiny_model_dir), "--realtime", "--jsonl", str(jsonl), *SMALL]) == 0
    elapsed = time.monotonic() - t0
    assert elapsed >= 4.5, f"a 5 s video narrated in {elapsed:.1f} s is not paced to wall-clock"
    assert len(jsonl.read_text().splitlines()) >= 2


def test_ask_answers_from_the_video_up_to_a_time(tiny_model_dir, video20, capsys):
    """--at as m:ss; while it watches, the same progress bar as narrate (on stderr, the answer alone on stdout)."""
    assert main(["ask", str(video20), "What is moving?", "--at", "0:06", "--model", str(tiny_model_dir),
                 "--max-answer-tokens", "8", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert out.strip() and "watching" not in out
    progress = [line for line in re.split(r"[\r\n]", err) if line.startswith("watching ")]
    assert progress and "6.0/6.0s" in progress[-1] and "context " in progress[-1], err


def test_ask_a_question_over_the_kv_budget_exits_1_with_the_note_and_keeps_the_record(tiny_model_dir, video20,
                                                                                        tmp_path, capsys):
    jsonl = tmp_path / "answer.jsonl"
    question = "word " * 790  # under the 4000-character cap; over 2049 tokens of the tiny tokenizer
    assert main(["ask", str(video20), question, "--at", "0:02", "--model", str(tiny_model_dir), "--kv-budget", "2049",
                 "--max-answer-tokens", "8", "--jsonl", str(jsonl), *SMALL]) == 1
    err = capsys.readouterr().err
    assert "livecc: error: not answered" in err and "KV budget of 2049 tokens" in err and "Traceback" not in err
    record = json.loads(jsonl.read_text().splitlines()[-1])
    assert record["type"] == "answer" and record["text"] == "" and "not answered" in record["note"]


def _bad_inputs(tmp_path: Path, video: Path) -> dict[str, list[str]]:
    text_mp4 = tmp_path / "notes.mp4"
    text_mp4.write_text("this is not a video\n" * 50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(video.read_bytes()[: video.stat().st_size * 2 // 5])
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (llama / "model.safetensors").write_bytes(b"")
    return {
        "missing file": ["narrate", str(tmp_path / "nope.mp4")],
        "text file named .mp4": ["narrate", str(text_mp4)],
        "truncated mp4": ["narrate", str(truncated)],
        "model folder without weights": ["narrate", str(video), "--model", str(no_weights)],
        "not a Qwen2-VL folder": ["narrate", str(video), "--model", str(llama)],
        "missing model folder": ["ask", str(video), "hi", "--model", str(tmp_path / "absent")],
    }


def test_bad_input_exits_2_with_one_line(video20, tmp_path, capsys):
    for name, argv in _bad_inputs(tmp_path, video20).items():
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert len(err) == 1 and err[0].startswith("livecc: error: "), (name, err)
        assert "Traceback" not in err[0]


def test_console_script_bad_input_has_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "livecc.cli", "narrate", str(tmp_path / "missing.mp4")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "not found" in proc.stderr


def test_help_explains_every_flag():
    proc = subprocess.run([sys.executable, "-m", "livecc.cli", "narrate", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    for flag in ["--srt", "--vtt", "--jsonl", "--out-dir", "--sessions", "--query", "--model", "--realtime",
                 "--max-pixels", "--repetition-penalty"]:
        assert flag in proc.stdout


def test_vtt_escapes_markup_characters(tmp_path):
    from engine.session.events import Commentary
    from engine.output.subtitles import write_transcript

    path = write_transcript(tmp_path / "x.vtt", [Commentary(0.0, 1.0, "a < b & c > d", 0)])
    body = path.read_text().split("\n", 2)[2]
    assert "a &lt; b &amp; c &gt; d" in body and "<" not in body


def test_bad_sampling_options_exit_2(video20, capsys):
    for flags in (["--top-p", "0"], ["--temperature", "-1"], ["--repetition-penalty", "0"], ["--max-pixels", "0"]):
        assert main(["narrate", str(video20), *flags]) == 2, flags
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("livecc: error: bad option"), (flags, err)


def test_subtitle_flags_fix_the_format_whatever_the_suffix(tiny_model_dir, tmp_path):
    video = write_video(tmp_path / "four.mp4", seconds=4, fps=30)
    srt, vtt = tmp_path / "subs.sub", tmp_path / "subs"
    assert main(["narrate", str(video), "--model", str(tiny_model_dir), "--srt", str(srt), "--vtt", str(vtt),
                 *SMALL]) == 0
    assert parse_srt(srt.read_text()) and vtt.read_text().startswith("WEBVTT")


def test_a_video_too_short_for_a_chunk_says_so(tiny_model_dir, tmp_path, capsys):
    """A 0.2 s clip narrated to nothing with no word why; a longer one that is stopped early does not
    get the note."""
    video = write_video(tmp_path / "blink.mp4", seconds=0.2, fps=30)
    srt = tmp_path / "blink.srt"
    assert main(["narrate", str(video), "--model", str(tiny_model_dir), "--srt", str(srt), *SMALL]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("livecc: 0 chunks (the video ended before its second frame at 0.5 s") and srt.exists()
    from livecc.cli.narrate import Summary

    assert "too short" not in Summary(started=True).body()  # stopped before the end: no such note


def test_an_answer_cut_short_ends_its_line(capsys):
    """Ctrl-C mid-answer: `livecc: interrupted` was printed on the answer's own line."""
    from engine.session.events import Answer
    from livecc.cli.ask import _print_answer

    def cut_short():
        yield Answer("why?", "because the", False, 1.0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _print_answer(cut_short())
    assert capsys.readouterr().out == "because the\n"
