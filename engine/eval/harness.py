"""The resumable run loop shared by both benchmarks: skip finished items, run the rest with a
progress bar (ETA, seconds per item), append each result as it finishes, count the items that fail
(a missing or unreadable video, a video outside --data, a clip or question that cannot be run)
without stopping, then summarise.

The OVO-Bench result record keeps what `utils/OVOBench.py` saves per item (id, video, task, the
response(s), the ground truth), one JSON line per item; forward items keep one entry per probe.
A failed item writes no record (a rerun tries it again) but counts in the scores as the official
pipeline counts it: every question wrong.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from engine.errors import SourceError

from .livesports import SportsEvent, check_clip, context_prompt, prediction_key, prediction_ok, prediction_record
from .ovobench import ItemError, OvoItem
from .ovoscore import probe_score, score_records, scores_markdown
from .records import ResultLog, has, write_summary

# Plays `video` and returns one reply per (time, prompt), in the same order.
Answerer = Callable[[Path, list[tuple[float, str]]], list[str]]
VIDEO_FAILED = "missing or unreadable video"
# Elapsed, ETA and our own mean seconds per item: tqdm's smoothed rate would be a second, different figure.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


@dataclass
class Failure:
    id: object
    task: str
    video: str | None  # None when the annotation's path is not shown (it points outside --data)
    error: str
    reason: str  # a short label: "missing or unreadable video", "end before begin", ...


@dataclass
class RunReport:
    done: int = 0  # finished in this run
    skipped: int = 0  # finished by an earlier run
    failures: list[Failure] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def counts(self) -> dict:
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else None
        return {"done_now": self.done, "skipped_done_before": self.skipped, "failed": len(self.failures),
                "failed_by_reason": dict(Counter(f.reason for f in self.failures)),
                "failures": [vars(f) for f in self.failures], "seconds_per_item": mean,
                "items_per_hour": 3600 / mean if mean else None}


def failure_reasons(summary: dict) -> str:
    """'2 missing or unreadable video, 1 end before begin': why the failed items failed."""
    return ", ".join(f"{n} {reason}" for reason, n in summary["failed_by_reason"].items()) or "none"


def failed_line(summary: dict) -> str:
    return f"{summary['failed']} failed" + (f" ({failure_reasons(summary)})" if summary["failed"] else "")


def progress(total: int, desc: str, unit: str) -> tqdm:
    """A bar for the work left, silent when nothing is left (no empty '0 item' bar)."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, bar_format=BAR_FORMAT,
                disable=not total)


def _reason(exc: Exception) -> str:
    return exc.label if isinstance(exc, ItemError) else VIDEO_FAILED


def _try_item(item, key, work, video_of, report: RunReport) -> dict | None:
    """work(item), or None after recording why the item failed."""
    video = None
    try:
        video = video_of(item)
        if not video.exists():
            raise SourceError(f"video not found: {video}")
        return work(item)
    except (SourceError, ItemError) as exc:
        report.failures.append(Failure(key(item), item.task, None if video is None else str(video), str(exc),
                                       _reason(exc)))
        tqdm.write(f"item {key(item)}: {exc}", file=sys.stderr)
        return None


def run_items(items: list, key: Callable[[object], object], log: ResultLog, work: Callable[[object], dict],
              video_of: Callable[[object], Path], desc: str, timed: bool = True) -> RunReport:
    """Run `work(item) -> record` for every item not in `log`, appending each record at once (with its
    "seconds" when `timed`). An item that fails (its video, its clip, its question) is reported in
    the RunReport with its reason and the run goes on."""
    report = RunReport()
    todo = [item for item in items if key(item) not in log.done]
    report.skipped = len(items) - len(todo)
    with progress(len(todo), desc, "item") as bar:
        for item in todo:
            t0 = time.perf_counter()
            record = _try_item(item, key, work, video_of, report)
            if record is not None:
                seconds = time.perf_counter() - t0
                log.append(record | {"seconds": round(seconds, 3)} if timed else record)
                report.done += 1
                report.seconds.append(seconds)
            bar.update(1)
            if report.seconds:
                mean = sum(report.seconds) / len(report.seconds)
                bar.set_postfix_str(f"{mean:.1f} s/item, {len(report.failures)} failed", refresh=False)
    return report


# -- OVO-Bench -----------------------------------------------------------------------------------
def ovo_record(item: OvoItem, replies: list[str | None]) -> dict:
    probes = [{"realtime": p.time, "response": r, "truth": p.truth, "score": probe_score(item.task, r, p.truth)}
              for p, r in zip(item.probes, replies)]
    return {"id": item.id, "task": item.task, "group": item.group, "video": item.video, "probes": probes}


