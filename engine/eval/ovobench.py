"""OVO-Bench's annotation file, video layout and prompts, as the benchmark distributes them.

Follows JoeLeelyf/OVO-Bench: `inference.py` (data/ovo_bench_new.json, videos under data/src_videos,
the task groups), `constant.py` (the four prompt templates, reproduced word for word since they are
the protocol), `utils/OVOBench.py` (`build_prompt`: options lettered A., B., ... joined by '; ';
forward tasks asked once per `test_info` entry) and `utils/chunk_videos.py` (a question at time t
sees the video up to ceil(t) seconds).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LiveCCError

BACKWARD = ("EPM", "ASI", "HLD")
REALTIME = ("STU", "OJR", "ATR", "ACR", "OCR", "FPD")
FORWARD = ("REC", "SSR", "CRR")
GROUPS = {"backward": BACKWARD, "realtime": REALTIME, "forward": FORWARD}
TASKS = BACKWARD + REALTIME + FORWARD
ANNOTATION_FILE = "ovo_bench_new.json"
VIDEO_DIR = "src_videos"
GET_DATA = "download OVO-Bench from huggingface.co/datasets/JoeLeelyf/OVO-Bench (see docs/evaluation.md)"

CHOICE_PROMPT = """
Question: {}
Options:
{}

Respond only with the letter corresponding to your chosen option (e.g., A, B, C). 
Do not include any additional text or explanation in your response.
"""

REC_PROMPT = """
You're watching a video in which people may perform a certain type of action repetively. 
The person performing this kind of action are referred to as 'they' in the following statement.
You're task is to count how many times have different people in the video perform this kind of action in total.
One complete motion counts as one. 
Now, answer the following question: {}
Provide your answer as a single number (e.g., 0, 1, 2, 3…) indicating the total count.
Do not include any additional text or explanation in your response.
"""

SSR_PROMPT = """
You're watching a tutorial video which contain a sequential of steps. 
The following is one step from the whole procedures: 
{}
Your task is to determine if the man or woman in the video is currently performing this step.
Answer only with “Yes” or “No”.
Do not include any additional text or explanation in your response.
"""

CRR_PROMPT = """
You're responsible of answering questions based on the video content. 
The following question are relevant to the latest frames, i.e. the end of the video.
{}
Decide whether existing visual content, especially latest frames, i.e. frames that near the end of the video, provide enough information for answering the question.
Answer only with “Yes” or “No”.
Do not include any additional text or explanation in your response.
"""


class EvalDataError(LiveCCError):
    """A benchmark folder or annotation file is missing or not in the benchmark's format."""


@dataclass(frozen=True)
class Probe:
    """One question of an item: asked once the stream reaches `time`; `truth` is what the official
    scorer compares with (a letter, a count, or the Yes/No type 1/0)."""

    time: float
    prompt: str
    truth: str | int

    @property
    def watch_until(self) -> float:
        return float(math.ceil(self.time))


@dataclass(frozen=True)
class OvoItem:
    id: int
    task: str
    video: str  # as in the annotation file, relative to the video folder
    probes: tuple[Probe, ...]

    @property
    def group(self) -> str:
        return next(g for g, tasks in GROUPS.items() if self.task in tasks)


def choice_prompt(question: str, options: list[str]) -> str:
    lettered = "; ".join(f"{chr(65 + i)}. {option}" for i, option in enumerate(options)) + ";"
    return CHOICE_PROMPT.format(question, lettered)


def _need(record: dict, where: str, *keys: str) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise EvalDataError(f"{where} has no {', '.join(repr(k) for k in missing)}: "
                            f"this is not OVO-Bench's {ANNOTATION_FILE}; {GET_DATA}")


def _probes(record: dict, where: str) -> tuple[Probe, ...]:
    task = record["task"]
    if task in BACKWARD + REALTIME:
        _need(record, where, "question", "options", "gt", "realtime")
        return (Probe(float(record["realtime"]), choice_prompt(record["question"], record["options"]),
                      chr(65 + int(record["gt"]))),)
    _need(record, where, "test_info")
    if task == "REC":
        _need(record, where, "activity")
    if task == "CRR":
        _need(record, where, "question")
    probes = []
    for k, info in enumerate(record["test_info"]):
        at = f"{where} test_info[{k}]"
        if task == "REC":
            _need(info, at, "realtime", "count")
            prompt, truth = REC_PROMPT.format(f"How many times did they {record['activity']}?"), int(info["count"])
        else:
            _need(info, at, "realtime", "type", *(("step",) if task == "SSR" else ()))
            text = info["step"] if task == "SSR" else record["question"]
            prompt, truth = (SSR_PROMPT if task == "SSR" else CRR_PROMPT).format(text), int(info["type"])
        probes.append(Probe(float(info["realtime"]), prompt, truth))
    return tuple(probes)


def parse_items(records: object, source: str) -> list[OvoItem]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise EvalDataError(f"{source} is not a list of OVO-Bench items: {GET_DATA}")
    items = []
    for i, record in enumerate(records):
        where = f"{source} item {i}"
        _need(record, where, "id", "task", "video")
        if record["task"] not in TASKS:
            raise EvalDataError(f"{where} has task {record['task']!r}, not one of OVO-Bench's {', '.join(TASKS)}")
        items.append(OvoItem(int(record["id"]), record["task"], record["video"], _probes(record, where)))
    return items


def load_ovobench(data: Path) -> list[OvoItem]:
    """Items of DIR/ovo_bench_new.json; raises EvalDataError naming the fix."""
    if not data.is_dir():
        raise EvalDataError(f"OVO-Bench data folder not found: {data}: {GET_DATA}")
    path = data / ANNOTATION_FILE
    if not path.is_file():
        raise EvalDataError(f"{path} not found: {GET_DATA}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalDataError(f"{path} is not valid JSON ({exc}): {GET_DATA}") from exc
    return parse_items(records, str(path))


def video_path(data: Path, video: str) -> Path:
    """Where the official layout puts a video (DIR/src_videos/...), else DIR/... itself."""
    official = data / VIDEO_DIR / video
    return official if official.exists() or not (data / video).exists() else data / video


def select(items: list, tasks: list[str] | None = None, sample: int | None = None, seed: int = 0,
           limit: int | None = None) -> list:
    """--tasks, then --sample N (seeded, kept in file order), then --limit N."""
    if tasks:
        items = [item for item in items if item.task in tasks]
    if sample is not None and sample < len(items):
        keep = set(random.Random(seed).sample(range(len(items)), sample))
        items = [item for i, item in enumerate(items) if i in keep]
    return items[:limit] if limit is not None else items
