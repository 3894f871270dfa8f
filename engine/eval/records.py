"""What an evaluation run writes: a resumable results JSONL, the run's settings, the summary.

Every finished item is appended and flushed at once, so a crash or Ctrl-C loses nothing and a
rerun skips what is there. A torn last line (killed mid-write) is dropped on reopening.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from importlib import metadata
from pathlib import Path

from engine.errors import LiveCCError
from engine.output.jsonl import JsonlLog, NotOurJsonl, repair_torn_tail

ROOT = Path(__file__).resolve().parents[2]


def code_version() -> str:
    """`git describe` of the checkout when there is one, else the installed package version."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return "git " + out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        return "package " + metadata.version("livecc-desktop")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class RunSettings:
    """Everything that decides a run's results: a rerun into the same folder must match it."""

    benchmark: str
    model: str
    session: dict  # dataclasses.asdict(SessionConfig): every engine setting, whoever adds it
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, benchmark: str, model: str, config, **extra) -> "RunSettings":
        session = asdict(config) if is_dataclass(config) else dict(config)
        # Through JSON once, so a fresh run and a reread run.json compare equal (tuples, paths).
        return cls(benchmark, model, json.loads(json.dumps(session, default=str)), json.loads(json.dumps(extra)))

    def to_dict(self) -> dict:
        return asdict(self)


def _earlier_settings(path: Path) -> dict:
    """The settings an earlier run recorded; one error naming the fix when run.json is damaged."""
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
        if isinstance(settings, dict) and all(isinstance(settings.get(k), dict) for k in ("session", "extra")):
            return settings
    except (ValueError, KeyError, TypeError, RecursionError):
        pass
    raise LiveCCError(f"{path} is damaged (not the run record this tool writes): pass another --out, or delete "
                      f"{path.parent} to start it afresh")


def open_run(out: Path, settings: RunSettings) -> None:
    """Create the output folder and record the settings, or check them against an earlier run there."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, a file on the way, no permission
        raise LiveCCError(f"cannot make the output folder {out} ({exc.strerror or exc})",
                          "pass --out a folder you can write") from None
    path = out / "run.json"
    if path.exists():
        before = _earlier_settings(path)
        differ = [k for part in ("session", "extra") for k in sorted({**before[part], **getattr(settings, part)})
                  if before[part].get(k) != getattr(settings, part).get(k)]
        differ += [k for k in ("benchmark", "model") if before.get(k) != getattr(settings, k)]
        if differ:
            raise LiveCCError(f"{out} holds a run with other settings ({', '.join(differ)}): "
                              "pass another --out to keep both, or delete that folder")
        return
    record = {"settings": settings.to_dict(), "code_version": code_version(),
              "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    try:
        write_atomic(path, json.dumps(record, indent=2) + "\n")
    except PermissionError as exc:  # a full disk is the CLI's own line
        raise LiveCCError(f"cannot write {path} ({exc.strerror})", "pass --out a folder you can write") from None


def write_atomic(path: Path, text: str) -> None:
    """Write a whole file or nothing: a run killed mid-write leaves the old file, never half of one."""
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


class ResultLog:
    """An append-only JSONL of finished items, keyed by `key(record)`: a torn last line (a run killed
    mid-write, even mid-character) is cut first, then each record is appended and flushed."""

    def __init__(self, path: Path, key, valid: Callable[[dict], bool] = lambda r: True, what: str = "a record"):
        self.path, self.key = path, key
        try:
            repair_torn_tail(path)
        except NotOurJsonl:
            read_jsonl(path, valid, what)  # names the line and what it should hold, where it can
            raise
        self.records = read_jsonl(path, valid, what)
        self.done = {key(r) for r in self.records}

    def append(self, record: dict) -> None:
        with JsonlLog(self.path, repair=False) as log:  # repaired once, when the log opened
            log.write(record)
        self.records.append(record)
        self.done.add(self.key(record))


def has(record: object, *keys: str) -> bool:
    return isinstance(record, dict) and all(k in record for k in keys)


def read_jsonl(path: Path, valid: Callable[[dict], bool] = lambda r: True, what: str = "a record") -> list[dict]:
    """Records of a JSONL file ([] when absent); a line that is not a JSON object passing `valid`
    is one error naming it."""
    if not path.exists():
        return []
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").split("\n")):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise LiveCCError(f"{path} line {i + 1} is not JSON ({getattr(exc, 'msg', exc)}): fix or delete that "
                              "line") from None
        if not isinstance(record, dict) or not valid(record):
            raise LiveCCError(f"{path} line {i + 1} is not {what}: fix or delete that line")
        records.append(record)
    return records


def write_summary(out: Path, summary: dict, markdown: str) -> None:
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_atomic(out / "summary.md", markdown)
