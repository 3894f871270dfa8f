"""Checks that run before the model loads, so bad input costs one line and no lost run: option
values, the video's shape, and every output path. Each command (narrate, ask, eval) calls them."""

from __future__ import annotations

import argparse
import errno
import math
import os
from collections.abc import Iterable
from pathlib import Path

from engine.defaults import (ANSWER_TOKENS, COMMENT_TOKENS, DEFAULT_MAX_PIXELS, KV_BUDGET, MAX_ASPECT_RATIO,
                             MAX_PIXELS_LIMIT, min_kv_budget)
from engine.errors import ConfigValueError, LiveCCError, show_value

MAX_COMMENT_TOKENS = 256  # one comment covers one second of video (LiveCC: 16, its evaluation: 32)
MAX_ANSWER_TOKENS = 8192
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class OutputError(LiveCCError):
    """An output file cannot be written where it was asked for (or would overwrite an input)."""


def error_message(exc: BaseException) -> str | None:
    """What a user-caused error says (bad input, a full disk), or None for a bug, which keeps its traceback."""
    if isinstance(exc, LiveCCError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        return f"cannot write {exc.filename or 'a file'} ({exc.strerror}): free some disk space and run again"
    return None


def bad_option(message: str) -> LiveCCError:
    return LiveCCError(f"bad option: {message}")


# SessionConfig fields and argparse dests whose flag is not the name with dashes.
FLAG_NAMES = {"video_window_s": "--video-window", "topk": "--recall-k", "router_strategy": "--router",
              "answer_max_new_tokens": "--max-answer-tokens"}


def flag_name(name: str) -> str:
    """The flag a user types for a SessionConfig field or an argparse dest."""
    return FLAG_NAMES.get(name) or "--" + name.replace("_", "-")


def config_option_error(error: ConfigValueError) -> LiveCCError:
    """The engine's range error, worded with the flag instead of the field."""
    return bad_option(f"{flag_name(error.field)} {show_value(error.value)} {error.rule}")


def video_time(text: str) -> float:
    """--at: seconds (90, 90.5), m:ss (1:30) or h:mm:ss (1:02:03.5), as every output prints times."""
    parts = text.strip().split(":")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 3 or (len(numbers) > 1 and not all(0 <= n < 60 for n in numbers[1:])):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time: give seconds (90), m:ss (1:30) or h:mm:ss")
    seconds = 0.0
    for n in numbers:
        seconds = seconds * 60 + n
    return seconds


def file_path(text: str) -> Path:
    """An output file's flag: `subs/` (a folder, by its trailing separator) is refused, not written as
    a file named `subs`."""
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text} names a folder: give a file name inside it ({text}NAME)")
    return Path(text)


def check_finite(args: argparse.Namespace) -> None:
    """NaN and infinity pass argparse's float() and every comparison: refuse them by name, in
    every float option of every command."""
    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            raise bad_option(f"{flag_name(name)} {value} is not a number: give a finite value")


def check_server(args: argparse.Namespace) -> None:
    """A --server URL, checked before anything starts (a camera, a voice, a model)."""
    server = getattr(args, "server", None)
    if server is not None:
        from livecc.client.session import session_url

        session_url(server)


