"""benchmarks/bench_streams.py runs end to end in its CPU smoke mode, and `--compare` measures a
setting against the defaults row by row in one run (no device minute lost to a typo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_streams.py"), "--smoke", "--out",
                           str(tmp_path), *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_compare_runs_each_row_with_and_without_the_setting_in_turn(tmp_path):
    proc = bench(tmp_path, "--compare", "LIVECC_NO_LOOKAHEAD=1", "--agreement-seconds", "0", "--video-window", "6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    [path] = tmp_path.glob("streams_*.json")
    result = json.loads(path.read_text())
    rows = [(r["streams"], r["setting"]) for r in result["rows"]]
    assert rows == [(1, "default"), (1, "LIVECC_NO_LOOKAHEAD=1"), (2, "default"), (2, "LIVECC_NO_LOOKAHEAD=1")]
    assert all(r["caption_latency_s"]["p50"] is not None and not r["errors"] for r in result["rows"])
    assert set(result["max_realtime_streams"]) == {"bf16", "bf16 LIVECC_NO_LOOKAHEAD=1"}
    table = (tmp_path / path.name.replace(".json", ".md")).read_text()
    assert "| 2 | bf16 | LIVECC_NO_LOOKAHEAD=1 |" in table
    assert result["video_window_s"] == 6.0 and "6 s of video kept by a compaction" in table


@pytest.mark.parametrize("args", [["--compare", "NO_SUCH_SETTING=1"], ["--compare", "LIVECC_NO_LOOKAHEAD"],
                                  ["--compare", "LIVECC_NO_LOOKAHEAD=maybe"], ["--repeat", "0"],
                                  ["--join-over", "0"], ["--join-over", "3"], ["--video-window", "0"],
                                  ["--video-window", "nan"]])  # (smoke rows: 8 s)
def test_a_bad_setting_stops_before_any_row(tmp_path, args):
    proc = bench(tmp_path, *args)
    assert proc.returncode == 2 and args[0] in proc.stderr
    assert not list(tmp_path.glob("streams_*"))


def test_a_compared_setting_holds_for_its_rows_only(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_streams

    from engine import flags

    monkeypatch.delenv("LIVECC_NO_LOOKAHEAD", raising=False)
    monkeypatch.setenv("LIVECC_NO_VARLEN", "0")
    with bench_streams.applied("LIVECC_NO_LOOKAHEAD=1"), bench_streams.applied("LIVECC_NO_VARLEN=1"):
        assert flags.get("LIVECC_NO_LOOKAHEAD") is True and flags.get("LIVECC_NO_VARLEN") is True
    assert not flags.is_set("LIVECC_NO_LOOKAHEAD")  # unset again, as it was
    assert flags.is_set("LIVECC_NO_VARLEN") and flags.get("LIVECC_NO_VARLEN") is False  # back to its 0


def test_repeated_rows_say_how_many_of_each_n_were_real_time(monkeypatch):
    """Near the limit rows of one N differ (a 32-stream row real-time, the next not): with --repeat
    the table says how many of each N's rows were, per setting, beside the strict maximum."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_streams

    def row(n, setting, realtime):
        return {"streams": n, "precision": "bf16", "setting": setting, "realtime": realtime, "skipped_chunks": 0,
                "caption_latency_s": {"p50": 0.25, "p95": 0.4 if realtime else 0.6, "max": 0.9},
                "chunk_ms": {"p50": 240, "p95": 400}, "gpu_busy_fraction": 0.8, "peak_memory_gb": 33}

    result = {"device": "test", "date": "2026-12-07", "kv_budget": 8192, "seconds_per_row": 15,
              "max_realtime_streams": {"bf16": 28, "bf16 LIVECC_NO_PASS_GRAPH=1": 28},
              "rows": [row(28, "default", True), row(28, "LIVECC_NO_PASS_GRAPH=1", True),
                       row(32, "default", True), row(32, "LIVECC_NO_PASS_GRAPH=1", False),
                       row(32, "default", False), row(32, "LIVECC_NO_PASS_GRAPH=1", False),
                       row(32, "default", True)]}
    text = bench_streams.markdown(result)
    assert ("Real-time rows of each N: bf16 28: 1 of 1, bf16 LIVECC_NO_PASS_GRAPH=1 28: 1 of 1, "
            "bf16 32: 2 of 3, bf16 LIVECC_NO_PASS_GRAPH=1 32: 0 of 2.") in text
    once = dict(result, rows=result["rows"][:2])
    assert "Real-time rows of each N" not in bench_streams.markdown(once)  # one row each: the table says it


def test_a_table_without_compactions_says_its_counts_hold_before_them(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_streams

    row = {"streams": 32, "precision": "bf16", "realtime": True, "skipped_chunks": 0, "compactions": 0,
           "caption_latency_s": {"p50": 0.27, "p95": 0.4, "max": 0.6}, "chunk_ms": {"p50": 260, "p95": 370},
           "gpu_busy_fraction": 0.86, "peak_memory_gb": 34}
    result = {"device": "test", "date": "2026-12-07", "kv_budget": 8192, "seconds_per_row": 20,
              "max_realtime_streams": {"bf16": 32}, "rows": [row]}
    assert "hold before compactions" in bench_streams.markdown(result)
    compacted = dict(result, rows=[row, dict(row, compactions=32, realtime=False)])
    assert "hold before compactions" not in bench_streams.markdown(compacted)


def test_streams_joining_over_seconds_count_only_once_all_have_run_warm(monkeypatch):
    """--join-over: a comment counts past its own stream's first WARM_S seconds and only when captured
    at or after `after` (once the last stream has run WARM_S), so an early stream's first seconds
    alone, or with few others, do not count."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_streams

    class Source:  # captured at 100 s + the video time
        def capture_time(self, video_time):
            return 100.0 + video_time

    listener = bench_streams.Listener(Source())
    period = bench_streams.PERIOD
    listener.comments = [(end, 100.0 + end + 0.25) for end in (4.5, 5.0, 5.5, 6.0, 6.5, 7.0)]
    counted = [100.0 + end - period for end in (5.5, 6.0, 6.5, 7.0)]  # chunks past WARM_S (5 s)
    assert [captured for captured, _ in listener.timed()] == counted
    assert [captured for captured, _ in listener.timed(after=106.0)] == [106.0, 106.5]
    assert listener.latencies(after=106.0) == [period + 0.25] * 2


def test_streams_joining_over_seconds_each_start_at_their_own_phase(monkeypatch):
    """k * J / N put 20 streams joining over 20 s all at one phase of the second, so every chunk came
    at once; each stream now starts at its own phase, the starts still spread over J seconds."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_streams

    for n, join_over in ((20, 20.0), (20, 10.0), (32, 10.0), (16, 45.0)):
        starts = [bench_streams.start_offset(k, n, join_over) for k in range(n)]
        assert len({round(s % 1.0, 6) for s in starts}) == n, (n, join_over)
        assert starts == sorted(starts) and abs(starts[-1] - (n - 1) * join_over / n) < 1.0  # still over J s
    assert [bench_streams.start_offset(k, 4, 1.0) for k in range(4)] == [0.0, 0.25, 0.5, 0.75]
