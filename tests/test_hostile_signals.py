"""Hostile signal timing (issue 24): a second stop signal after the summary, while the interpreter
shuts down, must not kill `livecc` by signal: the exit status stays 128 + the first signal. Each
case is one row of a table: the next finding is one line to add.

Both signals come on observed events, never after a sleep: the first from the command itself at a
named step, the second from an object that the interpreter destroys while it shuts down (after
it has put back the default action of every Python signal handler)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from videos import write_video

# Runs `python -m livecc.cli ARGS` with a first signal sent by the step HOOK (module:attribute), and
# a second one sent as the interpreter tears the program down.
PROGRAM = '''
import importlib, os, runpy, signal, sys

hook, first, second, *args = sys.argv[1:]
module, _, name = hook.partition(":")
owner = importlib.import_module(module)
for part in name.split(".")[:-1]:
    owner = getattr(owner, part)
step = getattr(owner, name.split(".")[-1])


def step_then_stop(*a, **k):
    result = step(*a, **k)
    os.kill(os.getpid(), getattr(signal, first))
    return result


setattr(owner, name.split(".")[-1], step_then_stop)


class SecondSignal:
    def __del__(self):
        os.kill(os.getpid(), getattr(signal, second))


at_teardown = SecondSignal()
sys.argv = ["livecc", *args]
runpy.run_module("livecc.cli", run_name="__main__")
'''

# (case, the step after which the first signal comes, first, second, the command)
SECOND_SIGNAL = [
    ("narrate: Ctrl-C after a comment, Ctrl-C again", "livecc.cli.narrate:ProgressBar.write", "SIGINT", "SIGINT",
     ["narrate", "{video}", "--srt", "{out}/a.srt"]),
    ("narrate: SIGTERM, then Ctrl-C", "livecc.cli.narrate:ProgressBar.write", "SIGTERM", "SIGINT",
     ["narrate", "{video}", "--srt", "{out}/a.srt"]),
    ("ask: Ctrl-C after watching, Ctrl-C again", "livecc.cli.ask:_warn_if_short", "SIGINT", "SIGINT",
     ["ask", "{video}", "what is shown?"]),
]


@pytest.mark.parametrize("hook, first, second, argv", [row[1:] for row in SECOND_SIGNAL],
                         ids=[row[0] for row in SECOND_SIGNAL])
def test_a_second_signal_while_exiting_keeps_the_exit_status(hook, first, second, argv, tiny_model_dir, tmp_path):
    video = write_video(tmp_path / "six.mp4", seconds=6, fps=5)
    args = [a.format(video=video, out=tmp_path) for a in argv] + ["--model", str(tiny_model_dir),
                                                                  "--max-pixels", "20000"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", PROGRAM, hook, first, second, *args], capture_output=True,
                          text=True, env=env, timeout=300)
    signum = getattr(signal, first)
    assert proc.returncode == 128 + signum, proc.stderr  # not -second: killed by the second signal
    assert f"livecc: interrupted ({first})" in proc.stderr and "Traceback" not in proc.stderr
    if argv[0] == "narrate":
        assert re.search(r"^livecc: \d+ chunks, \d+ comments", proc.stderr, re.M), proc.stderr  # the summary
        assert (tmp_path / "a.srt").read_text().startswith("1\n")  # the printed comment is in the file