def check_counts(args: argparse.Namespace, *names: str) -> None:
    """Counts that must be at least 1 when given (--limit, --sample, --judge-retries)."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise bad_option(f"{flag_name(name)} {value} must be 1 or more")


def check_sizes(args: argparse.Namespace, answer_tokens: int) -> None:
    if args.max_pixels > MAX_PIXELS_LIMIT:
        raise bad_option(f"--max-pixels {args.max_pixels} is above Qwen2-VL's limit of {MAX_PIXELS_LIMIT} "
                         f"(16384*28*28): the default is {DEFAULT_MAX_PIXELS}")
    if not 1 <= args.max_new_tokens <= MAX_COMMENT_TOKENS:
        raise bad_option(f"--max-new-tokens {args.max_new_tokens} is out of range: a 1-second comment takes "
                         f"1 to {MAX_COMMENT_TOKENS} tokens (default {COMMENT_TOKENS})")
    if not 1 <= answer_tokens <= MAX_ANSWER_TOKENS:
        raise bad_option(f"--max-answer-tokens {answer_tokens} is out of range: an answer takes 1 to "
                         f"{MAX_ANSWER_TOKENS} tokens (default {ANSWER_TOKENS})")


def check_kv_budget(args: argparse.Namespace, answer_tokens: int, memory_tokens: int) -> None:
    need = min_kv_budget(memory_tokens, max(args.max_new_tokens, answer_tokens))
    if args.kv_budget < need:
        raise bad_option(f"--kv-budget {args.kv_budget} is too small for {args.max_new_tokens}-token comments and "
                         f"{answer_tokens}-token answers: use at least {need} (default {KV_BUDGET})")


def check_device(args: argparse.Namespace) -> None:
    from engine.model.loading import resolve_device

    resolve_device(args.device)  # raises DeviceError naming the devices that exist


def validate_model_args(args: argparse.Namespace, answer_tokens: int, memory_tokens: int, local: bool = True) -> None:
    """Everything the shared model flags can get wrong, checked before the model loads (`local`: here,
    so the device is checked too)."""
    check_finite(args)
    check_sizes(args, answer_tokens)
    check_kv_budget(args, answer_tokens, memory_tokens)
    if local:
        check_device(args)


def check_video_shape(width: int, height: int, path: Path) -> None:
    if min(width, height) < 1 or max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise LiveCCError(f"{path} is {width}x{height}: Qwen2-VL takes frames up to {MAX_ASPECT_RATIO}:1; "
                          f"crop or pad the video to a less extreme shape")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _probe_writable(path: Path) -> None:
    """Open the file for appending (an existing file is not changed), or create and remove it."""
    if path.exists():
        with path.open("ab"):
            return
    with path.open("xb"):
        pass
    path.unlink()


def check_output(flag: str, path: Path, inputs: Iterable[Path]) -> Path:
    """One output path: a file (no pipe, no name too long), not an input, not a folder, its folder
    created, writable; a --jsonl that exists must be ours to append to. Returns it resolved."""
    from engine.capture.files import path_problem

    path = path.expanduser()
    problem = path_problem(path)
    if problem:
        raise OutputError(f"{flag} {path} {problem}")
    for source in inputs:
        if path.resolve() == Path(source).expanduser().resolve() or _same_file(path, Path(source)):
            raise OutputError(f"{flag} {path} is the input video: choose another file name")
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder: give a file name inside it")
    writes = OUT_DIR_FILES.get(path.suffix, flag) if flag == "--out-dir" else flag  # what the file is written as
    kind = REPLACED.get(writes)
    if kind and path.is_file() and not _replaceable(writes, path):
        fix = "choose another --out-dir, or move it" if flag == "--out-dir" else "give a new file name"
        raise OutputError(f"{flag} {path} exists and is not {kind}, and it would be replaced: {fix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _probe_writable(path)
    except OSError as exc:
        raise OutputError(f"cannot write {flag} {path} ({exc.strerror or exc}): choose a writable place") from None
    if writes in APPENDED:
        _check_appendable(flag, path)
    return path.resolve()


OUT_DIR_FILES = {".srt": "--srt", ".vtt": "--vtt", ".jsonl": "--jsonl"}  # what --out-dir writes, as the flags
APPENDED = {"--jsonl"}  # appended to, not replaced: an existing file must be a JSONL of ours
REPLACED = {"--srt": "an SRT file", "--vtt": "a WebVTT file", "--speech-wav": "a WAV file"}  # replaced whole


def _replaceable(flag: str, path: Path) -> bool:
    """An existing file that a run may replace: empty, or already what `flag` writes (whatever its
    name: a rerun into subs.txt is fine, --srt b.mp4 is not)."""
    try:
        with path.open("rb") as f:
            head = f.read(16).removeprefix(b"\xef\xbb\xbf")
    except OSError:
        return True  # unreadable: the write check that follows says so
    return not head or {"--srt": head[:1].isdigit(), "--vtt": head.startswith(b"WEBVTT"),
                        "--speech-wav": head.startswith(b"RIFF") and head[8:12] == b"WAVE"}[flag]


def _check_appendable(flag: str, path: Path) -> None:
    from engine.output.jsonl import NotOurJsonl, check_jsonl

    try:
        check_jsonl(path, key="type")  # what narrate, ask and the app write: another tool's JSONL is not ours
    except NotOurJsonl as exc:
        raise OutputError(f"{flag} {exc}") from None
    except OSError as exc:
        raise OutputError(f"cannot read {flag} {path} ({exc.strerror or exc}): give a new file name") from None


def check_outputs(outputs: Iterable[tuple[str, Path | None]], inputs: Iterable[Path]) -> None:
    """Every (flag, path) given: checked one by one, and no path given twice."""
    inputs = list(inputs)
    seen: dict[Path, str] = {}
    for flag, path in outputs:
        if path is None:
            continue
        resolved = check_output(flag, Path(path), inputs)
        if resolved in seen:
            raise OutputError(f"{seen[resolved]} and {flag} both name {path}: give each its own file")
        seen[resolved] = flag
