"""`livecc narrate --webcam [INDEX]` or `--screen [SCREEN]`: a camera or the screen, narrated as a
file is (the same SRT, VTT, JSONL, progress and summary), as a live session (the newest frames win)
until --duration seconds or Ctrl-C. The source is opened and let go before the model loads, so no
camera, no display or a bad region costs one line, not a model load."""

from __future__ import annotations

import time

from engine.errors import LiveCCError

from .checks import bad_option
from .many import outputs

SCREEN_FORMS = "give N (monitor N, 0 = all of them), X,Y,W,H (a region of monitor 1) or N:X,Y,W,H"


def live_flag(args) -> str | None:
    """--webcam or --screen, whichever was given (argparse lets only one through)."""
    return "--webcam" if args.webcam is not None else "--screen" if args.screen is not None else None


def live_source(args):
    """The camera or screen the flags name, opened once to check it; None when files are narrated."""
    flag = live_flag(args)
    if flag is None:
        if args.duration is not None:
            raise LiveCCError("--duration ends a --webcam or --screen run", "drop it: a video file ends at its end")
        return None
    check_live_options(args, flag)
    source = webcam(args.webcam, args.duration) if flag == "--webcam" else screen(args.screen, args.duration)
    source.check()  # no camera, no display, a region off the monitor: one line before the model loads
    return source


def check_live_options(args, flag: str) -> None:
    if args.video:
        raise LiveCCError(f"narrate either video files or {flag}, not both", f"drop {flag} or the files")
    if args.sessions is not None:
        raise LiveCCError(f"--sessions sets how many videos run at once, and {flag} is one stream",
                          "drop --sessions")
    if args.duration is not None and not args.duration > 0:
        raise bad_option(f"--duration {args.duration:g} must be more than 0 seconds")
    if args.out_dir is not None:
        for name in ("srt", "vtt", "jsonl"):
            if getattr(args, name) is not None:
                raise LiveCCError(f"--{name} and --out-dir both name the outputs", f"drop --{name} or --out-dir")


def webcam(text: str, duration: float | None):
    from engine.capture.sources import WebcamSource

    try:
        return WebcamSource(int(text), duration=duration)
    except ValueError:
        raise LiveCCError(f"--webcam {text!r} is not a camera index", "give a number, e.g. --webcam 0") from None


def screen(text: str, duration: float | None):
    from engine.capture.sources import ScreenSource

    monitor, region = screen_choice(text)
    return ScreenSource(monitor, region=region, duration=duration)


def screen_choice(text: str) -> tuple[int, tuple[int, int, int, int] | None]:
    """--screen N, X,Y,W,H or N:X,Y,W,H -> (monitor, region or None); the region is in the monitor's pixels."""
    head, colon, tail = text.partition(":")
    monitor, region = (head, tail) if colon else ("1", head) if "," in head else (head, "")
    try:
        number = int(monitor)
        box = tuple(int(v) for v in region.split(",")) if region else None
    except ValueError:
        number, box = None, None
    if number is None or (region and (box is None or len(box) != 4)):
        raise LiveCCError(f"--screen {text!r} is not a screen", SCREEN_FORMS)
    return number, box


def name_outputs(args) -> None:
    """--out-dir DIR: the run writes DIR/NAME.srt, .vtt and .jsonl, NAME the source and the start time
    (webcam0-20260105-143000, screen1-...), so a later run never overwrites an earlier one's."""
    if args.out_dir is None:
        return
    source = f"webcam{int(args.webcam)}" if args.webcam is not None else f"screen{screen_choice(args.screen)[0]}"
    args.srt, args.vtt, args.jsonl = outputs(args.out_dir, f"{source}-{time.strftime('%Y%m%d-%H%M%S')}")
