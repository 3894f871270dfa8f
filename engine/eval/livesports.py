"""LiveSports-3K CC: the events, the context prompt and the prediction records.

Follows showlab/livecc `evaluation/livesports3kcc/distributed_generate_livecc.py`: each event's clip
[begin, end] is commented with the instruct model's context prompt (an expert-commentator line, the
event title, the preceding ASR; a base model gets the preceding ASR or else the title alone),
repetition penalty 1.15 and 32 new tokens a chunk; the comments are joined with ' ...' removed and
'...' appended, and written as {video_id, event_id, begin, end, pred}.
Annotation files are those of huggingface.co/datasets/stdKonjac/LiveSports-3K (the JSON, or the CSVs
of older revisions); videos come from its videos.tar.part.* (extracted to DIR/videos).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .ovobench import EvalDataError, ItemError, resolve_video
from .records import has

ANNOTATION_FILES = ("LiveSports-3K-CC.json", "LiveSports-3K-CC-test-gt.csv", "LiveSports-3K-CC-val.csv",
                    "LiveSports-3K-CC-test.csv")
VIDEO_DIR = "videos"
GET_DATA = "download LiveSports-3K from huggingface.co/datasets/stdKonjac/LiveSports-3K (see docs/evaluation.md)"
REQUIRED = ("video_id", "event_id", "begin", "end", "video")
EVAL_MAX_NEW_TOKENS = 32
EVAL_REPETITION_PENALTY = 1.15


@dataclass(frozen=True)
class SportsEvent:
    video_id: str
    event_id: int
    begin: float
    end: float
    video: str
    title: str = ""
    preasr: str = ""
    asr: str = ""  # the human commentary the judge compares with (event_asr_text)

    @property
    def key(self) -> str:
        return f"{self.video_id}_{self.event_id}"  # llm_judge.py's video_event_id

    @property
    def task(self) -> str:
        return "CC"


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()) \
            and all(k in data for k in REQUIRED):  # pandas' default orient: {column: {row: value}}
        rows = sorted(data["video_id"], key=lambda r: int(r) if str(r).isdigit() else r)
        return [{col: data[col].get(r) for col in data} for r in rows]
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()) and "video_id" not in data:
        return [row for split in data.values() for row in split]  # {split: [rows]}
    return data


def _seconds(row: dict, name: str) -> float:
    value = float(row[name])
    if not math.isfinite(value):
        raise ValueError(f"{name} {row[name]!r} is not a time in seconds")
    return value


def parse_events(rows: object, source: str) -> list[SportsEvent]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise EvalDataError(f"{source} is not a list of LiveSports-3K CC events: {GET_DATA}")
    if not rows:
        raise EvalDataError(f"{source} holds no events: {GET_DATA}")
    events = []
    for i, row in enumerate(rows):
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise EvalDataError(f"{source} event {i} has no {', '.join(repr(k) for k in missing)}: this is not "
                                f"a LiveSports-3K CC annotation file; {GET_DATA}")
        try:
            events.append(SportsEvent(str(row["video_id"]), int(float(row["event_id"])), _seconds(row, "begin"),
                                      _seconds(row, "end"), str(row["video"]), _text(row.get("event_title")),
                                      _text(row.get("preasr_text")), _text(row.get("event_asr_text"))))
        except (TypeError, ValueError, OverflowError) as exc:
            raise EvalDataError(f"{source} event {i}: {exc}: fix that event or {GET_DATA}") from None
    return events


def load_events(data: Path) -> list[SportsEvent]:
    if not data.is_dir():
        raise EvalDataError(f"LiveSports-3K data folder not found: {data}: {GET_DATA}")
    path = next((data / name for name in ANNOTATION_FILES if (data / name).is_file()), None)
    if path is None:
        raise EvalDataError(f"no LiveSports-3K CC annotation file ({ANNOTATION_FILES[0]}) in {data}: {GET_DATA}")
    try:
        rows = _rows(path)
    except (UnicodeDecodeError, json.JSONDecodeError, csv.Error, RecursionError) as exc:
        raise EvalDataError(f"{path} cannot be read ({exc}): {GET_DATA}") from None
    return parse_events(rows, str(path))


def video_path(data: Path, video: str) -> Path:
    return resolve_video(data, video, VIDEO_DIR)


def check_clip(event: SportsEvent) -> None:
    """A clip that cannot be cut fails its event alone (FileSource would refuse it too, less clearly)."""
    if event.begin < 0:
        raise ItemError(f"the event begins at {event.begin:g} s, before the video does", "clip begins before 0 s")
    if event.end < event.begin:
        raise ItemError(f"the event ends at {event.end:g} s, before it begins ({event.begin:g} s)",
                        "end before begin")


def context_prompt(event: SportsEvent, instruct: bool = True) -> str:
    """The prompt of distributed_generate_livecc.py: for an instruct model the expert-commentator line,
    the title and the preceding ASR; for a base model (--not_instruct_model) the preceding ASR, else
    the title, alone."""
    if not instruct:
        return (event.preasr or event.title).strip()
    prompt = ("You are an expert video commentator providing real-time, insightful, "
              "and engaging commentary on visual content.\n")
    if event.title:
        prompt += f"This is a video titled \"{event.title}\".\n"
    if event.preasr:
        prompt += f"Here is previous commentary of the video:\n\n{event.preasr}\n\n"
        prompt += "Please continue to comment the video."
    return prompt


def prediction_text(comments: list[str]) -> str:
    return " ".join(c.replace(" ...", "") for c in comments if c).strip() + "..."


def prediction_record(event: SportsEvent, comments: list[str]) -> dict:
    return {"video_id": event.video_id, "event_id": event.event_id, "begin": event.begin, "end": event.end,
            "pred": prediction_text(comments)}


def prediction_ok(record: dict) -> bool:
    """What is read of a prediction or baseline caption line."""
    return has(record, "video_id", "event_id", "pred") and isinstance(record["pred"], str)


def prediction_key(record: dict) -> str:
    return f"{record['video_id']}_{record['event_id']}"
