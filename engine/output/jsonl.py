"""Files that survive a crash: append-only JSONL flushed per record, a torn last line cut before
appending, and write failures (a full disk) as one line naming the fix. A shared leaf, like
`engine.errors`: the CLI, the evaluation harness and the desktop app all append records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from engine.errors import LiveCCError


class WriteError(LiveCCError):
    """An output file stopped taking writes (a full disk, a removed drive)."""


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """OSError while writing `path` becomes one line that names the file and the fix."""
    try:
        yield
    except OSError as exc:
        raise WriteError(f"cannot write {path} ({exc.strerror or exc}): free some disk space or choose another "
                         f"place; it holds every chunk written before") from None




def repair_torn_tail(path: Path) -> int:
    """Cut an unfinished last line (a run killed mid-write, a full disk) so the next record starts
    on its own line. Returns how many bytes were cut."""
    if not path.is_file():
        return 0
    with path.open("rb+") as f:
        size = f.seek(0, 2)
        if size == 0:
            return 0
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        keep = _end_of_last_line(f, size)
        f.truncate(keep)
        return size - keep


def _end_of_last_line(f, size: int, block: int = 65536) -> int:
    pos = size
    while pos > 0:
        start = max(0, pos - block)
        f.seek(start)
        data = f.read(pos - start)
        if b"\n" in data:
            return start + data.rfind(b"\n") + 1
        pos = start
    return 0




class JsonlLog:
    """Append-only JSONL, one line per record, flushed at once: a crash loses nothing written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with writing(self.path):
            self.repaired = repair_torn_tail(self.path)  # bytes of a torn last line, cut before appending
            self._file: TextIO = self.path.open("a", encoding="utf-8")
        self.records = 0

    def write(self, record: dict) -> None:
        with writing(self.path):
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._file.flush()
        self.records += 1

    def close(self) -> None:
        with writing(self.path):
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
