"""The resumable run loop shared by both benchmarks: skip finished items, run the rest with a
progress bar (ETA, seconds per item), append each result as it finishes, count the items whose
video is missing or unreadable without stopping, then summarise.

The OVO-Bench result record keeps what `utils/OVOBench.py` saves per item (id, video, task, the
response(s), the ground truth), one JSON line per item; forward items keep one entry per probe.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from engine.errors import SourceError

from .livesports import SportsEvent, context_prompt, prediction_key, prediction_record
from .ovobench import OvoItem
from .ovoscore import probe_score, score_records, scores_markdown
from .records import ResultLog, write_summary

# Plays `video` and returns one reply per (time, prompt), in the same order.
Answerer = Callable[[Path, list[tuple[float, str]]], list[str]]


@dataclass
class Failure:
    id: object
    video: str
    error: str


@dataclass
class RunReport:
    done: int = 0  # finished in this run
    skipped: int = 0  # finished by an earlier run
    failures: list[Failure] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def counts(self) -> dict:
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else None
        return {"done_now": self.done, "skipped_done_before": self.skipped, "failed": len(self.failures),
                "failures": [vars(f) for f in self.failures], "seconds_per_item": mean,
                "items_per_hour": 3600 / mean if mean else None}


def run_items(items: list, key: Callable[[object], object], log: ResultLog, work: Callable[[object], dict],
              video_of: Callable[[object], Path], desc: str, timed: bool = True) -> RunReport:
    """Run `work(item) -> record` for every item not in `log`, appending each record at once (with its
    "seconds" when `timed`). An item whose video is missing or unreadable is reported in the
    RunReport and the run goes on."""
    report = RunReport()
    todo = [item for item in items if key(item) not in log.done]
    report.skipped = len(items) - len(todo)
    bar = tqdm(total=len(todo), desc=desc, unit="item", file=sys.stderr, dynamic_ncols=True)
    try:
        for item in todo:
            t0 = time.perf_counter()
            video = video_of(item)
            try:
                if not video.exists():
                    raise SourceError(f"video not found: {video}")
                record = work(item)
            except SourceError as exc:
                report.failures.append(Failure(key(item), str(video), str(exc)))
                tqdm.write(f"item {key(item)}: {exc}", file=sys.stderr)
            else:
                seconds = time.perf_counter() - t0
                log.append(record | {"seconds": round(seconds, 3)} if timed else record)
                report.done += 1
                report.seconds.append(seconds)
            bar.update(1)
            mean = sum(report.seconds) / len(report.seconds) if report.seconds else 0.0
            bar.set_postfix_str(f"{mean:.1f} s/item, {len(report.failures)} failed", refresh=False)
    finally:
        bar.close()
    return report


# -- OVO-Bench -----------------------------------------------------------------------------------
def ovo_record(item: OvoItem, replies: list[str | None]) -> dict:
    probes = [{"realtime": p.time, "response": r, "truth": p.truth, "score": probe_score(item.task, r, p.truth)}
              for p, r in zip(item.probes, replies)]
    return {"id": item.id, "task": item.task, "group": item.group, "video": item.video, "probes": probes}


def ovo_work(answer: Answerer, video_of: Callable[[OvoItem], Path]) -> Callable[[OvoItem], dict]:
    def work(item: OvoItem) -> dict:
        replies = answer(video_of(item), [(p.watch_until, p.prompt) for p in item.probes])
        return ovo_record(item, replies)

    return work


def run_ovobench(items: list[OvoItem], answer: Answerer, video_of: Callable[[OvoItem], Path], out: Path,
                 run_info: dict) -> dict:
    """Answer every item not yet in out/results.jsonl, then score the selection and write
    summary.json and summary.md. Returns the summary."""
    log = ResultLog(out / "results.jsonl", key=lambda r: r["id"])
    report = run_items(items, lambda item: item.id, log, ovo_work(answer, video_of), video_of, "OVO-Bench")
    wanted = {item.id for item in items}
    records = [r for r in log.records if r["id"] in wanted]
    scores = score_records(records)
    summary = {"benchmark": "ovobench", "items": len(items), "answered": len(records), **report.counts(),
               "scores": scores, "run": run_info}
    write_summary(out, summary, ovo_markdown(summary))
    return summary


def ovo_markdown(summary: dict) -> str:
    settings = summary["run"]["settings"]
    head = (f"# OVO-Bench: {settings['model']}\n\n{summary['answered']} of {summary['items']} items answered, "
            f"{summary['failed']} failed (missing or unreadable video); code {summary['run']['code_version']}; "
            f"positions {settings['session'].get('positions')}, KV budget {settings['session'].get('kv_budget')}\n\n")
    return head + scores_markdown(summary["scores"])


# -- LiveSports-3K CC ------------------------------------------------------------------------------
# Comments a fresh session makes on an event's clip, given the clip, its bounds and the context prompt.
Commentator = Callable[[Path, float, float, str], list[str]]


def run_livesports(events: list[SportsEvent], comment: Commentator, video_of: Callable[[SportsEvent], Path],
                   out: Path, model_id: str, run_info: dict) -> tuple[dict, Path]:
    """Comment every event not yet in out/MODEL.jsonl (LiveCC's prediction file), then write
    summary.json and summary.md. Returns the summary and the predictions' path."""
    path = out / f"{model_id}.jsonl"
    log = ResultLog(path, key=prediction_key)

    def work(event: SportsEvent) -> dict:
        return prediction_record(event, comment(video_of(event), event.begin, event.end, context_prompt(event)))

    # timed=False: the predictions keep exactly LiveCC's five fields
    report = run_items(events, lambda e: e.key, log, work, video_of, "LiveSports-3K CC", timed=False)
    summary = {"benchmark": "livesports-cc", "events": len(events), **report.counts(), "predictions": str(path),
               "run": run_info}
    write_summary(out, summary, f"# LiveSports-3K CC: {model_id}\n\n{len(log.records)} predictions, "
                                f"{summary['failed']} failed (missing or unreadable video)\n")
    return summary, path
