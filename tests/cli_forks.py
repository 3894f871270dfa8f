"""`livecc narrate` runs in forked child processes for tests/test_cli_safety.py: the imports are paid
once, so a dozen runs take seconds, not minutes. Each run writes SRT, VTT and JSONL into its own
folder; the results (exit status, printed comments, stderr) go to OUT/runs.json.

    python tests/cli_forks.py signals VIDEO MODEL OUT SEED   # stop signals at random events of a run
    python tests/cli_forks.py full-disk VIDEO MODEL OUT      # files capped at 2 KiB, then a rerun
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import threading
from pathlib import Path

import cv2  # noqa: F401  (everything the CLI imports is imported before the forks: paid once)
import tqdm  # noqa: F401
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration  # noqa: F401

import livecc.cli.main as cli
import livecc.cli.narrate
import engine.session.session

SMALL = ["--max-pixels", "20000"]
FULL_DISK_BYTES = 2048  # about four JSONL records


def small_disk() -> None:
    """Every file this process writes stops at FULL_DISK_BYTES, as on a nearly full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, resource.RLIM_INFINITY))


# Where a run can be stopped: (class, method). The gate blocks the n-th call until the signal comes.
GATES = {
    "printed": (livecc.cli.narrate.ProgressBar, "write"),  # just after a comment reached the terminal
    "prefill": (engine.session.session.StreamingSession, "_prefill"),  # a chunk's frames going into the model
    "decode": (engine.session.session.StreamingSession, "_reply"),  # a comment being generated
}


def install_gate(kind: str, count: int, reached_fd: int, hold_fd: int) -> None:
    """At the count-th call of the gate's method, tell the parent and wait for its stop signal: the
    signal's handler raises there, so it lands mid-run on an observed event, whatever the load."""
    owner, name = GATES[kind]
    original, calls = getattr(owner, name), [0]

    def gated(*args, **kwargs):
        if kind == "printed":
            original(*args, **kwargs)
        calls[0] += 1
        if calls[0] == count:
            os.write(reached_fd, b"!")
            os.read(hold_fd, 1)  # nothing is ever written: only the signal ends this wait
        return None if kind == "printed" else original(*args, **kwargs)

    setattr(owner, name, gated)


def child(argv: list[str], stdout_fd: int, stderr_fd: int, full_disk: bool, gate=None) -> None:
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if full_disk:
        small_disk()
    if gate is not None:
        install_gate(*gate)
    code = cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(video: str, model: str, out: Path, signals: list[int] = (), gate: tuple[str, int] | None = None,
        full_disk: bool = False) -> dict:
    """One forked run; with `gate` (kind, n), `signals` are sent once the run is held at that event."""
    out.mkdir(parents=True, exist_ok=True)
    argv = ["narrate", video, "--model", model, "--srt", str(out / "a.srt"), "--vtt", str(out / "a.vtt"),
            "--jsonl", str(out / "a.jsonl"), *SMALL]
    (out_r, out_w), (err_r, err_w), (reached_r, reached_w), (hold_r, hold_w) = (os.pipe() for _ in range(4))
    pid = os.fork()
    if pid == 0:
        for fd in (out_r, err_r, reached_r, hold_w):
            os.close(fd)
        try:
            child(argv, out_w, err_w, full_disk, gate and (*gate, reached_w, hold_r))
        finally:
            os._exit(70)
    for fd in (out_w, err_w, reached_w, hold_r):
        os.close(fd)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(os.fdopen(err_r).read()))
    reader.start()
    reached = os.read(reached_r, 1) == b"!"  # b"": the run ended without reaching the gate
    if reached:
        for signum in signals:
            os.kill(pid, signum)
    with os.fdopen(out_r) as stdout:
        printed = stdout.read().splitlines()
    _, status = os.waitpid(pid, 0)
    reader.join()
    for fd in (reached_r, hold_w):
        os.close(fd)
    return {"signals": list(signals), "gate": gate, "reached": reached, "code": os.waitstatus_to_exitcode(status),
            "out": str(out), "printed": [line for line in printed if line.startswith("[")], "stderr": err[0]}


def main() -> None:
    mode, video, model, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    if mode == "signals":
        rng = random.Random(int(sys.argv[5]))
        plan = [([signal.SIGTERM], (rng.choice(sorted(GATES)), rng.randint(1, 12))) for _ in range(10)]
        plan += [([signal.SIGHUP], ("printed", 3)), ([signal.SIGINT, signal.SIGINT], ("decode", 5))]  # a double Ctrl-C
        runs = [run(video, model, out / f"t{i}", signals, gate) for i, (signals, gate) in enumerate(plan)]
    else:
        first = run(video, model, out / "full", full_disk=True)
        jsonl = (out / "full" / "a.jsonl").read_bytes()  # bytes: the cut may split a UTF-8 character
        first |= {"srt": (out / "full" / "a.srt").read_text(), "jsonl_torn": not jsonl.endswith(b"\n"),
                  "jsonl_lines": jsonl.count(b"\n")}
        runs = [first, run(video, model, out / "full")]  # the rerun, onto the same files
    (out / "runs.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
