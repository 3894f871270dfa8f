"""Stop signals: SIGINT, SIGTERM and SIGHUP all end a run the same way, as Ctrl-C does, and a
signal that arrives while a cue is being written waits until it has reached every file."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived: the run ends as after Ctrl-C, with exit status 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class _Hold:
    depth: int = 0  # inside held(): a stop is recorded, not raised
    pending: int | None = None


_HOLD = _Hold()


@contextmanager
def stop_signals() -> Iterator[None]:
    """The first stop signal raises `Interrupted` in the main thread (at the end of a held() block
    if it came inside one); later ones are ignored, so the cleanup it starts (finishing the subtitle
    files) is never cut short by a second Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        if _HOLD.depth:
            _HOLD.pending = signum
        else:
            raise Interrupted(signum)

    signums = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        _HOLD.pending = None
        for signum, old in previous.items():  # after a stop the process only exits: stay deaf to repeats
            signal.signal(signum, _ignore if fired else old)


def ignore_stop_signals() -> None:
    """For the program's last moments after a stop: SIG_IGN, not `_ignore`, because the interpreter
    puts back the default action of every Python handler as it shuts down, and a second Ctrl-C then
    would kill the process by signal instead of letting it exit 130. Only the program calls this:
    an in-process caller would pass SIG_IGN on to every child it starts later."""
    for name in STOP_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def _ignore(signum, frame) -> None:
    """A caught no-op, not SIG_IGN: an ignored disposition would be inherited by every child process
    started later (tests run the CLI in-process, then start Xvfb and expect it to stop on SIGTERM)."""


@contextmanager
def held() -> Iterator[None]:
    """Writes that belong together (one cue into the SRT and the VTT): a stop signal arriving inside
    is raised when the block ends, so the files never disagree."""
    _HOLD.depth += 1
    try:
        yield
    finally:
        _HOLD.depth -= 1
    if not _HOLD.depth and _HOLD.pending is not None:
        signum, _HOLD.pending = _HOLD.pending, None
        raise Interrupted(signum)
