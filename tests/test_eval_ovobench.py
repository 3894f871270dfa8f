"""`livecc eval ovobench` (issue 11, acceptance 1, 2 and 4): official scoring on a mini benchmark in
OVO-Bench's schema, the tiny model end to end with resume and SIGINT, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livecc.cli.main import main
from engine.eval.harness import run_ovobench
from engine.eval.ovobench import load_ovobench, video_path
from engine.eval.records import RunSettings, open_run
from eval_data import SPORTS_EVENTS, build_ovobench

# Replies per video in the order of its probes, in shapes the official scorer accepts or rejects.
SCRIPT = {
    "v0.mp4": ["C."],  # EPM, truth C: the letter with a period -> right
    "v1.mp4": ["B"],  # ASI, truth A -> wrong
    "v2.mp4": ["The answer is B"],  # STU, truth B: the letter anywhere in the reply -> right
    "v3.mp4": ["d"],  # OCR, truth D: lower case -> wrong
    "v4.mp4": ["1", "2 or 3"],  # REC, counts 1 and 2: digits "1" -> right; digits "23" -> wrong
    "v5.mp4": ["Y", "No.", "Yes"],  # SSR, types 1, 0, 0: exact "Y" -> right; "No" in it -> right; "Yes" -> wrong
    "v6.mp4": ["N", "No"],  # CRR, types 0, 1: exact "N" -> right; "No" for type 1 -> wrong
}
# Worked out by hand from SCRIPT: task accuracies, then the mean of each group, then of the groups.
EXPECTED_TASKS = {"EPM": 100.0, "ASI": 0.0, "STU": 100.0, "OCR": 0.0, "REC": 50.0, "SSR": 200 / 3, "CRR": 50.0}
EXPECTED_GROUPS = {"backward": 50.0, "realtime": 50.0, "forward": (50 + 200 / 3 + 50) / 3}
EXPECTED_TOTAL = (50 + 50 + (50 + 200 / 3 + 50) / 3) / 3  # 51.85

TINY = ["--max-pixels", "20000", "--max-new-tokens", "1", "--max-answer-tokens", "2"]


@pytest.fixture(scope="module")
def ovo(tmp_path_factory) -> Path:
    return build_ovobench(tmp_path_factory.mktemp("ovo") / "data")


class ScriptedAnswerer:
    """Replies from SCRIPT by video and probe time, so every protocol gets the same replies."""

    def __init__(self, items):
        self.calls: list[tuple[str, list[tuple[float, str]]]] = []
        self.replies = {(Path(item.video).name, p.watch_until): SCRIPT[Path(item.video).name][k]
                        for item in items for k, p in enumerate(item.probes)}

    def __call__(self, video: Path, probes: list[tuple[float, str]]) -> list[str]:
        self.calls.append((video.name, probes))
        return [self.replies[video.name, t] for t, _ in probes]

    @property
    def asked(self) -> dict[str, list[tuple[float, str]]]:
        """Every probe asked of each video, in the order asked."""
        asked: dict[str, list[tuple[float, str]]] = {}
        for name, probes in self.calls:
            asked.setdefault(name, []).extend(probes)
        return asked


@pytest.mark.parametrize("protocol", ["official", "stream"])
def test_official_scoring_on_scripted_replies(ovo, tmp_path, protocol, capsys):
    items = load_ovobench(ovo)
    answer = ScriptedAnswerer(items)
    out = tmp_path / "out"
    open_run(out, RunSettings.of("ovobench", "scripted", {"positions": "exact"}))
    run_info = json.loads((out / "run.json").read_text())
    summary = run_ovobench(items, answer, lambda item: video_path(ovo, item.video), out, run_info, protocol)
    assert summary["protocol"] == protocol
    # official: one clip per probe, as utils/OVOBench.py; stream: one stream per item with all its probes
    per_call = [len(probes) for name, probes in answer.calls if name == "v5.mp4"]
    assert per_call == ([1, 1, 1] if protocol == "official" else [3])
    scores = summary["scores"]
    assert {t: s["accuracy"] for t, s in scores["tasks"].items()} == pytest.approx(EXPECTED_TASKS)
    assert scores["groups"] == pytest.approx(EXPECTED_GROUPS)
    assert scores["total"] == pytest.approx(EXPECTED_TOTAL)
    assert json.loads((out / "summary.json").read_text())["scores"]["total"] == pytest.approx(EXPECTED_TOTAL)
    assert "| **total avg.** | | | | **51.85** |" in (out / "summary.md").read_text()
    # The official prompts, asked at ceil(t), forward probes in the file's order.
    epm_time, epm_prompt = answer.asked["v0.mp4"][0]
    assert epm_time == 5.0 and "Options:\nA. a pen; B. a key; C. a cup; D. a book;\n" in epm_prompt
    assert [t for t, _ in answer.asked["v5.mp4"]] == [5.0, 3.0, 4.0]
    assert "How many times did they wave?" in answer.asked["v4.mp4"][0][1]
    crr_prompt = answer.asked["v6.mp4"][0][1]
    assert "What does she take?" in crr_prompt and "“Yes” or “No”" in crr_prompt
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == list(range(7))
    # The bar shows one per-item figure, ours: no rate of tqdm's own beside it.
    last = capsys.readouterr().err.split("\r")[-1]
    assert "7/7" in last and last.count("s/item") == 1 and "item/s" not in last, last


def _run_scripted(data: Path, out: Path, skip_failed: bool) -> dict:
    items = load_ovobench(data)
    open_run(out, RunSettings.of("ovobench", "scripted", {"positions": "exact"}))
    return run_ovobench(items, ScriptedAnswerer(items), lambda item: video_path(data, item.video), out,
                        json.loads((out / "run.json").read_text()), skip_failed=skip_failed)


def test_failed_items_count_as_wrong_as_officially_unless_skip_failed(tmp_path):
    data = build_ovobench(tmp_path / "data", seconds=1.0)
    (data / "src_videos" / "Ego4D/clips/v0.mp4").unlink()  # EPM, 1 question
    (data / "src_videos" / "perception_test/v4.mp4").unlink()  # REC, 2 questions
    official = _run_scripted(data, tmp_path / "official", skip_failed=False)
    tasks = official["scores"]["tasks"]
    assert (tasks["EPM"]["questions"], tasks["EPM"]["failed"], tasks["EPM"]["accuracy"]) == (1, 1, 0.0)
    assert (tasks["REC"]["questions"], tasks["REC"]["failed"], tasks["REC"]["accuracy"]) == (2, 2, 0.0)
    assert (official["scored_questions"], official["failed_questions"], official["failed"]) == (11, 3, 2)
    # By hand: backward (0 + 0) / 2, realtime (100 + 0) / 2, forward (0 + 200/3 + 50) / 3.
    assert official["scores"]["total"] == pytest.approx((0 + 50 + (200 / 3 + 50) / 3) / 3)
    assert "scored as wrong" in official["failed_items"]
    assert "| backward | EPM | 1 (1 failed) | 0 | 0.00 |" in (tmp_path / "official" / "summary.md").read_text()

    skipped = _run_scripted(data, tmp_path / "skipped", skip_failed=True)
    tasks = skipped["scores"]["tasks"]
    assert (tasks["EPM"]["questions"], tasks["EPM"]["failed"], tasks["EPM"]["accuracy"]) == (0, 1, None)
    assert (skipped["scored_questions"], skipped["failed_questions"]) == (8, 3)
    assert skipped["scores"]["total"] == pytest.approx((0 + 50 + (200 / 3 + 50) / 2) / 3)
    assert "--skip-failed" in skipped["failed_items"]
    assert "--skip-failed" in (tmp_path / "skipped" / "summary.md").read_text()


def _records(out: Path) -> dict[int, list]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {r["id"]: [p["response"] for p in r["probes"]] for r in rows}


def _cli(ovo: Path, model: Path, out: Path) -> list[str]:
    return ["eval", "ovobench", "--data", str(ovo), "--model", str(model), "--out", str(out), *TINY]


@pytest.mark.slow
def test_tiny_model_end_to_end_resume_and_sigint(ovo, tiny_model_dir, tmp_path):
    broken = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "livecc.cli", *_cli(ovo, tiny_model_dir, broken)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    results = broken / "results.jsonl"
    deadline = time.monotonic() + 180
    while not (results.exists() and results.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no item finished"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # while the second item runs
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert 1 <= len(_records(broken)) < 7, "the run was not interrupted in the middle"

    assert main(_cli(ovo, tiny_model_dir, broken)) == 0  # completes what is left
    whole = tmp_path / "whole"
    assert main(_cli(ovo, tiny_model_dir, whole)) == 0
    resumed, uninterrupted = _records(broken), _records(whole)
    assert sorted(uninterrupted) == list(range(7))  # every item has a result
    assert all(isinstance(r, str) for replies in uninterrupted.values() for r in replies)
    assert [len(uninterrupted[i]) for i in range(7)] == [1, 1, 1, 1, 2, 3, 2]
    assert resumed == uninterrupted
    summary = lambda out: json.loads((out / "summary.json").read_text())  # noqa: E731
    assert summary(broken)["scores"] == summary(whole)["scores"]
    assert summary(whole)["run"]["settings"]["session"]["positions"] == "exact"

    before = (whole / "results.jsonl").read_text()
    assert main(_cli(ovo, tiny_model_dir, whole)) == 0  # a rerun skips every item
    assert (whole / "results.jsonl").read_text() == before
    assert summary(whole)["skipped_done_before"] == 7 and summary(whole)["done_now"] == 0


def test_missing_and_corrupt_videos_are_counted_and_the_run_goes_on(tiny_model_dir, tmp_path, capsys):
    data = build_ovobench(tmp_path / "data")
    (data / "src_videos" / "Ego4D/clips/v0.mp4").unlink()
    (data / "src_videos" / "COIN/v1.mp4").write_text("not a video\n" * 40)
    out = tmp_path / "out"
    assert main([*_cli(data, tiny_model_dir, out), "--tasks", "EPM,ASI,STU", "--no-memory", "--router", "recent"]) == 0
    session = json.loads((out / "run.json").read_text())["settings"]["session"]
    assert session["memory"] is False and session["router_strategy"] == "recent"  # design switches are recorded
    summary = json.loads((out / "summary.json").read_text())
    assert summary["items"] == 3 and summary["answered"] == 1 and summary["failed"] == 2
    errors = {f["id"]: f["error"] for f in summary["failures"]}
    assert "not found" in errors[0] and "cannot open" in errors[1]
    assert "2 item(s) failed" in capsys.readouterr().err
    # As OVO-Bench's pipeline: the failed questions count as wrong, in the denominators and reported.
    assert (summary["scored_questions"], summary["failed_questions"]) == (3, 2)
    assert {t: s["failed"] for t, s in summary["scores"]["tasks"].items()} == {"EPM": 1, "ASI": 1, "STU": 0}
    assert summary["failed_by_reason"] == {"missing or unreadable video": 2}
    assert summary["protocol"] == "official"
    assert json.loads((out / "run.json").read_text())["settings"]["extra"] == {"protocol": "official"}

    # --skip-failed only rescores (the failed items are tried again, the answered one is not)...
    assert main([*_cli(data, tiny_model_dir, out), "--tasks", "EPM,ASI,STU", "--no-memory", "--router", "recent",
                 "--skip-failed"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["scored_questions"], summary["failed_questions"], summary["done_now"]) == (1, 2, 0)
    assert "left out of the scores (--skip-failed)" in capsys.readouterr().err
    # ...while another protocol would mix answers of two protocols in one folder.
    assert main([*_cli(data, tiny_model_dir, out), "--tasks", "EPM,ASI,STU", "--no-memory", "--router", "recent",
                 "--protocol", "stream"]) == 2
    assert "other settings (protocol)" in capsys.readouterr().err


def _bad_data(tmp_path: Path) -> dict[str, list[str]]:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "ovo_bench_new.json").write_text(json.dumps(SPORTS_EVENTS))
    not_json = tmp_path / "not-json"
    not_json.mkdir()
    (not_json / "ovo_bench_new.json").write_text("{ nope")
    no_videos = tmp_path / "no-videos"
    build_ovobench(no_videos)
    for video in (no_videos / "src_videos").rglob("*.mp4"):
        video.unlink()
    ovo = ["eval", "ovobench", "--model", "unused", "--out", str(tmp_path / "o")]
    return {
        "missing data folder": [*ovo, "--data", str(tmp_path / "absent")],
        "annotation of another benchmark": [*ovo, "--data", str(foreign)],
        "annotation not JSON": [*ovo, "--data", str(not_json)],
        "no annotation file": [*ovo, "--data", str(tmp_path)],
        "no video at all": [*ovo, "--data", str(no_videos)],
        "unknown task": [*ovo, "--data", str(no_videos), "--tasks", "EPM,XYZ"],
        "negative sample": [*ovo, "--data", str(no_videos), "--sample", "-1"],
        "NaN judge backoff": ["eval", "livesports-cc", "--data", str(tmp_path), "--judge-backoff", "nan"],
        "negative judge backoff": ["eval", "livesports-cc", "--data", str(tmp_path), "--judge-backoff", "-1"],
        "livesports missing data folder": ["eval", "livesports-cc", "--data", str(tmp_path / "absent")],
        "livesports annotation of another benchmark": ["eval", "livesports-cc", "--data", str(not_json)],
    }


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    for name, argv in _bad_data(tmp_path).items():
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert len(err) == 1 and err[0].startswith("livecc: error: "), (name, err)


def test_a_torn_last_line_is_dropped_and_other_settings_are_refused(tmp_path):
    from engine.errors import LiveCCError
    from engine.eval.records import ResultLog

    path = tmp_path / "results.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "pro')  # killed in the middle of a write
    log = ResultLog(path, key=lambda r: r["id"])
    assert log.done == {1}
    log.append({"id": 2})
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == [1, 2]
    path.write_bytes('{"id": 1}\n{"id": 2, "reply": "Müller'.encode()[:-1])  # killed mid-character
    assert ResultLog(path, key=lambda r: r["id"]).done == {1}
    assert path.read_bytes() == b'{"id": 1}\n'

    open_run(tmp_path, RunSettings.of("ovobench", "m", {"positions": "exact", "kv_budget": 16384}))
    open_run(tmp_path, RunSettings.of("ovobench", "m", {"positions": "exact", "kv_budget": 16384}))  # same: fine
    with pytest.raises(LiveCCError, match="other settings \\(positions\\)"):
        open_run(tmp_path, RunSettings.of("ovobench", "m", {"positions": "demo", "kv_budget": 16384}))
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "run"):  # --out names a file, or a folder under a file: one line, no traceback
        with pytest.raises(LiveCCError, match="cannot make the output folder .*pass --out a folder you can write"):
            open_run(out, RunSettings.of("ovobench", "m", {"positions": "exact"}))
