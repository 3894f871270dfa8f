"""Narrate a video file (or a camera, the screen): a file source at the model's frame size feeds a
session, and every comment reaches the subtitle and JSONL files as it comes. `livecc narrate` and
the desktop app's "Narrate to subtitles" both run `narrate_file`, so the same file gives the same
SRT either way. `narrate_files` runs many files as sessions of one engine core, each writing what
it would write alone."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LiveCCError, OutOfMemoryError
from engine.output.jsonl import JsonlLog
from engine.output.subtitles import LiveSubtitles
from engine.session.events import Commentary, Event, Stats, event_to_record

RING_SLOTS = 64  # only sampled frames enter the buffer: 32 s at 2 fps
RING_BYTES = 256 * 2**20  # and never more than this, whatever the source's resolution


def file_capture(path, info, config, resizer=None, **source_options):
    """A FileSource that hands over frames at the size the model takes (no preview needs more, so a
    4K or 8K file never fills the buffer with full-size frames), and its byte-bounded buffer.
    `resizer(height, width, max_pixels, min_pixels)` makes the resize; the default is the engine's
    own (a remote client without torch passes another)."""
    from engine.capture.frames import RingBuffer
    from engine.capture.sources import FileSource

    if resizer is None:
        from engine.model.preprocess import frame_resizer as resizer
    resize = resizer(info.height, info.width, config.max_pixels, config.min_pixels)
    source = FileSource(path, sample_fps=config.fps, transform=resize, **source_options)
    return source, RingBuffer(RING_SLOTS, max_bytes=RING_BYTES, min_frames=config.first_chunk_frames)


class NarrationFiles:
    """A narration's files. A comment goes to SRT and VTT at once; its JSONL record waits for the
    chunk's stats, and is written without them if the run stops first. `guard` wraps each comment's
    writes (the CLI holds stop signals there, so a cue is never half in the files)."""

    def __init__(self, srt: Path | None = None, vtt: Path | None = None, jsonl: Path | None = None,
                 guard: Callable[[], AbstractContextManager] = nullcontext):
        self._guard = guard
        self._pending: Commentary | None = None
        self.srt = LiveSubtitles(srt, "srt") if srt else None
        self.vtt = LiveSubtitles(vtt, "vtt") if vtt else None
        self.log = JsonlLog(jsonl) if jsonl else None

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in (self.srt, self.vtt, self.log) if f is not None]

    def on_event(self, event: Event) -> None:
        if isinstance(event, Commentary):
            with self._guard():
                for subtitles in (self.srt, self.vtt):
                    if subtitles is not None:
                        subtitles.add(event)
                self._pending = event
        elif isinstance(event, Stats):
            if self._pending is not None and self.log is not None:
                self.log.write(event_to_record(self._pending) | {"stats": event_to_record(event)})
            self._pending = None

    def close(self) -> None:
        with ExitStack() as stack:  # every file is closed, even when another fails
            for f in (self.srt, self.vtt, self.log):
                if f is not None:
                    stack.callback(f.close)
            if self._pending is not None and self.log is not None:
                self.log.write(event_to_record(self._pending))  # the chunk was narrated: keep its record
                self._pending = None


def narrate_file(session, video: str | Path, info, files: NarrationFiles, realtime: bool = False) -> Iterator[Event]:
    """Stream `video` (probed as `info`) through `session`, writing each event to `files` before it is
    yielded. The source stops however the loop ends; the caller closes `files`."""
    source, buffer = file_capture(video, info, session.config, realtime=realtime)
    yield from narrate_source(session, source, buffer, files)


def narrate_live(session, source, files: NarrationFiles) -> Iterator[Event]:
    """`narrate_file` for a camera or the screen: until the source ends (its `duration`) or the caller
    stops. `session` is anything with `run(buffer)`: a StreamingSession or a server's RemoteStream."""
    from engine.capture.frames import GridBuffer

    yield from narrate_source(session, source, GridBuffer(), files)


