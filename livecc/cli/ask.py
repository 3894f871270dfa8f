"""`livecc ask`: watch a video file up to a time, then answer a question about it."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.errors import LiveCCError

from .checks import bad_option, check_outputs, check_video_shape
from .narrate import ProgressBar, video_clock
from .options import load, session_config


def cmd_ask(args) -> int:
    from engine.capture.sources import probe_video
    from engine.output.narrate import file_capture
    from engine.session.events import Answer
    from engine.session.session import StreamingSession

    if not args.question.strip():
        raise bad_option("the question is empty: quote it, e.g. livecc ask video.mp4 \"What is happening?\"")
    info = probe_video(args.video)
    check_video_shape(info.width, info.height, info.path)
    at = info.duration if args.at is None else args.at
    if not at >= 0 or (info.duration > 0 and at > info.duration + 0.5):  # NaN fails >= 0; duration 0: unknown
        raise LiveCCError(f"--at {args.at:g} s is outside the video (0 to {info.duration:.1f} s): give a time inside it")
    config = session_config(args, live=False, answer_max_new_tokens=args.max_answer_tokens)
    check_outputs([("--jsonl", getattr(args, "jsonl", None))], inputs=[Path(args.video)])
    loaded = load(args)
    session = StreamingSession(loaded, config)
    source, buffer = file_capture(args.video, info, config, end=at)
    bar = ProgressBar(at, desc="watching")
    try:
        source.start(buffer)
        for event in session.run(buffer):
            bar.follow(event)  # no comment is printed: only the answer is
    finally:
        source.stop()
        bar.close()
    _warn_if_short(session.frames.next_time, at)
    shown, final = "", None
    for answer in session.answer(args.question):
        if not isinstance(answer, Answer):
            continue  # a Compaction before the answer
        print(answer.text[len(shown):], end="", flush=True)
        shown, final = answer.text, answer
    print()
    _report(final, args.jsonl)
    return 0


def _warn_if_short(watched: float, at: float) -> None:
    """The container may promise more than the file holds: say where the answer really comes from."""
    if watched + 1.0 < at:
        print(f"livecc: warning: the video ends at {watched:.1f} s, before --at {at:g}: answering from "
              f"what was seen up to {watched:.1f} s", file=sys.stderr)


def _report(answer, jsonl) -> None:
    """The recalled moments' times (and any note) on stdout; the answer record in --jsonl."""
    from engine.output.jsonl import JsonlLog
    from engine.session.events import event_to_record

    if answer is None:
        return
    if answer.recalled:
        print("recalled: " + ", ".join(f"{video_clock(a)}-{video_clock(b)}" for a, b in answer.recalled))
    if answer.note:
        print(f"note: {answer.note}")
    if jsonl is not None:
        with JsonlLog(jsonl) as log:
            log.write(event_to_record(answer))


