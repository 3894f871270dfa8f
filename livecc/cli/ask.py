"""`livecc ask`: watch a video file up to a time, then answer a question about it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from engine.errors import LiveCCError
from engine.session.text import NOT_ANSWERED, checked_text

from .checks import bad_option, check_outputs, check_server, check_video_shape
from .narrate import ProgressBar, video_clock
from .options import config_fields, load, session_config


def cmd_ask(args) -> int:
    from engine.capture.sources import probe_video

    check_server(args)
    if not args.question.strip():
        raise bad_option("the question is empty: quote it, e.g. livecc ask video.mp4 \"What is happening?\"")
    checked_text(args.question, "the question")  # too long, or not text: one line before the model loads
    info = probe_video(args.video)
    check_video_shape(info.width, info.height, info.path)
    at = info.duration if args.at is None else args.at
    if not at >= 0 or (info.duration > 0 and at > info.duration + 0.5):  # NaN fails >= 0; duration 0: unknown
        raise LiveCCError(f"--at {args.at:g} s is outside the video (0 to {info.duration:.1f} s): give a time inside it")
    with closing(_events(args, info, at)) as events:  # the source (or the connection) ends however the run does
        return _report(_print_answer(_watched(events, at)), args.jsonl)


def _events(args, info, at: float) -> Iterator:
    """Once every check has passed and the session is ready (the model loaded, or the server's
    session open): the events of watching the file up to `at` (the last: StreamEnded), then the answer's."""
    outputs = [("--jsonl", args.jsonl)]
    if args.server is not None:  # --server "" (an unset variable) is an error, not a local run
        from .remote import remote_ask_events

        fields = config_fields(args, live=False, answer_max_new_tokens=args.max_answer_tokens, local=False)
        check_outputs(outputs, inputs=[Path(args.video)])
        return remote_ask_events(args, info, at, fields)
    from engine.session.session import StreamingSession

    config = session_config(args, live=False, answer_max_new_tokens=args.max_answer_tokens)
    check_outputs(outputs, inputs=[Path(args.video)])
    return _local_events(StreamingSession(load(args), config), args, info, at)


def _local_events(session, args, info, at: float) -> Iterator:
    from engine.output.narrate import file_capture

    source, buffer = file_capture(args.video, info, session.config, end=at)
    try:
        source.start(buffer)
        yield from session.run(buffer)
    finally:
        source.stop()
    yield from session.answer(args.question)


def _watched(events: Iterator, at: float) -> Iterator:
    """The events after the watching (a progress bar follows it; no comment is printed, only the answer)."""
    from engine.session.events import StreamEnded

    bar, event = ProgressBar(at, desc="watching"), None
    try:
        for event in events:
            bar.follow(event)
            if isinstance(event, StreamEnded):
                break
    finally:
        bar.close()
    if isinstance(event, StreamEnded):
        _warn_if_short(event.time, at)
    yield from events


def _print_answer(events: Iterator):
    """Stream the answer to stdout as it is decoded; returns its last event."""
    from engine.session.events import Answer

    shown, final = "", None
    try:
        for answer in events:
            if not isinstance(answer, Answer):
                continue  # a Compaction before the answer
            print(answer.text[len(shown):], end="", flush=True)
            shown, final = answer.text, answer
    finally:  # also when Ctrl-C cuts it short: the next line starts on its own line
        print(flush=True)
    return final


def _warn_if_short(watched: float, at: float) -> None:
    """The container may promise more than the file holds: say where the answer really comes from."""
    if watched + 1.0 < at:
        print(f"livecc: warning: the video ends at {watched:.1f} s, before --at {at:g}: answering from "
              f"what was seen up to {watched:.1f} s", file=sys.stderr)


def _report(answer, jsonl) -> int:
    """The recalled moments' times (and any note) on stdout, the answer record in --jsonl; the exit
    status: 1 when the question was not answered (too long for the KV budget: the note says why)."""
    from engine.output.jsonl import JsonlLog
    from engine.session.events import event_to_record

    if answer is None:
        return 0
    unanswered = answer.done and answer.note.startswith(NOT_ANSWERED)  # not a recall's note
    if answer.recalled:
        print("recalled: " + ", ".join(f"{video_clock(a)}-{video_clock(b)}" for a, b in answer.recalled))
    if answer.note and not unanswered:
        print(f"note: {answer.note}")
    if jsonl is not None:
        with JsonlLog(jsonl) as log:
            log.write(event_to_record(answer))
    if unanswered:
        print(f"livecc: error: {answer.note}", file=sys.stderr)
        return 1
    return 0


