"""The visual-memory benchmark runs end to end in its CPU smoke mode (no device minute lost to a typo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_memory_smoke(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--smoke", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [path] = tmp_path.glob("memory_*.json")
    result = json.loads(path.read_text())
    hour = result["hour"]
    assert hour["covers_the_hour"] and hour["key_frames"] == hour["chunks"]  # every chunk a new scene
    assert result["routing"]["cos_sim_fine"]["key_frames"] == hour["key_frames"]
    assert all(n > 0 for n in result["first_token"]["key_frames_recalled"])
    assert result["chunks"]["memory"]["key_frames"] > 0 and result["chunks"]["no_memory"]["key_frames"] == 0
    assert (tmp_path / path.name.replace(".json", ".md")).read_text().startswith("Visual memory benchmark")
