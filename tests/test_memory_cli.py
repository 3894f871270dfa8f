"""`livecc ask` over a video longer than its context: it recalls key frames, prints their times
and writes them in the answer record; bad memory flags exit 2 with one line (issue 10)."""

from __future__ import annotations

import json

import pytest

from livecc.cli.main import main
from videos import write_video

SMALL = ["--max-pixels", "20000", "--max-answer-tokens", "8", "--kv-budget", "1100", "--max-new-tokens", "4"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest (conftest)


@pytest.fixture(scope="module")
def video40(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / "shapes36.mp4", seconds=36, fps=10)


@pytest.fixture(scope="module")
def video6(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("v") / "shapes6.mp4", seconds=6, fps=10)


def test_ask_prints_and_records_the_recalled_moments(tiny_model_dir, video40, tmp_path, capsys):
    jsonl = tmp_path / "answer.jsonl"
    assert main(["ask", str(video40), "What was on screen at the start?", "--model", str(tiny_model_dir),
                 "--jsonl", str(jsonl), *SMALL]) == 0
    out = capsys.readouterr().out
    [record] = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert record["type"] == "answer" and record["done"] and record["question"] == "What was on screen at the start?"
    assert record["recalled"] and record["recalled"][0][0] == 0.0  # the start was recalled first in time
    assert all(len(pair) == 2 and pair[0] < pair[1] <= 40 for pair in record["recalled"])
    assert "thumbnails" not in record
    assert "recalled: 00:00.0-" in out


def test_ask_without_memory_records_no_recall(tiny_model_dir, video6, tmp_path, capsys):
    jsonl = tmp_path / "answer.jsonl"
    assert main(["ask", str(video6), "What was on screen at the start?", "--model", str(tiny_model_dir),
                 "--jsonl", str(jsonl), "--no-memory", *SMALL]) == 0
    assert json.loads(jsonl.read_text())["recalled"] == []
    assert "recalled:" not in capsys.readouterr().out


@pytest.mark.parametrize("flags, word", [(["--memory-mb", "0"], "--memory-mb 0"), (["--recall-k", "-1"], "--recall-k -1")])
def test_bad_memory_flags_exit_2_with_one_line(video6, capsys, flags, word):
    assert main(["ask", str(video6), "hi", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livecc: error: bad option") and word in err[0]
