"""`livecc narrate A.mp4 B.mp4 ... --out-dir DIR`: many videos as concurrent sessions of one engine
core (engine.output.narrate.narrate_files), each writing DIR/NAME.srt, .vtt and .jsonl: what
narrating it alone writes.

Everything that can be checked is checked before the model loads. A video that cannot be read is
one line, and the others go on; the exit status is then 2 and the summary names it. Options that
name one file or one stream are refused. Ctrl-C stops every video and keeps every finished chunk.
"""

from __future__ import annotations

import shutil
import sys
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import LiveCCError

from .checks import check_counts, check_outputs, check_video_shape, error_message
from .narrate import ProgressBar, Summary, comment_line, open_files
from .options import load, session_config

MAX_SESSIONS = 8  # videos at once by default: each session's KV cache shares the GPU with the weights
SUFFIXES = ("srt", "vtt", "jsonl")


def cmd_narrate_many(args) -> int:
    refuse_single_stream_options(args)
    config = session_config(args, live=args.realtime)
    videos = [Path(v) for v in args.video]
    check_distinct(videos)
    report = Report(len(videos))
    report.narrations = probed(videos, output_names(videos), args.out_dir, report)
    check_outputs([("--out-dir", path) for n in report.narrations for path in outputs(args.out_dir, n.name)],
                  inputs=videos)
    sessions = session_count(args, len(report.narrations))
    with ExitStack() as cleanup:  # the summary is the last step, also after Ctrl-C or an error
        cleanup.callback(report.print)
        if report.narrations:
            _run(args, config, report, sessions, cleanup)
    return 2 if report.failed else 0


def refuse_single_stream_options(args) -> None:
    """Options that name one file or one stream make no sense for many videos: one line each."""
    if args.out_dir is None:
        raise LiveCCError(f"narrating {len(args.video)} videos needs --out-dir DIR",
                          "add --out-dir DIR: each video NAME.mp4 writes DIR/NAME.srt, .vtt and .jsonl")
    for flag, value in (("--srt", args.srt), ("--vtt", args.vtt), ("--jsonl", args.jsonl)):
        if value is not None:
            raise LiveCCError(f"{flag} names one file, but --out-dir writes one per video",
                              f"drop {flag} (each video NAME.mp4 writes DIR/NAME.{flag[2:]})")
    if args.server is not None:  # --server "" (an unset variable) is an error, not a local run
        raise LiveCCError("--server narrates one video on a server, not an --out-dir of them",
                          "drop --out-dir and run `livecc narrate VIDEO --server URL` for each video")
    for flag, dest in (("--speak", "speak"), ("--speech-wav", "speech_wav")):
        if getattr(args, dest, None):
            raise LiveCCError(f"{flag} voices one video, not an --out-dir of them",
                              f"drop --out-dir to narrate a single video with {flag}")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise LiveCCError(f"--out-dir {args.out_dir} is a file", "give a folder (it is created if missing)")


def check_distinct(videos: list[Path]) -> None:
    seen: set[Path] = set()
    for video in videos:
        key = video.expanduser().resolve()
        if key in seen:
            raise LiveCCError(f"{video} is given twice", "name each video once")
        seen.add(key)


def output_names(videos: list[Path]) -> list[str]:
    """Each video's output name: its stem, made distinct where stems meet (clip, clip-2, ...), whatever
    the case, since a case-insensitive disk would merge Clip.srt and clip.srt."""
    taken: set[str] = set()
    names = []
    for video in videos:
        name, k = video.stem, 1
        while name.casefold() in taken:
            k += 1
            name = f"{video.stem}-{k}"
        taken.add(name.casefold())
        names.append(name)
    return names


def outputs(out_dir: Path, name: str) -> list[Path]:
    return [out_dir / f"{name}.{suffix}" for suffix in SUFFIXES]


def probed(videos: list[Path], names: list[str], out_dir: Path, report: "Report") -> list:
    """A Narration for each video that opens; each one that does not is reported in one line."""
    from engine.capture.sources import probe_video
    from engine.output.narrate import Narration

    narrations = []
    for video, name in zip(videos, names):
        if name != video.stem:
            print(f"livecc: note: another video is named {video.stem}: {video} writes {out_dir / name}.srt, .vtt "
                  "and .jsonl", file=sys.stderr)
        try:
            info = probe_video(video)
            check_video_shape(info.width, info.height, info.path)
        except LiveCCError as exc:
            print(f"livecc: error: {exc}", file=sys.stderr)
            report.failed.append(str(video))
            continue
        narrations.append(Narration(video, info, name=name))
    return narrations


