"""`livecc narrate`: stream a video file through the session into SRT, WebVTT and JSONL."""

from __future__ import annotations

import sys

from .options import load, session_config


def _fmt(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:04.1f}"


def cmd_narrate(args) -> int:
    from tqdm import tqdm

    from engine.capture.frames import RingBuffer
    from engine.capture.sources import FileSource, probe_video
    from engine.session.events import Commentary, Stats, event_to_record
    from engine.session.session import StreamingSession

    from .subtitles import JsonlLog, to_srt, to_vtt

    info = probe_video(args.video)  # fail fast, before the model loads
    args.realtime = args.realtime or bool(getattr(args, "speak", False))  # speech plays at the video's pace
    config = session_config(args, live=args.realtime)
    sink = _speech_sink(args)
    loaded = load(args)
    session = StreamingSession(loaded, config)
    # Only the frames the engine samples enter the buffer, so 64 slots hold 32 s, never less than a chunk.
    source = FileSource(args.video, realtime=args.realtime, sample_fps=config.fps)
    buffer = RingBuffer(64)
    events: list[Commentary] = []
    log = JsonlLog(args.jsonl) if args.jsonl else None
    bar = tqdm(total=round(info.duration, 1), unit="s", desc="narrating", file=sys.stderr,
               bar_format="{desc} {bar} {n:.1f}/{total:.1f}s [{elapsed}<{remaining}]")
    pending: Commentary | None = None
    try:
        source.start(buffer)
        for event in session.run(buffer):
            if sink is not None:
                sink.on_event(event)
            if isinstance(event, Commentary):
                events.append(event)  # what the subtitles are made of; nothing else is kept for hours
                pending = event
                if event.text:
                    tqdm.write(f"[{_fmt(event.start)}-{_fmt(event.end)}] {event.text}")
                bar.update(round(event.end - bar.n, 1))
            elif isinstance(event, Stats):
                bar.set_postfix_str(f"context {event.cache_tokens}/{event.budget_tokens} tokens, "
                                    f"{event.compactions} compactions, memory {event.memory_key_frames} key frames "
                                    f"{event.memory_mb:.0f} MB", refresh=False)
                if pending is not None and log is not None:
                    log.write(event_to_record(pending) | {"stats": event_to_record(event)})
    finally:
        source.stop()
        bar.close()
        if log is not None:
            log.close()
        for path, text in ((args.srt, to_srt), (args.vtt, to_vtt)):
            if path is not None:
                path.write_text(text(events), encoding="utf-8")  # also on failure: keep what was narrated
        if sink is not None:
            sink.close()
    return 0


def _speech_sink(args):
    if not any(getattr(args, name, None) for name in ("speak", "speech_wav")):
        return None
    from tts.cli_support import speech_sink_from_args

    return speech_sink_from_args(args)
