"""`livecc`: narrate a video file into subtitles, ask about a video, build the tiny test model.

Bad input (missing or corrupt video, unusable model, no GPU) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from engine.errors import LiveCCError

EXIT_BAD_INPUT = 2


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    from engine.model.loading import DEFAULT_MODEL
    from engine.model.preprocess import DEFAULT_MAX_PIXELS

    p.add_argument("--model", default=os.environ.get("LIVECC_MODEL", DEFAULT_MODEL),
                   help=f"Hugging Face id or local folder of a Qwen2-VL checkpoint (default {DEFAULT_MODEL}, "
                        "or $LIVECC_MODEL)")
    p.add_argument("--device", default=None, help="cuda, cuda:1 or cpu (default: cuda if available)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="pixel budget per frame after resizing (default 384*28*28 = %(default)s)")
    p.add_argument("--repetition-penalty", type=float, default=1.05, help="default %(default)s; 1.15 curbs repetition")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass when sampling (default 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=16, help="tokens per 1-second comment (default 16)")
    p.add_argument("--query", default=None, help='instruction for the commentary (default "Please describe the video.")')
    p.add_argument("--kv-budget", type=int, default=16384,
                   help="KV cache budget in tokens; past it the context is compacted (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecc", description="LiveCC real-time video commentary, headless.")
    sub = parser.add_subparsers(dest="command", required=True)

    n = sub.add_parser("narrate", help="comment on a video file, second by second, into subtitles",
                       description="Stream a video file through LiveCC at 2 fps and write its running commentary.")
    n.add_argument("video", help="video file (anything OpenCV/FFmpeg reads: mp4, mkv, webm, ...)")
    n.add_argument("--srt", type=Path, help="write SubRip subtitles here")
    n.add_argument("--vtt", type=Path, help="write WebVTT subtitles here")
    n.add_argument("--jsonl", type=Path, help="write one JSON record per chunk here (appended as it goes)")
    n.add_argument("--realtime", action="store_true",
                   help="pace the file to wall-clock time like a live source (skips ahead if the model falls behind)")
    _add_model_arguments(n)
    _add_speech_arguments(n)

    a = sub.add_parser("ask", help="answer a question about a video up to a time",
                       description="Watch the video up to --at seconds, then answer the question from that context.")
    a.add_argument("video", help="video file")
    a.add_argument("question", help="the question, quoted")
    a.add_argument("--at", type=float, default=None, help="video time in seconds to ask at (default: the end)")
    a.add_argument("--max-answer-tokens", type=int, default=512, help="answer length limit (default 512)")
    _add_model_arguments(a)

    t = sub.add_parser("make-tiny-model", help="build a tiny random Qwen2-VL (tests, offline demos)",
                       description="Save a tiny random Qwen2-VL with a locally trained tokenizer to DIR.")
    t.add_argument("dir", type=Path, help="output folder")
    return parser


def _add_speech_arguments(parser: argparse.ArgumentParser) -> None:
    """Speech flags come from tts/ when it is installed with the app."""
    try:
        from tts.cli_support import add_speech_arguments
    except ImportError:
        return
    add_speech_arguments(parser)


def _session_config(args, live: bool, answer_max_new_tokens: int = 512):
    from engine.model.prompt import DEFAULT_QUERY
    from engine.session.session import SessionConfig

    try:
        return SessionConfig(query=args.query or DEFAULT_QUERY, max_new_tokens=args.max_new_tokens,
                             repetition_penalty=args.repetition_penalty, temperature=args.temperature,
                             top_p=args.top_p, max_pixels=args.max_pixels,
                             min_pixels=min(args.max_pixels, 100 * 28 * 28), live=live, kv_budget=args.kv_budget,
                             answer_max_new_tokens=answer_max_new_tokens)
    except ValueError as exc:
        raise LiveCCError(f"bad option: {exc}") from exc


def _load(args):
    from engine.model.loading import load_model

    def progress(stage: str, fraction: float | None) -> None:
        pct = f" {fraction * 100:.0f}%" if fraction is not None else ""
        print(f"\r{stage}{pct}", end="" if fraction not in (None, 1.0) else "\n", file=sys.stderr, flush=True)

    return load_model(args.model, device=args.device, progress=progress)


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
    config = _session_config(args, live=args.realtime)
    sink = _speech_sink(args)
    loaded = _load(args)
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
                                    f"{event.compactions} compactions", refresh=False)
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


def cmd_ask(args) -> int:
    from engine.capture.frames import RingBuffer
    from engine.capture.sources import FileSource, probe_video
    from engine.session.events import Answer
    from engine.session.session import StreamingSession

    info = probe_video(args.video)
    at = info.duration if args.at is None else args.at
    if at < 0 or (info.duration > 0 and at > info.duration + 0.5):  # duration 0 = container did not say
        raise LiveCCError(f"--at {args.at} is outside the video (0 to {info.duration:.1f} s)")
    config = _session_config(args, live=False, answer_max_new_tokens=args.max_answer_tokens)
    loaded = _load(args)
    session = StreamingSession(loaded, config)
    source = FileSource(args.video, end=at, sample_fps=config.fps)
    buffer = RingBuffer(64)
    try:
        source.start(buffer)
        for _ in session.run(buffer):
            pass  # watch silently up to --at
    finally:
        source.stop()
    shown = ""
    for answer in session.answer(args.question):
        if not isinstance(answer, Answer):
            continue  # a Compaction before the answer
        print(answer.text[len(shown):], end="", flush=True)
        shown = answer.text
    print()
    return 0


def cmd_make_tiny_model(args) -> int:
    from engine.model.tiny import make_tiny_model

    path = make_tiny_model(args.dir)
    print(json.dumps({"tiny_model": str(path)}))
    return 0


COMMANDS = {"narrate": cmd_narrate, "ask": cmd_ask, "make-tiny-model": cmd_make_tiny_model}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except LiveCCError as exc:
        print(f"livecc: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("livecc: interrupted (transcript so far was written)", file=sys.stderr)
        return 130