def ovo_result_ok(record: dict) -> bool:
    """What the scorer reads of a results line: its id, task and probes with response and truth."""
    return has(record, "id", "task", "probes") and isinstance(record["id"], int) and isinstance(record["task"], str) \
        and isinstance(record["probes"], list) and all(has(p, "response", "truth") for p in record["probes"])


def ovo_work(answer: Answerer, video_of: Callable[[OvoItem], Path], protocol: str = "official") \
        -> Callable[[OvoItem], dict]:
    """official: each probe on its own stream up to its time (utils/OVOBench.py's clip per probe);
    stream: one stream per item, the earlier probes and answers staying in its context."""
    def work(item: OvoItem) -> dict:
        probes = [(p.watch_until, p.prompt) for p in item.probes]
        if protocol == "stream":
            return ovo_record(item, answer(video_of(item), probes))
        return ovo_record(item, [answer(video_of(item), [probe])[0] for probe in probes])

    return work


def _scored_records(items: list[OvoItem], log: ResultLog, report: RunReport) -> list[dict]:
    """The selection's records in file order; a failed item gets every reply None and its reason."""
    done = {r["id"]: r for r in log.records}
    reasons = {f.id: f.reason for f in report.failures}
    return [done[item.id] if item.id in done else
            ovo_record(item, [None] * len(item.probes)) | {"failed": reasons.get(item.id, "not answered")}
            for item in items]


def run_ovobench(items: list[OvoItem], answer: Answerer, video_of: Callable[[OvoItem], Path], out: Path,
                 run_info: dict, protocol: str = "official", skip_failed: bool = False) -> dict:
    """Answer every item not yet in out/results.jsonl, then score the selection and write
    summary.json and summary.md. Returns the summary."""
    log = ResultLog(out / "results.jsonl", key=lambda r: r["id"], valid=ovo_result_ok,
                    what="an OVO-Bench result (id, task, probes with response and truth)")
    report = run_items(items, lambda item: item.id, log, ovo_work(answer, video_of, protocol), video_of, "OVO-Bench")
    records = _scored_records(items, log, report)
    scores = score_records(records, skip_failed)
    summary = {"benchmark": "ovobench", "protocol": protocol, "items": len(items),
               "answered": sum(not r.get("failed") for r in records), **report.counts(),
               "failed_items": "left out of the scores (--skip-failed)" if skip_failed else
               "scored as wrong, as OVO-Bench's own pipeline does",
               "scored_questions": scores["scored_questions"], "failed_questions": scores["failed_questions"],
               "scores": scores, "run": run_info}
    write_summary(out, summary, ovo_markdown(summary))
    return summary


def ovo_markdown(summary: dict) -> str:
    settings = summary["run"]["settings"]
    head = (f"# OVO-Bench: {settings['model']}\n\n{summary['answered']} of {summary['items']} items answered, "
            f"{failed_line(summary)}; failed items {summary['failed_items']}; {summary['scored_questions']} "
            f"questions scored; protocol {summary['protocol']}; code {summary['run']['code_version']}; "
            f"positions {settings['session'].get('positions')}, KV budget {settings['session'].get('kv_budget')}\n\n")
    return head + scores_markdown(summary["scores"])


# -- LiveSports-3K CC ------------------------------------------------------------------------------
# Comments a fresh session makes on an event's clip, given the clip, its bounds and the context prompt.
Commentator = Callable[[Path, float, float, str], list[str]]


def run_livesports(events: list[SportsEvent], comment: Commentator, video_of: Callable[[SportsEvent], Path],
                   out: Path, model_id: str, run_info: dict, instruct: bool = True) -> tuple[dict, Path]:
    """Comment every event not yet in out/MODEL.jsonl (LiveCC's prediction file), then write
    summary.json and summary.md. Returns the summary and the predictions' path."""
    path = out / f"{model_id}.jsonl"
    log = ResultLog(path, key=prediction_key, valid=prediction_ok, what="a prediction (video_id, event_id, pred)")

    def work(event: SportsEvent) -> dict:
        check_clip(event)
        prompt = context_prompt(event, instruct)
        return prediction_record(event, comment(video_of(event), event.begin, event.end, prompt))

    # timed=False: the predictions keep exactly LiveCC's five fields
    report = run_items(events, lambda e: e.key, log, work, video_of, "LiveSports-3K CC", timed=False)
    summary = {"benchmark": "livesports-cc", "prompt": "instruct" if instruct else "base", "events": len(events),
               **report.counts(), "predictions": str(path), "run": run_info}
    write_summary(out, summary, f"# LiveSports-3K CC: {model_id}\n\n{len(log.records)} predictions, "
                                f"{failed_line(summary)}; {summary['prompt']} prompt\n")
    return summary, path
