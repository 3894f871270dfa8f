"""Hostile annotations and run state (issue 24, items 5, 10, 11 and 18): each case is one row of a
table, so the next finding is one line to add.

A file that cannot be read as the benchmark's format (wrong types, NaN, an empty list, a damaged
run.json or results line) is one line and exit 2, before any model loads. A problem of one item
(its video outside --data, a clip ending before it begins, a question too long for the context)
fails that item with its reason, never shows a path outside --data, and the run goes on."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from eval_data import build_livesports, build_ovobench, judge_argv, judge_inputs
from livecc.cli.main import main
from videos import write_video

TINY = ["--max-pixels", "20000", "--max-new-tokens", "1"]


def _ovo(edit: Callable[[list], object], seconds: float = 2.0, *flags: str) -> Callable[[Path], list[str]]:
    """A row's setup: the mini OVO-Bench with `edit` applied to its annotation list. In its 2 s videos
    every question comes after the end; in longer ones the first item's (at 4.2 s) mid-stream."""
    def setup(root: Path) -> list[str]:
        data = build_ovobench(root / "data", seconds=seconds)
        items = json.loads((data / "ovo_bench_new.json").read_text())
        edited = edit(items)
        (data / "ovo_bench_new.json").write_text(json.dumps(items if edited is None else edited))
        return ["eval", "ovobench", "--data", str(data), "--out", str(root / "out"), "--max-answer-tokens", "2",
                "--model", str(root / "no-model-loads"), *flags]
    return setup


def _sports(edit: Callable[[list], object]) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        data = build_livesports(root / "data", seconds=4.0)
        events = json.loads((data / "LiveSports-3K-CC.json").read_text())
        edited = edit(events)
        (data / "LiveSports-3K-CC.json").write_text(json.dumps(events if edited is None else edited))
        return ["eval", "livesports-cc", "--data", str(data), "--out", str(root / "out"), "--model",
                str(root / "no-model-loads")]
    return setup


def _run_state(name: str, text: str) -> Callable[[Path], list[str]]:
    """An OVO-Bench output folder holding `name` with `text` from an earlier, damaged run."""
    def setup(root: Path) -> list[str]:
        (root / "out").mkdir(parents=True)
        (root / "out" / name).write_text(text)
        return _ovo(lambda items: None)(root)
    return setup


def _judge_state(name: str, text: str, score_only: bool = False) -> Callable[[Path], list[str]]:
    """Judging inputs where `name` (relative to the root) holds `text`."""
    def setup(root: Path) -> list[str]:
        data, baseline, out = judge_inputs(root, "m", "GPT-4o")
        (root / name).write_text(text)
        if score_only:
            return ["eval", "livesports-cc", "--score-only", str(root / name)]
        return judge_argv(data, baseline, out, "http://127.0.0.1:9/v1", "m")  # never called: the files fail first
    return setup


def _set(index: int, **values) -> Callable[[list], None]:
    return lambda rows: rows[index].update(values)


# name, setup, what the one error line says
EXIT_2 = [
    ("ovo id as text", _ovo(_set(0, id="zero")), "item 0 has id 'zero', not an integer"),
    ("ovo realtime as text", _ovo(_set(0, realtime="soon")), "item 0 has realtime 'soon', not a time"),
    ("ovo realtime NaN", _ovo(_set(0, realtime=math.nan)), "item 0 has realtime nan, not a time"),
    ("ovo realtime Infinity", _ovo(_set(2, realtime=math.inf)), "item 2 has realtime inf, not a time"),
    ("ovo realtime negative", _ovo(_set(2, realtime=-3)), "item 2 has realtime -3, not a time"),
    ("ovo gt as text", _ovo(_set(0, gt="C")), "item 0 has gt 'C', not an integer from 0 to 3"),
    ("ovo gt 30", _ovo(_set(0, gt=30)), "item 0 has gt 30, not an integer from 0 to 3"),
    ("ovo gt -1", _ovo(_set(1, gt=-1)), "item 1 has gt -1, not an integer from 0 to 3"),
    ("ovo options as text", _ovo(_set(1, options="A or B")), "item 1 has options 'A or B', not a list"),
    ("ovo test_info as an int", _ovo(_set(4, test_info=5)), "item 4 has test_info 5, not a list"),
    ("ovo probe time NaN", _ovo(lambda rows: rows[5]["test_info"][1].update(realtime=math.nan)),
     "item 5 test_info[1] has realtime nan"),
    ("ovo probe type 7", _ovo(lambda rows: rows[6]["test_info"][0].update(type=7)), "has type 7, not an integer"),
    ("ovo empty list", _ovo(lambda rows: []), "holds no items"),
    ("livesports begin NaN", _sports(_set(0, begin=math.nan)), "event 0: begin nan is not a time in seconds"),
    ("livesports end Infinity", _sports(_set(1, end=math.inf)), "event 1: end inf is not a time in seconds"),
    ("livesports event_id Infinity", _sports(_set(1, event_id=math.inf)), "event 1: cannot convert"),
    ("livesports empty list", _sports(lambda rows: []), "holds no events"),
    ("truncated run.json", _run_state("run.json", '{"settings": {"benchmark": "ovo'), "run.json is damaged"),
    ("run.json a number", _run_state("run.json", "5"), "run.json is damaged"),
    ("results line 5", _run_state("results.jsonl", "5\n"), "results.jsonl line 1 is not an OVO-Bench result"),
    ("results line without probes", _run_state("results.jsonl", '{"id": 0, "task": "EPM"}\n'),
     "results.jsonl line 1 is not an OVO-Bench result"),
    ("judgments line without ab_winner",
     _judge_state("out/GPT-4o_m.jsonl", '{"video_event_id": "AAAAAAAAAA1_1", "ba_winner": "m"}\n'),
     "GPT-4o_m.jsonl line 1 is not a judgment"),
    ("score-only line without ab_winner",
     _judge_state("GPT-4o_m.jsonl", '{"video_event_id": "x", "ba_winner": "m"}\n', score_only=True),
     "GPT-4o_m.jsonl line 1 is not a judgment"),
    ("baseline line without pred", _judge_state("GPT-4o.jsonl", '{"video_id": "AAAAAAAAAA1", "event_id": 1}\n'),
     "GPT-4o.jsonl line 1 is not a caption record"),
    ("predictions line 5", _judge_state("out/m.jsonl", "5\n"), "m.jsonl line 1 is not a prediction"),
]


