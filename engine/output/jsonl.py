"""Files that survive a crash: append-only JSONL flushed per record, a torn last line cut before
appending (only in a file of our records: any other file is refused, untouched), and write
failures (a full disk) as one line naming the fix. A shared leaf, like
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


class NotOurJsonl(LiveCCError):
    """An existing file that is not a JSONL of our records (a text file, a video): appending would
    spoil it and cutting its "torn" tail would destroy part of it, so it is left untouched."""


def _is_record(line: bytes, key: str | None = None) -> bool:
    """A JSON object (with `key`, given one: every record of a narration or a session has a "type")."""
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return False
    return isinstance(record, dict) and (key is None or key in record)


def _starts_a_record(tail: bytes) -> bool:
    """Every record we write starts with '{"': a tail cut even one byte in still does."""
    return b'{"'.startswith(tail[:2])


def check_jsonl(path: Path, key: str | None = None) -> tuple[int, bytes]:
    """Raise NotOurJsonl unless `path` is missing, empty or a JSONL of our records: each finished
    line one JSON object (holding `key`, given one), and an unfinished last line that starts like
    one. Returns where that last line starts and its bytes (b"" when the file ends with a newline).
    Changes nothing."""
    if not path.is_file():
        return 0, b""  # nothing yet, or a device the user named (/dev/null): nothing to read
    offset = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                if _is_record(line, key) or _starts_a_record(line):
                    return offset, line
                raise _not_ours(path, number)
            if line.strip() and not _is_record(line, key):
                raise _not_ours(path, number)
            offset += len(line)
    return offset, b""


def _not_ours(path: Path, line: int) -> NotOurJsonl:
    return NotOurJsonl(f"{path} is not a JSONL file of livecc records (line {line} is not one): it was left "
                       f"untouched; give a new file name, or move that file away")


def repair_torn_tail(path: Path) -> int:
    """Make a JSONL of ours ready to append to: an unfinished last line (a run killed mid-write, a
    full disk) is cut, a complete last record without its newline gets one. Returns how many bytes
    were cut. Raises NotOurJsonl, changing nothing, for any other file."""
    start, tail = check_jsonl(path)
    if not tail:
        return 0
    with path.open("rb+") as f:
        if _is_record(tail):
            f.seek(0, 2)
            f.write(b"\n")
            return 0
        f.truncate(start)
    return len(tail)


class JsonlLog:
    """Append-only JSONL, one line per record, flushed at once: a crash loses nothing written."""

    def __init__(self, path: str | Path, repair: bool = True):
        """repair=False: the caller has already run repair_torn_tail (ResultLog, once per run)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with writing(self.path):
            self.repaired = repair_torn_tail(self.path) if repair else 0  # bytes of a torn last line, cut
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
