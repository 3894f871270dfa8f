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
import os
import random
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LiveCCError

BACKWARD = ("EPM", "ASI", "HLD")
REALTIME = ("STU", "OJR", "ATR", "ACR", "OCR", "FPD")
FORWARD = ("REC", "SSR", "CRR")
GROUPS = {"backward": BACKWARD, "realtime": REALTIME, "forward": FORWARD}
TASKS = BACKWARD + REALTIME + FORWARD
# official: each probe on its own clip, as utils/OVOBench.py; stream: an item's probes in one stream.
PROTOCOLS = ("official", "stream")
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


class ItemError(LiveCCError):
    """One item cannot be played as annotated (its video outside --data, a clip ending before it
    begins, a question too long for the context): that item fails, with `label` as its reason."""

    def __init__(self, message: str, label: str):
        super().__init__(message)
        self.label = label


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


def _bad(where: str, name: str, value: object, kind: str) -> EvalDataError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return EvalDataError(f"{where} has {name} {shown}, not {kind}: fix that item or {GET_DATA}")


def _int(record: dict, name: str, where: str, allowed: range | None = None) -> int:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int) or (allowed is not None and value not in allowed):
        kind = "an integer" if allowed is None else f"an integer from {allowed.start} to {allowed.stop - 1}"
        raise _bad(where, name, value, kind)
    return value


def _time(record: dict, name: str, where: str) -> float:
    """A time in seconds: a finite number, not negative (JSON's NaN and Infinity included)."""
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _bad(where, name, value, "a time in seconds")
    return float(value)


def _text(record: dict, name: str, where: str) -> str:
    if not isinstance(record[name], str):
        raise _bad(where, name, record[name], "text")
    return record[name]


def _choice_probe(record: dict, where: str) -> Probe:
    _need(record, where, "question", "options", "gt", "realtime")
    options = record["options"]
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        raise _bad(where, "options", options, "a list of texts")
    gt = _int(record, "gt", where, range(len(options)))
    return Probe(_time(record, "realtime", where), choice_prompt(_text(record, "question", where), options),
                 chr(65 + gt))


def _forward_probe(record: dict, info: object, at: str) -> Probe:
    if not isinstance(info, dict):
        raise _bad(at, "entry", info, "an object")
    task = record["task"]
    if task == "REC":
        _need(info, at, "realtime", "count")
        prompt = REC_PROMPT.format(f"How many times did they {_text(record, 'activity', at)}?")
        return Probe(_time(info, "realtime", at), prompt, _int(info, "count", at, range(0, 2**31)))
    _need(info, at, "realtime", "type", *(("step",) if task == "SSR" else ()))
    text = _text(info, "step", at) if task == "SSR" else _text(record, "question", at)
    prompt = (SSR_PROMPT if task == "SSR" else CRR_PROMPT).format(text)
    return Probe(_time(info, "realtime", at), prompt, _int(info, "type", at, range(2)))


def _probes(record: dict, where: str) -> tuple[Probe, ...]:
    task = record["task"]
    if task in BACKWARD + REALTIME:
        return (_choice_probe(record, where),)
    _need(record, where, "test_info", *(("activity",) if task == "REC" else ("question",) if task == "CRR" else ()))
    if not isinstance(record["test_info"], list):
        raise _bad(where, "test_info", record["test_info"], "a list")
    return tuple(_forward_probe(record, info, f"{where} test_info[{k}]") for k, info in enumerate(record["test_info"]))


def parse_items(records: object, source: str) -> list[OvoItem]:
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise EvalDataError(f"{source} is not a list of OVO-Bench items: {GET_DATA}")
    if not records:
        raise EvalDataError(f"{source} holds no items: {GET_DATA}")
    items = []
    for i, record in enumerate(records):
        where = f"{source} item {i}"
        _need(record, where, "id", "task", "video")
        if record["task"] not in TASKS:
            raise _bad(where, "task", record["task"], f"one of OVO-Bench's {', '.join(TASKS)}")
        items.append(OvoItem(_int(record, "id", where), record["task"], _text(record, "video", where),
                             _probes(record, where)))
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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise EvalDataError(f"{path} is not valid JSON ({exc}): {GET_DATA}") from None
    return parse_items(records, str(path))


def inside_data(video: str) -> Path:
    """The annotation's video path, normalised; ItemError when it leaves the data folder (an
    absolute path, '..' past the top). Links the user made inside the folder are followed."""
    path = Path(os.path.normpath(video)) if "\0" not in video else None
    if path is None or path.is_absolute() or path.parts[:1] == ("..",):
        raise ItemError("its video path is not inside the data folder (absolute, '..' past it, or a NUL byte): only "
                        "videos under --data are played; fix that item's \"video\"", "video outside --data")
    return path


def resolve_video(data: Path, video: str, folder: str) -> Path:
    """Where the official layout puts a video (DIR/FOLDER/...), else DIR/... itself."""
    relative = inside_data(video)
    official = data / folder / relative
    return official if official.exists() or not (data / relative).exists() else data / relative


def video_path(data: Path, video: str) -> Path:
    return resolve_video(data, video, VIDEO_DIR)


def select(items: list, tasks: list[str] | None = None, sample: int | None = None, seed: int = 0,
           limit: int | None = None) -> list:
    """--tasks, then --sample N (seeded, kept in file order), then --limit N."""
    if tasks:
        items = [item for item in items if item.task in tasks]
    if sample is not None and sample < len(items):
        keep = set(random.Random(seed).sample(range(len(items)), sample))
        items = [item for i, item in enumerate(items) if i in keep]
    return items[:limit] if limit is not None else items
