"""`livecc ask`: watch a video file up to a time, then answer a question about it."""

from __future__ import annotations

from engine.errors import LiveCCError

from .options import load, session_config


def cmd_ask(args) -> int:
    from engine.capture.frames import RingBuffer
    from engine.capture.sources import FileSource, probe_video
    from engine.session.events import Answer
    from engine.session.session import StreamingSession

    info = probe_video(args.video)
    at = info.duration if args.at is None else args.at
    if at < 0 or (info.duration > 0 and at > info.duration + 0.5):  # duration 0 = container did not say
        raise LiveCCError(f"--at {args.at} is outside the video (0 to {info.duration:.1f} s)")
    config = session_config(args, live=False, answer_max_new_tokens=args.max_answer_tokens)
    loaded = load(args)
    session = StreamingSession(loaded, config)
    source = FileSource(args.video, end=at, sample_fps=config.fps)
    buffer = RingBuffer(64)
    try:
        source.start(buffer)
        for _ in session.run(buffer):
            pass  # watch silently up to --at
    finally:
        source.stop()
    shown, final = "", None
    for answer in session.answer(args.question):
        if not isinstance(answer, Answer):
            continue  # a Compaction before the answer
        print(answer.text[len(shown):], end="", flush=True)
        shown, final = answer.text, answer
    print()
    _report(final, args.jsonl)
    return 0


def _report(answer, jsonl) -> None:
    """The recalled moments' times (and any note) on stdout; the answer record in --jsonl."""
    from engine.session.events import event_to_record

    from .subtitles import JsonlLog

    if answer is None:
        return
    if answer.recalled:
        print("recalled: " + ", ".join(f"{_clock(a)}-{_clock(b)}" for a, b in answer.recalled))
    if answer.note:
        print(f"note: {answer.note}")
    if jsonl is not None:
        with JsonlLog(jsonl) as log:
            log.write(event_to_record(answer))


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"
