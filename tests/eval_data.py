"""Mini benchmarks in the real formats, over generated videos: OVO-Bench (ovo_bench_new.json +
src_videos/) and LiveSports-3K CC (LiveSports-3K-CC.json + videos/). Used by the eval tests and
benchmarks/bench_eval.py."""

from __future__ import annotations

import json
from pathlib import Path

from videos import write_video

# One item per video; every group is present, forward probes are listed out of time order (SSR) as
# in the real file. Times are seconds; a question at t sees the video up to ceil(t).
OVO_ITEMS = [
    {"id": 0, "task": "EPM", "video": "Ego4D/clips/v0.mp4", "realtime": 4.2, "question": "What did I hold?",
     "answer": "a cup", "options": ["a pen", "a key", "a cup", "a book"], "gt": 2},
    {"id": 1, "task": "ASI", "video": "COIN/v1.mp4", "realtime": 5, "question": "What comes after the turn?",
     "answer": "a stop", "options": ["a stop", "a jump", "a spin", "a fall"], "gt": 0},
    {"id": 2, "task": "STU", "video": "YouTube_Games/v2.mp4", "realtime": 3.5, "question": "Where is the circle?",
     "answer": "left", "options": ["right", "left", "top", "bottom"], "gt": 1},
    {"id": 3, "task": "OCR", "video": "AutoEvalMetaData/v3.mp4", "realtime": 4, "question": "What is written?",
     "answer": "GO", "options": ["STOP", "WAIT", "EXIT", "GO"], "gt": 3},
    {"id": 4, "task": "REC", "video": "perception_test/v4.mp4", "activity": "wave", "start_times": [1],
     "end_times": [5], "test_info": [{"realtime": 3, "count": 1}, {"realtime": 5, "count": 2}]},
    {"id": 5, "task": "SSR", "video": "COIN/v5.mp4", "tutorial": "Demo", "all_steps": ["s1", "s2"],
     "start_time": [0, 3], "end_time": [3, 6],
     "test_info": [{"realtime": 5, "step": "s2", "type": 1}, {"realtime": 3, "step": "s1", "type": 0},
                   {"realtime": 4, "step": "s2", "type": 0}]},
    {"id": 6, "task": "CRR", "video": "MovieNet/v6.mp4", "question": "What does she take?", "answer": "a bag",
     "ask_time": 3, "clue_time": 5, "test_info": [{"realtime": 4, "type": 0}, {"realtime": 6, "type": 1}]},
]


def build_ovobench(root: Path, seconds: float = 4.0, size: tuple[int, int] = (96, 64), fps: float = 10) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for item in OVO_ITEMS:
        path = root / "src_videos" / item["video"]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, seconds=seconds, fps=fps, width=size[0], height=size[1])
    (root / "ovo_bench_new.json").write_text(json.dumps(OVO_ITEMS, indent=1))
    return root


SPORTS_EVENTS = [
    {"video_id": "AAAAAAAAAA1", "event_id": 1, "begin": 1.0, "end": 6.5, "video": "AAAAAAAAAA1.mp4",
     "event_title": "A fast break", "preasr_text": "And here they come.", "event_asr_text": "He scores!"},
    {"video_id": "AAAAAAAAAA1", "event_id": 2, "begin": 2.0, "end": 7.0, "video": "AAAAAAAAAA1.mp4",
     "event_title": "A corner", "preasr_text": "", "event_asr_text": "Cleared away."},
    {"video_id": "BBBBBBBBBB2", "event_id": 3, "begin": 0.5, "end": 5.0, "video": "BBBBBBBBBB2.mp4",
     "event_title": "", "preasr_text": "What a game.", "event_asr_text": "Into the net."},
    {"video_id": "BBBBBBBBBB2", "event_id": 4, "begin": 3.0, "end": 7.5, "video": "BBBBBBBBBB2.mp4",
     "event_title": "Penalty", "preasr_text": "Tense now.", "event_asr_text": "Saved!"},
]


def build_livesports(root: Path, seconds: float = 8.0, size: tuple[int, int] = (96, 64)) -> Path:
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for name in sorted({e["video"] for e in SPORTS_EVENTS}):
        write_video(root / "videos" / name, seconds=seconds, fps=10, width=size[0], height=size[1])
    (root / "LiveSports-3K-CC.json").write_text(json.dumps(SPORTS_EVENTS, indent=1))
    return root


def judge_inputs(root: Path, model: str, baseline: str) -> tuple[Path, Path, Path]:
    """A LiveSports folder, baseline captions and an output folder that already holds the model's
    predictions ("pred-N" and "base-N" for event N): judging needs no model."""
    data = build_livesports(root / "data", seconds=1.0)
    out = root / "out"
    out.mkdir()
    rows = [{k: e[k] for k in ("video_id", "event_id", "begin", "end")} for e in SPORTS_EVENTS]
    (out / f"{model}.jsonl").write_text("".join(json.dumps(r | {"pred": f"pred-{r['event_id']}"}) + "\n" for r in rows))
    captions = root / f"{baseline}.jsonl"
    captions.write_text("".join(json.dumps(r | {"pred": f"base-{r['event_id']}"}) + "\n" for r in rows))
    return data, captions, out


def judge_argv(data: Path, baseline: Path, out: Path, url: str, model: str) -> list[str]:
    """`livecc eval livesports-cc` judging the predictions of `judge_inputs` (key in $JUDGE_KEY)."""
    return ["eval", "livesports-cc", "--data", str(data), "--model", f"/models/{model}", "--out", str(out),
            "--judge-url", url, "--judge-model", "judge-x", "--baseline", str(baseline), "--judge-key-env",
            "JUDGE_KEY", "--judge-retries", "3", "--judge-backoff", "0.01"]
