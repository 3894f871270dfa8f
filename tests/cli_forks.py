"""`livecc narrate` runs in forked child processes for tests/test_cli_safety.py: the imports are paid
once, so a dozen runs take seconds, not minutes. Each run writes SRT, VTT and JSONL into its own
folder; the results (exit status, printed comments, stderr) go to OUT/runs.json.

    python tests/cli_forks.py signals VIDEO MODEL OUT SEED   # stop signals at random moments
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
import time
from pathlib import Path

import cv2  # noqa: F401  (everything the CLI imports is imported before the forks: paid once)
import tqdm  # noqa: F401
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration  # noqa: F401

import livecc.cli.main as cli
import livecc.cli.narrate  # noqa: F401
import engine.session.session  # noqa: F401

SMALL = ["--max-pixels", "20000"]
FULL_DISK_BYTES = 2048  # about four JSONL records


def small_disk() -> None:
    """Every file this process writes stops at FULL_DISK_BYTES, as on a nearly full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, resource.RLIM_INFINITY))


def child(argv: list[str], stdout_fd: int, stderr_fd: int, full_disk: bool) -> None:
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if full_disk:
        small_disk()
    code = cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(video: str, model: str, out: Path, signals: list[int] = (), delay: float = 0.0,
        full_disk: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    argv = ["narrate", video, "--model", model, "--srt", str(out / "a.srt"), "--vtt", str(out / "a.vtt"),
            "--jsonl", str(out / "a.jsonl"), *SMALL]
    (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(out_r)
        os.close(err_r)
        try:
            child(argv, out_w, err_w, full_disk)
        finally:
            os._exit(70)
    os.close(out_w)
    os.close(err_w)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(os.fdopen(err_r).read()))
    reader.start()
    with os.fdopen(out_r) as stdout:
        printed = [stdout.readline()]  # the first comment: the run is under way
        time.sleep(delay)
        for signum in signals:
            os.kill(pid, signum)
            time.sleep(0.02)
        printed += stdout.read().splitlines()
    _, status = os.waitpid(pid, 0)
    reader.join()
    return {"signals": list(signals), "delay": delay, "code": os.waitstatus_to_exitcode(status), "out": str(out),
            "printed": [line.rstrip("\n") for line in printed if line.startswith("[")], "stderr": err[0]}


def main() -> None:
    mode, video, model, out = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
    if mode == "signals":
        rng = random.Random(int(sys.argv[5]))
        plan = [([signal.SIGTERM], rng.uniform(0.0, 1.2)) for _ in range(10)]
        plan += [([signal.SIGHUP], 0.5), ([signal.SIGINT, signal.SIGINT], 0.5)]  # the last: a quick double Ctrl-C
        runs = [run(video, model, out / f"t{i}", signals, delay) for i, (signals, delay) in enumerate(plan)]
    else:
        first = run(video, model, out / "full", full_disk=True)
        jsonl = (out / "full" / "a.jsonl").read_bytes()  # bytes: the cut may split a UTF-8 character
        first |= {"srt": (out / "full" / "a.srt").read_text(), "jsonl_torn": not jsonl.endswith(b"\n"),
                  "jsonl_lines": jsonl.count(b"\n")}
        runs = [first, run(video, model, out / "full")]  # the rerun, onto the same files
    (out / "runs.json").write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
