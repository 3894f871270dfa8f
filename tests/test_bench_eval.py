"""benchmarks/bench_eval.py --smoke runs the GPU benchmark's code path on the CPU with the tiny model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_bench_eval_smoke_answers_every_item(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    sys.path.insert(0, str(BENCH))
    try:
        import bench_eval
    finally:
        sys.path.remove(str(BENCH))
    result = bench_eval.main(["--smoke", "--limit", "2", "--long", "3", "--model", str(tiny_model_dir),
                              "--out", str(tmp_path)])
    assert result["answered"] == result["items"] == 2 and result["probes"] == 2
    assert result["items_per_hour"] > 0 and result["long_item"]["video_s"] == 3
    written = json.loads(next(tmp_path.glob("eval_*.json")).read_text())
    assert written["items_per_hour"] == result["items_per_hour"]
    assert "items/hour" in next(tmp_path.glob("eval_*.md")).read_text()
