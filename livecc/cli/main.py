"""`livecc`: the parser and dispatch for narrate (subtitles), ask (a question), eval (benchmarks) and
make-tiny-model.

Bad input (missing or corrupt video, unusable model, no GPU, an output that cannot be written)
prints one line and exits 2. SIGINT, SIGTERM and SIGHUP all stop a run the same way: the files are
finished and the exit status is 128 + the signal number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
from pathlib import Path

from engine.errors import LiveCCError

from .ask import cmd_ask
from .eval import add_eval_parser, cmd_eval
from .narrate import cmd_narrate
from .options import add_memory_arguments, add_model_arguments, add_remote_arguments, add_speech_arguments
from .serve import add_serve_parser, cmd_serve
from .signals import stop_signals

EXIT_BAD_INPUT = 2
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("livecc-desktop")
    except PackageNotFoundError:
        return "unknown"


def quiet_third_parties() -> None:
    """Our one line per problem, not library chatter: deprecation warnings, transformers' notices
    and progress bars, FFmpeg's own stderr (read by OpenCV when it first loads FFmpeg)."""
    import warnings

    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
    for name in ("transformers", "huggingface_hub", "ChatTTS", "accelerate"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if "transformers" in sys.modules:  # imported already (tests): its verbosity was read at import
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecc", description="LiveCC real-time video commentary, headless.")
    parser.add_argument("--version", action="version", version=f"livecc {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    n = sub.add_parser("narrate", help="comment on a video file, second by second, into subtitles",
                       description="Stream a video file through LiveCC at 2 fps and write its running commentary.")
    n.add_argument("video", help="video file (anything OpenCV/FFmpeg reads: mp4, mkv, webm, ...)")
    n.add_argument("--srt", type=Path, help="write SubRip subtitles here")
    n.add_argument("--vtt", type=Path, help="write WebVTT subtitles here")
    n.add_argument("--jsonl", type=Path, help="write one JSON record per chunk here (appended as it goes)")
    n.add_argument("--realtime", action="store_true",
                   help="pace the file to wall-clock time like a live source (skips ahead if the model falls behind)")
    add_model_arguments(n)
    add_memory_arguments(n)
    add_speech_arguments(n)
    add_remote_arguments(n)

    a = sub.add_parser("ask", help="answer a question about a video up to a time",
                       description="Watch the video up to --at seconds, then answer the question from that context.")
    a.add_argument("video", help="video file")
    a.add_argument("question", help="the question, quoted")
    a.add_argument("--at", type=float, default=None, help="video time in seconds to ask at (default: the end)")
    a.add_argument("--max-answer-tokens", type=int, default=512, help="answer length limit (default 512)")
    a.add_argument("--jsonl", type=Path, help="write the answer record here (with the recalled moments)")
    add_model_arguments(a)
    add_memory_arguments(a)

    add_eval_parser(sub)
    add_serve_parser(sub)

    t = sub.add_parser("make-tiny-model", help="build a tiny random Qwen2-VL (tests, offline demos)",
                       description="Save a tiny random Qwen2-VL with a locally trained tokenizer to DIR.")
    t.add_argument("dir", type=Path, help="output folder")
    return parser


def cmd_make_tiny_model(args) -> int:
    from engine.model.tiny import make_tiny_model

    path = make_tiny_model(args.dir)
    print(json.dumps({"tiny_model": str(path)}))
    return 0


COMMANDS = {"narrate": cmd_narrate, "ask": cmd_ask, "eval": cmd_eval, "serve": cmd_serve,
            "make-tiny-model": cmd_make_tiny_model}


def check_settings() -> None:
    """Every LIVECC_* variable is parsed before any work: a bad value is one line (FlagError) and exit 2,
    an unknown name a warning."""
    from engine import flags

    for warning in flags.check_environment():
        print(f"livecc: warning: {warning}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        check_settings()  # before the parser, whose defaults come from these variables
    except LiveCCError as exc:
        print(f"livecc: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_third_parties()
    try:
        with stop_signals():
            return COMMANDS[args.command](args)
    except LiveCCError as exc:
        print(f"livecc: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        print(f"livecc: error: cannot write {exc.filename or 'a file'} ({exc.strerror}): free some disk space "
              f"and run again", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"livecc: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


