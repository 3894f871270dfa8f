"""Paths a user names, checked before anything opens them: opening a named pipe waits for its
other end forever, and a name longer than the file system allows fails with ENAMETOOLONG. The CLI
checks its video and every output; the file source checks its video."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# Named here, a pipe or a terminal is the user's choice (/dev/stdout, bash's <(...) as /dev/fd/63).
DEVICE_DIRS = ("/dev/", "/proc/self/fd/")
_KINDS = {stat.S_ISFIFO: "a named pipe (FIFO), which blocks until another program opens it",
          stat.S_ISSOCK: "a socket", stat.S_ISBLK: "a block device"}


def path_problem(path: str | os.PathLike) -> str | None:
    """Why `path` must not be opened as a file, or None for a regular file, a missing one, a folder
    (callers name that), a character device (/dev/null) and anything named under /dev. The reason
    reads after the path: f"{path} {problem}"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return "has a name longer than the file system allows (255 bytes a name): choose a shorter one"
        return None  # a file under a file, no permission: the caller's own checks name those
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISCHR(mode) or _named_as_device(path):
        return None
    kind = next((name for test, name in _KINDS.items() if test(mode)), "an unusual file")
    return f"is {kind}, not a regular file: give a file name (a device only by its name under /dev)"


def _named_as_device(path: str | os.PathLike) -> bool:
    return str(Path(path).expanduser().absolute()).startswith(DEVICE_DIRS)
