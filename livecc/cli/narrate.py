"""`livecc narrate`: stream a video file (or a camera, the screen: live.py) through the session into
SRT, WebVTT and JSONL.

Every output path is checked before the model loads. The files are written as the run goes (each
comment reaches every file before it is printed), so whatever stops the run (the end, an error,
Ctrl-C, SIGTERM, a full disk) they hold every finished chunk. Each cleanup step runs even when an
earlier one fails.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import LiveCCError

from .checks import check_outputs, check_server, check_video_shape
from .options import config_fields, load, session_config
from .signals import held


def video_clock(seconds: float) -> str:
    """mm:ss.s, how the CLI prints video times."""
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:04.1f}"


def comment_line(comment) -> str:
    """How a comment is printed: its span of video, then its text."""
    return f"[{video_clock(comment.start)}-{video_clock(comment.end)}] {comment.text}"


@dataclass
class Summary:
    """What the run did, printed at its end (also after an error or an interruption)."""

    started: bool = False  # the model loaded and the files opened: only then is there something to report
    chunks: int = 0
    comments: int = 0
    skipped_s: float = 0.0
    ended: bool = False  # the video reached its end (not a stop)
    files: list[Path] = field(default_factory=list)

    def count(self, event, chunk_s: float) -> None:
        """Follow the run's events: a chunk's commentary counts it, its stats say what was skipped."""
        from engine.session.events import Commentary, Stats, StreamEnded

        if isinstance(event, Commentary):
            self.chunks += 1
            self.comments += bool(event.text)
        elif isinstance(event, Stats):
            self.skipped_s = event.chunks_skipped * chunk_s
        elif isinstance(event, StreamEnded):
            self.ended = True

    def body(self) -> str:
        wrote = ", ".join(str(p) for p in self.files) if self.files else "no files"
        why = " (the video ended before its second frame at 0.5 s: too short to comment on)" \
            if self.ended and not self.chunks else ""
        return f"{self.chunks} chunks{why}, {self.comments} comments, {self.skipped_s:.0f} s skipped; wrote {wrote}"

    def line(self) -> str:
        return f"livecc: {self.body()}"


class ProgressBar:
    """tqdm over video seconds, with context use and compactions beside it. A file whose content
    runs past its stated duration stretches the bar instead of breaking it."""

    def __init__(self, duration: float, desc: str = "narrating", quiet: bool = False):
        from tqdm import tqdm

        self._tqdm = tqdm
        fmt = "{desc} {bar} {n:.1f}/{total:.1f}s [{elapsed}<{remaining}]{postfix}" if duration > 0 else \
            "{desc} {n:.1f}s [{elapsed}]{postfix}"
        self.bar = tqdm(total=round(duration, 1) or None, unit="s", desc=desc, file=sys.stderr, bar_format=fmt,
                        disable=quiet)

    def follow(self, event) -> None:
        """Move with the session's events: a chunk's commentary advances it, its stats annotate it."""
        from engine.session.events import Commentary, Stats

        if isinstance(event, Commentary):
            self.advance(event.end)
        elif isinstance(event, Stats):
            self.show(event)

    def advance(self, end: float) -> None:
        if self.bar.total is not None and end > self.bar.total:
            self.bar.total = round(end, 1)
        self.bar.update(round(end - self.bar.n, 1))

    def show(self, stats) -> None:
        self.note(f"context {stats.cache_tokens}/{stats.budget_tokens}, {stats.compactions} compactions, "
                  f"memory {stats.memory_key_frames} key frames {stats.memory_mb:.0f} MB")

    def note(self, text: str) -> None:
        """The text beside the bar."""
        self.bar.set_postfix_str(text, refresh=True)

    def write(self, text: str, err: bool = False) -> None:
        """A line above the bar: on stdout (a comment), or on stderr (`err`: a warning or an error)."""
        self._tqdm.write(text, file=sys.stderr if err else sys.stdout)

    def close(self) -> None:
        self.bar.close()


def _output_flags(args) -> list[tuple[str, Path | None]]:
    return [("--srt", args.srt), ("--vtt", args.vtt), ("--jsonl", args.jsonl),
            ("--speech-wav", getattr(args, "speech_wav", None))]


def cmd_narrate(args) -> int:
    from engine.capture.sources import probe_video
    from engine.output.narrate import narrate_file, narrate_live

    from .live import live_source, name_outputs
    from .remote import remote_begin, remote_live_begin

    check_server(args)
    source = live_source(args)  # fail fast, before the model loads
    if source is not None:
        name_outputs(args)
        return _narrate_one(args, True, args.duration or 0.0, [],
                            lambda session, files: narrate_live(session, source, files),
                            lambda fields: remote_live_begin(args, source, fields))
    if not args.video:
        raise LiveCCError("nothing to narrate", "give a video file, --webcam or --screen")
    if args.out_dir is not None or len(args.video) > 1:
        from .many import cmd_narrate_many

        return cmd_narrate_many(args)
    if args.sessions is not None:
        raise LiveCCError("--sessions sets how many videos run at once with --out-dir",
                          "add --out-dir DIR, or drop --sessions")
    args.video = args.video[0]
    info = probe_video(args.video)  # fail fast, before the model loads
    check_video_shape(info.width, info.height, info.path)
    args.realtime = args.realtime or _speaks_aloud(args)  # speech plays at the video's pace
    return _narrate_one(args, args.realtime, info.duration, [Path(args.video)],
                        lambda session, files: narrate_file(session, args.video, info, files, realtime=args.realtime),
                        lambda fields: remote_begin(args, info, fields, speak=_speaks_aloud(args)))


def _narrate_one(args, live: bool, duration: float, inputs: list[Path], local, remote) -> int:
    """One stream, here or on --server: `local(session, files)` runs it on a session of the model
    loaded here, `remote(fields)` connects to the server and returns `(run, chunk seconds)`. Every
    check runs before the model loads or the server is asked."""
    if args.server is not None:  # --server "" (an unset variable) is an error, not a local run
        fields = config_fields(args, live=live, local=False)
        check_outputs(_output_flags(args), inputs=inputs)
        return _narrate(args, duration, lambda: remote(fields))
    config = session_config(args, live=live)
    check_outputs(_output_flags(args), inputs=inputs)

    def begin():
        from engine.session.session import StreamingSession

        session = StreamingSession(load(args), config)
        return (lambda files: local(session, files)), config.chunk_frames / config.fps

    return _narrate(args, duration, begin)


def _narrate(args, duration: float, begin) -> int:
    """The run. `begin()` readies the session (the model here, or a server's session) and returns
    `(run, chunk seconds)`; `run(files)` yields its events, each already in the files; the progress
    bar, the summary and speech follow them."""
    from engine.session.events import Commentary

    summary = Summary()
    with ExitStack() as cleanup:  # each step runs even if an earlier one failed; the last prints the summary
        cleanup.callback(lambda: summary.started and print(summary.line(), file=sys.stderr))
        sink = _speech_sink(args, duration)
        if sink is not None:
            cleanup.callback(_close_speech, sink, summary)
        run, chunk_s = begin()
        files = open_files(args.srt, args.vtt, args.jsonl)
        summary.files += files.paths
        summary.started = True
        cleanup.callback(files.close)
        bar = ProgressBar(duration)
        cleanup.callback(bar.close)
        events = cleanup.enter_context(closing(run(files)))
        for event in events:
            summary.count(event, chunk_s)
            if isinstance(event, Commentary) and event.text:
                bar.write(comment_line(event))
            bar.follow(event)
            if sink is not None:
                sink.on_event(event)  # after the files: speech never stands between a comment and the disk
    return 0


def open_files(srt: Path | None, vtt: Path | None, jsonl: Path | None, warn=None):
    """A narration's files; a torn JSONL tail left by an interrupted run is cut, and said (by
    `warn(line)`, or on stderr)."""
    from engine.output.narrate import NarrationFiles

    files = NarrationFiles(srt, vtt, jsonl, guard=held)  # a stop signal waits for a whole cue
    if files.log is not None and files.log.repaired:
        line = (f"livecc: warning: {jsonl} ended in a torn line (an interrupted run); removed its "
                f"{files.log.repaired} bytes before appending")
        (warn or (lambda text: print(text, file=sys.stderr)))(line)
    return files


def _close_speech(sink, summary: Summary) -> None:
    """Stop the voice and write the WAV (--speech-wav), which the summary then lists."""
    sink.close()
    if sink.written is not None:
        summary.files.append(sink.written)


def _speaks_aloud(args) -> bool:
    return bool(getattr(args, "speak", False)) and (getattr(args, "voice", None) or "").lower() != "none"


def _speech_sink(args, duration: float):
    if not any(getattr(args, name, None) for name in ("speak", "speech_wav")):
        return None
    from tts.cli_support import speech_sink_from_args

    return speech_sink_from_args(args, video_duration=duration, received=getattr(args, "server", None) is not None)