def narrate_source(session, source, buffer, files: NarrationFiles) -> Iterator[Event]:
    """Start `source` into `buffer` and run `session` on it, each event in `files` before it is yielded.
    A source that broke off raises its error once every frame before it is narrated."""
    try:
        source.start(buffer)
        for event in session.run(buffer):
            files.on_event(event)  # on disk before anyone shows it
            yield event
        if buffer.error is not None:
            raise buffer.error  # a server's session ends without it; a local one has raised it already
    finally:
        source.stop()


@dataclass
class Narration:
    """One file of a many-file narration: the video (probed as `info`) and where it stands. Its
    files open when its turn comes and close when it ends, so a long list never holds them all open."""

    video: Path
    info: object
    name: str = ""  # what its outputs are called (the CLI's DIR/NAME.srt), distinct among the files
    files: NarrationFiles | None = None
    source: object = None
    ended: bool = False
    error: BaseException | None = None
    closed: bool = False

    @property
    def state(self) -> str:
        if self.ended:
            return "failed" if self.error is not None else "done"
        return "waiting" if self.files is None else "running"

    def close(self) -> None:
        """Stop the source, then close the files (each even when the other fails); once."""
        if self.closed:
            return
        self.closed = True
        with ExitStack() as stack:
            if self.files is not None:
                stack.callback(self.files.close)
            if self.source is not None:
                stack.callback(self.source.stop)


def narration_core(loaded, config, sessions: int):
    """An engine core for `sessions` files at once, its KV slabs as long as one session's budget
    (the memory plan may have cut it, as it does for a session alone)."""
    import torch

    from engine.core import EngineCore

    plan = getattr(loaded, "plan", None)
    budget = min(config.kv_budget, plan.kv_budget) if plan is not None else config.kv_budget
    try:
        return EngineCore(loaded, sessions=sessions, kv_budget=budget)
    except torch.OutOfMemoryError:
        raise OutOfMemoryError(f"the GPU has no room for the KV caches of {sessions} sessions",
                               "narrate fewer files at once (--sessions), lower --kv-budget, or use --quantize int4"
                               ) from None


def narrate_files(core, narrations: list[Narration], config, open_files: Callable[[Narration], NarrationFiles],
                  realtime: bool = False) -> Iterator[tuple[Narration, Event | None]]:
    """Narrate each file as a session of `core`, as many at once as it has slots (the rest wait for
    one). A file's events reach its files (opened by `open_files` when its turn comes) before they
    are yielded as (narration, event); its end is yielded as (narration, None), its files closed and
    its failure, if any, in `narration.error`: a failure ends that file only. However the loop
    ends, every source stops and every file is closed."""
    waiting, ready = deque(narrations), deque()
    running: list[Narration] = []
    try:
        while waiting or running:
            while waiting and len(running) < core.pool.slabs:
                running.append(waiting.popleft())
                _begin(core, running[-1], config, open_files, realtime, ready)
            if any(not n.ended for n in running):
                core.step_or_wait()
            while ready:
                narration, event = ready.popleft()
                if event is None:
                    running.remove(narration)
                    narration.close()
                yield narration, event
    finally:
        with ExitStack() as stack:
            for narration in narrations:
                stack.callback(narration.close)


def _begin(core, narration: Narration, config, open_files, realtime: bool, ready: deque) -> None:
    """Start the file's source, open its files and its session. A file that cannot start ends at once."""
    def on_event(event: Event) -> None:
        narration.files.on_event(event)  # on disk before anyone shows it
        ready.append((narration, event))

    def on_end(error: BaseException | None) -> None:
        narration.ended, narration.error = True, error
        ready.append((narration, None))

    narration.source, buffer = file_capture(narration.video, narration.info, config, realtime=realtime)
    try:
        narration.source.start(buffer)
        narration.files = open_files(narration)
        core.open(buffer, config, on_event, on_end)
    except LiveCCError as exc:  # this file's problem (it cannot be opened): the others go on
        on_end(exc)