def session_count(args, videos: int) -> int:
    check_counts(args, "sessions")
    sessions = max(1, min(videos, args.sessions or MAX_SESSIONS))
    if args.realtime and videos > sessions:
        raise LiveCCError(f"--realtime plays every video at once, and {videos} videos are more than the "
                          f"{sessions} narrated at once", f"pass --sessions {videos}, or narrate fewer videos")
    return sessions


@dataclass
class Report:
    """What each video's narration did, printed at the end (also after an error or an interruption)."""

    videos: int
    failed: list[str] = field(default_factory=list)  # the videos that failed, as given
    narrations: list = field(default_factory=list)  # those that passed the checks
    summaries: dict[str, Summary] = field(default_factory=dict)  # output name -> its run

    def print(self) -> None:
        """A line for each video that started, then the total; nothing when none started or failed
        (the model did not load: its error is the one line)."""
        for narration in self.narrations:
            if narration.name in self.summaries:
                summary = self.summaries[narration.name]
                print(f"livecc: {narration.name}: {summary.body()}{_ENDINGS[narration.state]}", file=sys.stderr)
        if self.summaries or self.failed:
            print(f"livecc: {self.total()}", file=sys.stderr)

    def total(self) -> str:
        states = [n.state for n in self.narrations]
        line = f"{n_videos(self.videos)}: {states.count('done')} narrated"
        if self.failed:
            line += f", {len(self.failed)} failed ({', '.join(self.failed)})"
        stopped = states.count("running") + states.count("waiting")
        return line + (f", {stopped} stopped before their end" if stopped else "")


_ENDINGS = {"done": "", "failed": " (failed)", "running": " (stopped)"}


def _run(args, config, report: Report, sessions: int, cleanup: ExitStack) -> None:
    """Load the model, then narrate every video, printing comments and failures as they come."""
    from engine.output.narrate import narrate_files, narration_core

    core = narration_core(load(args), config, sessions)
    view = ManyProgress(report.narrations)
    cleanup.callback(view.close)

    def opened(narration):
        files = open_files(*outputs(args.out_dir, narration.name), warn=lambda line: view.bar.write(line, err=True))
        report.summaries[narration.name] = Summary(started=True, files=files.paths)
        return files

    chunk_s = config.chunk_frames / config.fps
    events = cleanup.enter_context(closing(narrate_files(core, report.narrations, config, opened, args.realtime)))
    for narration, event in events:
        if event is None:
            _ended(narration, report, view)
        else:
            report.summaries[narration.name].count(event, chunk_s)
            view.follow(narration, event)


def _ended(narration, report: Report, view: "ManyProgress") -> None:
    """A video's end: a failure is one line naming it, and the others go on; a bug is raised."""
    if narration.error is not None:
        message = error_message(narration.error)
        if message is None:
            raise narration.error
        named = message if str(narration.video) in message else f"{narration.video}: {message}"
        view.bar.write(f"livecc: error: {named}", err=True)
        report.failed.append(str(narration.video))
    view.refresh()


def n_videos(n: int) -> str:
    return f"{n} video" if n == 1 else f"{n} videos"


def stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


class ManyProgress:
    """One bar over every video's seconds; beside it, each running video's seconds and how many are
    done, failed and waiting. Quiet when stderr is not a terminal: a log gets the comments, not the bar."""

    def __init__(self, narrations: list):
        self.narrations = narrations
        self.seconds = {n.name: 0.0 for n in narrations}
        self.bar = ProgressBar(sum(n.info.duration for n in narrations), desc=f"narrating {n_videos(len(narrations))}",
                               quiet=not stderr_is_terminal())

    def follow(self, narration, event) -> None:
        from engine.session.events import Commentary

        if isinstance(event, Commentary):
            if event.text:
                self.bar.write(f"{narration.name} {comment_line(event)}")
            self.seconds[narration.name] = event.end
            self.bar.advance(sum(self.seconds.values()))
            self.refresh()

    def refresh(self) -> None:
        room = max(20, shutil.get_terminal_size().columns - 60)  # the bar and its counts keep one line
        text = self.describe()
        self.bar.note(text if len(text) <= room else text[:room - 1] + "…")

    def describe(self) -> str:
        """`A 12/20s, B 3/9s; 1 done, 2 waiting`: the running videos first."""
        states = [n.state for n in self.narrations]
        running = [f"{n.name} {self.seconds[n.name]:.0f}/{n.info.duration:.0f}s" for n in self.narrations
                   if n.state == "running"]
        counts = [f"{states.count(s)} {s}" for s in ("done", "failed", "waiting") if states.count(s)]
        return "; ".join(part for part in (", ".join(running), ", ".join(counts)) if part)

    def close(self) -> None:
        self.bar.close()