@pytest.mark.parametrize("setup, says", [row[1:] for row in EXIT_2], ids=[row[0] for row in EXIT_2])
def test_an_unreadable_annotation_or_run_state_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, setup, says):
    monkeypatch.setenv("JUDGE_KEY", "k")
    code = main(setup(tmp_path))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("livecc: error: ")]
    assert "Traceback" not in err and code == 2 and len(lines) == 1, err[-2000:]
    assert says in lines[0], lines[0]


def _outside(root: Path) -> Path:
    video = root / "outside" / "secret.mp4"  # a real video: a run that follows the path would play it
    video.parent.mkdir(parents=True)
    write_video(video, seconds=2.0, fps=10, width=96, height=64)
    return video


def _ovo_failing(edit: Callable[[list, Path], None], seconds: float = 2.0, *flags: str) -> Callable[[Path], list[str]]:
    """Two items, EPM (edited) and ASI (fine), so the run goes on past the failing one."""
    def setup(root: Path) -> list[str]:
        outside = _outside(root)
        return _ovo(lambda items: edit(items, outside) or [items[0], items[1]], seconds, *flags)(root)
    return setup


def _sports_failing(edit: Callable[[list, Path], None]) -> Callable[[Path], list[str]]:
    def setup(root: Path) -> list[str]:
        outside = _outside(root)
        return _sports(lambda events: edit(events, outside) or events[:2])(root)
    return setup


# name, setup, the failed item's reason
FAILS_ALONE = [
    ("ovo video ../ outside --data",
     _ovo_failing(lambda items, outside: items[0].update(video="../../outside/secret.mp4")), "video outside --data"),
    ("ovo absolute video path", _ovo_failing(lambda items, outside: items[0].update(video=str(outside))),
     "video outside --data"),
    ("ovo question over 4000 characters after the video",
     _ovo_failing(lambda items, _: items[0].update(question="word " * 20000)), "question refused"),
    ("ovo question over the KV budget after the video",
     _ovo_failing(lambda items, _: items[0].update(question="word " * 700), 2.0, "--kv-budget", "1100"),
     "too long for the KV budget"),
    ("ovo question over 4000 characters mid-stream",
     _ovo_failing(lambda items, _: items[0].update(question="word " * 20000), 6.0), "question refused"),
    ("ovo question over the KV budget mid-stream",
     _ovo_failing(lambda items, _: items[0].update(question="word " * 700), 6.0, "--kv-budget", "1100"),
     "too long for the KV budget"),
    ("livesports video ../ outside --data",
     _sports_failing(lambda events, outside: events[0].update(video="../outside/secret.mp4")), "video outside --data"),
    ("livesports absolute video path", _sports_failing(lambda events, outside: events[0].update(video=str(outside))),
     "video outside --data"),
    ("livesports end before begin", _sports_failing(lambda events, _: events[0].update(begin=3.0, end=1.0)),
     "end before begin"),
]


@pytest.mark.parametrize("setup, reason", [row[1:] for row in FAILS_ALONE], ids=[row[0] for row in FAILS_ALONE])
def test_one_bad_item_fails_alone_with_its_reason(tmp_path, tiny_model_dir, capsys, setup, reason):
    argv = setup(tmp_path)
    assert main([*argv, "--model", str(tiny_model_dir), *TINY]) == 0
    summary_text = (tmp_path / "out" / "summary.json").read_text()
    summary = json.loads(summary_text)
    assert summary["failed"] == 1 and summary["failed_by_reason"] == {reason: 1}
    assert summary["failures"][0]["reason"] == reason
    assert summary.get("answered", summary.get("done_now")) == 1  # the run went on to the next item
    assert "secret" not in summary_text and str(tmp_path / "outside") not in summary_text
    assert reason in (tmp_path / "out" / "summary.md").read_text()
    assert "Traceback" not in capsys.readouterr().err
