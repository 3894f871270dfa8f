"""`livecc eval livesports-cc` generation (issue 11): LiveCC's evaluation settings and prediction
format, on the tiny model and a mini LiveSports-3K CC folder."""

from __future__ import annotations

import json

import pytest

from engine.capture.frames import RingBuffer
from livecc.cli.main import main
from engine.eval.livesports import SportsEvent, context_prompt, prediction_text
from engine.eval.streaming import ClipSource
from eval_data import build_livesports


def test_context_prompt_and_prediction_text_follow_livecc():
    full = SportsEvent("v", 1, 0.0, 5.0, "v.mp4", title="A corner", preasr="Here we go.")
    assert context_prompt(full) == (
        "You are an expert video commentator providing real-time, insightful, and engaging commentary on visual "
        "content.\nThis is a video titled \"A corner\".\nHere is previous commentary of the video:\n\nHere we go."
        "\n\nPlease continue to comment the video.")
    bare = SportsEvent("v", 2, 0.0, 5.0, "v.mp4")
    assert context_prompt(bare).endswith("on visual content.\n")
    assert prediction_text(["Nice pass ...", "", "He shoots"]) == "Nice pass He shoots..."


def test_clip_frames_count_from_the_clip_start(tmp_path):
    data = build_livesports(tmp_path / "d", seconds=4.0)
    source = ClipSource(data / "videos" / "AAAAAAAAAA1.mp4", start=1.5, end=3.5, sample_fps=2.0)
    buffer = RingBuffer(64)
    source.start(buffer)
    source._thread.join(10)
    times = [f.timestamp for f in buffer.snapshot()]
    assert times[0] == 0.0 and times == sorted(times) and 1.9 <= times[-1] <= 2.0 + 1e-6


def test_generation_writes_livecc_predictions_and_says_how_to_judge(tiny_model_dir, tmp_path, capsys):
    data = build_livesports(tmp_path / "data", seconds=8.0)
    out = tmp_path / "out"
    argv = ["eval", "livesports-cc", "--data", str(data), "--model", str(tiny_model_dir), "--out", str(out),
            "--limit", "2", "--max-pixels", "20000", "--max-new-tokens", "1"]
    assert main(argv) == 0
    preds = [json.loads(line) for line in (out / f"{tiny_model_dir.name}.jsonl").read_text().splitlines()]
    assert [(p["video_id"], p["event_id"], p["begin"], p["end"]) for p in preds] == [
        ("AAAAAAAAAA1", 1, 1.0, 6.5), ("AAAAAAAAAA1", 2, 2.0, 7.0)]
    assert all(set(p) == {"video_id", "event_id", "begin", "end", "pred"} and p["pred"].endswith("...") for p in preds)
    assert "--judge-url" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())["settings"]["session"]
    assert run["repetition_penalty"] == 1.15 and run["max_new_tokens"] == 1  # 1.15 by default; flags still win


def test_base_model_prompt_is_the_previous_asr_or_else_the_title():
    both = SportsEvent("v", 1, 0.0, 5.0, "v.mp4", title="A corner", preasr="Here we go.")
    assert context_prompt(both, instruct=False) == "Here we go."  # LiveCC: the title only without ASR
    assert context_prompt(SportsEvent("v", 2, 0.0, 5.0, "v.mp4", title="A corner"), instruct=False) == "A corner"
    assert context_prompt(SportsEvent("v", 3, 0.0, 5.0, "v.mp4"), instruct=False) == ""


def test_not_instruct_gives_the_commentator_the_base_prompt_and_is_recorded(tmp_path, monkeypatch):
    import engine.eval.streaming
    import livecc.cli.eval

    prompts: list[str] = []
    monkeypatch.setattr(livecc.cli.eval, "load", lambda args: "model")
    monkeypatch.setattr(engine.eval.streaming, "commentate",
                        lambda model, config, video, begin, end, query: prompts.append(query) or [])
    data = build_livesports(tmp_path / "data", seconds=1.0)
    out = tmp_path / "out"
    assert main(["eval", "livesports-cc", "--data", str(data), "--model", "m", "--out", str(out), "--limit", "3",
                 "--not-instruct"]) == 0
    assert prompts == ["And here they come.", "A corner", "What a game."]
    assert json.loads((out / "run.json").read_text())["settings"]["extra"] == {"prompt": "base"}
    assert json.loads((out / "summary.json").read_text())["prompt"] == "base"


def test_help_names_only_flags_that_exist(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "livesports-cc", "--help"])
    text = capsys.readouterr().out
    assert "--tasks" not in text and "--sample" in text
