"""Ask about a video file on a server, as `livecc ask` does here: the file goes up to a time, the
question once the server has narrated every whole chunk of it, and the answer streams back.

The server narrates a chunk only when all its frames are there, so the client replays the server's
chunking (the engine's own FrameSampler, torch-free) over the frames it sent to know when the
context is complete. A local run also narrates a last part-chunk when the file ends; a server,
whose stream stays open for the question, does not: that stretch is reported by `warn`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from engine.capture.frames import Frame, RingBuffer
from engine.capture.sampler import FrameSampler
from engine.session.events import Commentary, Event, StreamEnded

from .narrate import CaptureSettings, FrameSender, resizer_for
from .session import RemoteError, RemoteSession


class ChunkCounter:
    """The chunks the server makes of the frames sent so far (a file: every frame, none skipped)."""

    def __init__(self, capture: CaptureSettings):
        self.sampler = FrameSampler(capture.fps, capture.first_chunk_frames, capture.chunk_frames)
        self.buffer = RingBuffer(max(64, capture.first_chunk_frames))
        self.chunks = 0

    def add(self, frame: Frame) -> None:
        self.buffer.put(frame)
        while self.sampler.take(self.buffer, live=False, max_backlog_s=0.0) is not None:
            self.chunks += 1

    @property
    def watched(self) -> float:
        """Video seconds the whole chunks cover."""
        return self.sampler.next_time

    def tail(self) -> tuple[float, float, float] | None:
        """After the last frame: `(start, end, whole)` of the part-chunk a local run narrates at the
        end of the file and the server does not (`whole`: where that chunk would end), or None."""
        start, frames = self.sampler.next_time, self.sampler.first_frames if self.sampler.first \
            else self.sampler.chunk_frames
        self.buffer.close()
        chunk = self.sampler.take(self.buffer, live=False, max_backlog_s=0.0)
        return None if chunk is None else (start, chunk.end, start + frames * self.sampler.period)


def remote_ask(remote: RemoteSession, video: str | Path, info, question: str, end: float, *,
               warn: Callable[[str], None], fmt: str = "jpeg") -> Iterator[Event]:
    """Watch `video` up to `end` s on the server, then ask: yields the commentary's events, a
    StreamEnded at the video time a local run would have watched to, then the answer's events (the
    last one done). The connection closes however the loop ends."""
    from engine.output.narrate import file_capture

    capture = CaptureSettings.of(remote.settings)
    source, buffer = file_capture(video, info, capture, resizer=resizer_for(fmt), end=end)
    counter = ChunkCounter(capture)
    sender = FrameSender(remote, buffer, fmt, end_stream=False, on_sent=counter.add)
    try:
        source.start(buffer)
        sender.start()
        yield from _watch(remote, sender, counter)
        if buffer.error is not None:
            raise buffer.error  # the file broke off: say so, as a local run does
        tail = counter.tail()
        yield StreamEnded(tail[1] if tail else counter.watched)
        if tail is not None:  # after the StreamEnded: the watching's progress bar has closed
            warn(f"over a server a question waits for whole chunks: the video from {tail[0]:.1f} s to "
                 f"{tail[1]:.1f} s is not seen (ask --at {tail[2]:g} or later to include it)")
        yield from remote.answer(question)
    finally:
        sender.stop()
        source.stop()
        remote.close()


def _watch(remote: RemoteSession, sender: FrameSender, counter: ChunkCounter) -> Iterator[Event]:
    """The server's events until every frame is sent and every whole chunk of them is narrated."""
    narrated = 0

    def complete() -> bool:
        return sender.done.is_set() and (sender.error is not None or narrated >= counter.chunks)

    for event in remote.events(until=complete):
        narrated += isinstance(event, Commentary)
        yield event
    if sender.error is not None:
        raise sender.error
    if not complete():
        raise RemoteError("the server ended the session before the question: run again")
