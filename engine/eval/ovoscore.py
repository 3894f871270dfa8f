"""OVO-Bench scoring, the same arithmetic as JoeLeelyf/OVO-Bench `utils/OVOBenchScore.py`.

- backward and real-time items: 1 when the ground-truth letter occurs anywhere in the reply;
- REC: the reply's digits, concatenated, equal the count;
- SSR and CRR: a reply of exactly "N"/"Y" that matches, else "No"/"Yes" occurring in the reply;
- a missing reply (None) scores 0, and so does every question of an item that failed (its video
  missing or unreadable: the official `inference()` catches the error and saves None), unless
  `skip_failed` leaves those questions out of the denominators.
A task's accuracy is the mean over its questions (every forward probe counts once); a group's
average is the mean of its task accuracies; the total is the mean of the group averages (the
official script's `Total Avg.`; it needs all three groups, so with fewer we average those present).
"""

from __future__ import annotations

import re

from .ovobench import FORWARD, GROUPS


def score_choice(response: str | None, truth: str) -> int:
    return 0 if response is None else int(truth in response)


def score_count(response: str | None, count: int) -> int:
    return 0 if response is None else int("".join(re.findall(r"\d+", response)) == str(count))


def score_yes_no(response: str | None, kind: int) -> int:
    if response is None:
        return 0
    if (response == "N" and kind == 0) or (response == "Y" and kind == 1):
        return 1
    return int(("No" if kind == 0 else "Yes") in response)


def probe_score(task: str, response: str | None, truth: str | int) -> int:
    if task == "REC":
        return score_count(response, int(truth))
    if task in FORWARD:
        return score_yes_no(response, int(truth))
    return score_choice(response, str(truth))


def _task_scores(records: list[dict], skip_failed: bool) -> dict:
    per_task: dict[str, dict] = {}
    for record in records:
        task = per_task.setdefault(record["task"], {"scores": [], "failed": 0})
        if record.get("failed"):
            task["failed"] += len(record["probes"])
            if skip_failed:
                continue
        task["scores"].extend(probe_score(record["task"], p["response"], p["truth"]) for p in record["probes"])
    return {name: {"questions": len(t["scores"]), "correct": sum(t["scores"]), "failed": t["failed"],
                   "accuracy": 100 * sum(t["scores"]) / len(t["scores"]) if t["scores"] else None}
            for name, t in per_task.items() if t["scores"] or t["failed"]}


def score_records(records: list[dict], skip_failed: bool = False) -> dict:
    """Per-task accuracy, group averages and the total (all in percent) from result records
    ({"task", "probes": [{"response", "truth"}], "failed" for an item that could not run}), with
    how many questions were scored and how many of them (or, with `skip_failed`, besides them) failed."""
    tasks = _task_scores(records, skip_failed)
    groups = {}
    for group, names in GROUPS.items():
        accs = [tasks[t]["accuracy"] for t in names if t in tasks and tasks[t]["accuracy"] is not None]
        if accs:
            groups[group] = sum(accs) / len(accs)
    total = sum(groups.values()) / len(groups) if groups else None
    return {"tasks": tasks, "groups": groups, "total": total,
            "scored_questions": sum(t["questions"] for t in tasks.values()),
            "failed_questions": sum(t["failed"] for t in tasks.values())}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _questions(task: dict) -> str:
    return f"{task['questions']} ({task['failed']} failed)" if task.get("failed") else str(task["questions"])


def scores_markdown(scores: dict) -> str:
    lines = ["| group | task | questions | correct | accuracy (%) |", "|---|---|---|---|---|"]
    for group, names in GROUPS.items():
        for task in names:
            if task in scores["tasks"]:
                t = scores["tasks"][task]
                lines.append(f"| {group} | {task} | {_questions(t)} | {t['correct']} | {_percent(t['accuracy'])} |")
        if group in scores["groups"]:
            lines.append(f"| **{group} avg.** | | | | **{scores['groups'][group]:.2f}** |")
    if scores["total"] is not None:
        lines.append(f"| **total avg.** | | | | **{scores['total']:.2f}** |")
    return "\n".join(lines) + "\n"
