"""`livecc`: the parser and dispatch for narrate (subtitles of files, a camera or the screen), ask
(a question), eval (benchmarks), serve and make-tiny-model.

Bad input (missing or corrupt video, unusable model, no GPU, an output that cannot be written)
prints one line and exits 2. SIGINT, SIGTERM and SIGHUP all stop a run the same way: the files are
finished and the exit status is 128 + the signal number (130, 143, 129).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from engine.defaults import ANSWER_TOKENS
from engine.errors import LiveCCError
from engine.model.quiet import quiet_third_parties

from .ask import cmd_ask
from .checks import error_message, file_path, video_time
from .eval import add_eval_parser, cmd_eval
from .many import MAX_SESSIONS
from .narrate import cmd_narrate
from .options import add_memory_arguments, add_model_arguments, add_remote_arguments, add_speech_arguments
from .serve import add_serve_parser, cmd_serve
from .signals import ignore_stop_signals, stop_signals

EXIT_BAD_INPUT = 2


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("livecc-desktop")
    except PackageNotFoundError:
        return "unknown"


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: a mistyped flag is reported with this subcommand's usage, not with the
    top level's (argparse hands unknown flags up to the top parser by default)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecc", description="LiveCC real-time video commentary, headless.")
    parser.add_argument("--version", action="version", version=f"livecc {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)

    n = sub.add_parser("narrate", help="comment on video files, a camera or the screen, second by second, "
                                       "into subtitles",
                       description="Stream a video file through LiveCC at 2 fps and write its running commentary. "
                                   "With --out-dir, narrate several files at once as sessions of one engine: "
                                   "each writes DIR/NAME.srt, .vtt and .jsonl, what narrating it alone writes. "
                                   "With --webcam or --screen instead of files, narrate a camera or the screen "
                                   "live until --duration or Ctrl-C.")
    n.add_argument("video", nargs="*", help="video file(s) (anything OpenCV/FFmpeg reads: mp4, mkv, webm, ...); "
                                            "more than one needs --out-dir")
    live = n.add_mutually_exclusive_group()
    live.add_argument("--webcam", nargs="?", const="0", metavar="INDEX",
                      help="narrate a camera instead of files (default camera 0)")
    live.add_argument("--screen", nargs="?", const="1", metavar="SCREEN",
                      help="narrate the screen instead of files: N = monitor N (default 1, 0 = all of them), "
                           "X,Y,W,H = that region of monitor 1, N:X,Y,W,H = that region of monitor N")
    n.add_argument("--duration", type=video_time, metavar="TIME",
                   help="with --webcam or --screen: stop after this long (seconds, m:ss or h:mm:ss; "
                        "default: until Ctrl-C)")
    n.add_argument("--srt", type=file_path, help="write SubRip subtitles here")
    n.add_argument("--vtt", type=file_path, help="write WebVTT subtitles here")
    n.add_argument("--jsonl", type=file_path, help="write one JSON record per chunk here (appended as it goes)")
    n.add_argument("--out-dir", type=Path, metavar="DIR",
                   help="write NAME.srt, NAME.vtt and NAME.jsonl here for each video NAME.mp4 (several videos "
                        "run at once; a name given twice becomes NAME-2); a camera or screen is named after it "
                        "and the start time (webcam0-20260105-143000)")
    n.add_argument("--sessions", type=int, metavar="N",
                   help=f"with --out-dir: videos narrated at once, the rest wait for a turn (default: all of them, "
                        f"up to {MAX_SESSIONS})")
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
    a.add_argument("--at", type=video_time, default=None,
                   help="video time to ask at: seconds, m:ss or h:mm:ss (default: the end)")
    a.add_argument("--max-answer-tokens", type=int, default=ANSWER_TOKENS,
                   help="answer length limit (default %(default)s)")
    a.add_argument("--jsonl", type=file_path, help="write the answer record here (with the recalled moments)")
    add_model_arguments(a)
    add_memory_arguments(a)
    add_remote_arguments(a)

    add_eval_parser(sub)
    add_serve_parser(sub)

    t = sub.add_parser("make-tiny-model", help="build a tiny random Qwen2-VL (tests, offline demos)",
                       description="Save a tiny random Qwen2-VL with a locally trained tokenizer to DIR.")
    t.add_argument("dir", type=Path, help="output folder")
    return parser


def cmd_make_tiny_model(args) -> int:
    from engine.model.tiny import make_tiny_model

    path = make_tiny_model(args.dir)
    print(f"Wrote a tiny Qwen2-VL with random weights (for tests and offline demos) to {path}: "
          f"use it with --model {path}")
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
    args.argv = list(sys.argv[1:] if argv is None else argv)  # repeated in hints such as eval's "to judge them"
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_third_parties()
    try:
        with stop_signals():
            return COMMANDS[args.command](args)
    except (LiveCCError, OSError) as exc:
        message = error_message(exc)
        if message is None:
            raise
        print(f"livecc: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"livecc: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum


def program() -> None:
    """The `livecc` program (its console script, `python -m livecc`): after a stop signal the
    process stays deaf to more of them until it is gone, so its exit status stays 128 + signum."""
    code = main()
    if code > 128:
        ignore_stop_signals()
    sys.exit(code)
