"""Narrate a video file: a file source at the model's frame size feeds a session, and every comment
reaches the subtitle and JSONL files as it comes. `livecc narrate` and the desktop app's "Narrate to
subtitles" both run `narrate_file`, so the same file gives the same SRT either way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import Path

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
    try:
        source.start(buffer)
        for event in session.run(buffer):
            files.on_event(event)  # on disk before anyone shows it
            yield event
    finally:
        source.stop()
