"""Stop-signal trials for tests/test_cli_safety.py: `livecc narrate` runs in forked child processes
(imports paid once, so ten trials take seconds, not minutes); each gets its signals at a random
moment after its first printed comment. Writes one JSON record per trial to OUT/trials.json.

    python tests/stop_trials.py VIDEO MODEL OUT SEED
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import cv2  # noqa: F401  (everything the CLI imports is imported before the forks: paid once)
import tqdm  # noqa: F401
from transformers import AutoTokenizer, Qwen2VLForConditionalGeneration  # noqa: F401

import engine.cli.main as cli
import engine.cli.narrate  # noqa: F401
import engine.session.session  # noqa: F401

SMALL = ["--max-pixels", "20000"]


def child(argv: list[str], stdout_fd: int, err_path: Path) -> None:
    os.dup2(stdout_fd, 1)
    err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(err, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    code = cli.main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def trial(video: str, model: str, out: Path, signals: list[int], delay: float) -> dict:
    out.mkdir(parents=True)
    argv = ["narrate", video, "--model", model, "--srt", str(out / "a.srt"), "--vtt", str(out / "a.vtt"),
            "--jsonl", str(out / "a.jsonl"), *SMALL]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            child(argv, write_fd, out / "stderr.txt")
        finally:
            os._exit(70)
    os.close(write_fd)
    with os.fdopen(read_fd) as stdout:
        printed = [stdout.readline()]  # the first comment: the run is under way
        time.sleep(delay)
        for signum in signals:
            os.kill(pid, signum)
            time.sleep(0.02)
        printed += stdout.read().splitlines()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return {"signals": signals, "delay": delay, "code": code, "out": str(out),
            "printed": [line.rstrip("\n") for line in printed if line.startswith("[")],
            "stderr": (out / "stderr.txt").read_text()}


def main() -> None:
    video, model, out, seed = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    plan = [([signal.SIGTERM], rng.uniform(0.0, 1.2)) for _ in range(10)]
    plan += [([signal.SIGHUP], 0.5), ([signal.SIGINT, signal.SIGINT], 0.5)]  # the last: a quick double Ctrl-C
    results = [trial(video, model, out / f"t{i}", signals, delay) for i, (signals, delay) in enumerate(plan)]
    (out / "trials.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
