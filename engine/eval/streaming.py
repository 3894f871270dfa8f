"""Items played through `StreamingSession` as a live stream: commentary runs chunk by chunk as in
live use (with the configured compaction and visual memory), and each question is asked
when the stream reaches its time.

A LiveSports-3K event is played like LiveCC's `live_cc_once_for_evaluation` (demo/infer.py): the
clip [begin, end] with times counted from its start, the context prompt as the query of the first
chunk, and the comments collected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path

from engine.capture.frames import Frame, RingBuffer
from engine.capture.sources import FileSource
from engine.session.context import ContextBudgetError
from engine.session.events import Answer, Commentary, Event
from engine.session.session import SessionConfig, StreamingSession
from engine.session.text import TextError

from .ovobench import ItemError

_BUFFER_FRAMES = 64  # only sampled frames enter the buffer: 32 s at 2 fps, never less than a chunk
_BUFFER_BYTES = 512 * 2**20  # and a 4K video's full-size frames never take more than this


class ClipSource(FileSource):
    """A file's [start, end] with frame times counted from `start` (LiveCC's evaluation clips)."""

    def _read(self) -> Frame | None:
        frame = super()._read()
        return None if frame is None else replace(frame, timestamp=frame.timestamp - self.start_s)


def _play(session: StreamingSession, source: FileSource) -> Iterator[Event]:
    buffer = RingBuffer(_BUFFER_FRAMES, max_bytes=_BUFFER_BYTES, min_frames=session.config.first_chunk_frames)
    source.start(buffer)
    try:
        yield from session.run(buffer)
    finally:
        source.stop()


@contextmanager
def _one_item() -> Iterator[None]:
    """A question or prompt too long for the context fails its item alone, not the whole run."""
    try:
        yield
    except ContextBudgetError as exc:
        raise ItemError(str(exc), "too long for the KV budget") from None
    except TextError as exc:  # a question over the length a session takes
        raise ItemError(str(exc), "question refused") from None


class StreamAnswerer:
    """Answers an item's probes: a fresh session watches the video, and each probe (time, prompt)
    is asked after the first chunk that ends at or past its time; probes past the end of the video
    are asked when it ends. Replies come back in the probes' order."""

    def __init__(self, loaded, config: SessionConfig):
        self.loaded = loaded
        self.config = replace(config, note_unfit_questions=False)  # such an item fails, as the benchmark counts it

    def __call__(self, video: Path, probes: list[tuple[float, str]]) -> list[str]:
        with _one_item():
            return self._answers(video, probes)

    def _answers(self, video: Path, probes: list[tuple[float, str]]) -> list[str]:
        if not probes:
            return []
        session = StreamingSession(self.loaded, self.config)
        due = deque(sorted(range(len(probes)), key=lambda i: probes[i][0]))
        asked: deque[int] = deque()
        replies: list[str | None] = [None] * len(probes)
        source = FileSource(video, end=probes[due[-1]][0], sample_fps=self.config.fps)
        with closing(_play(session, source)) as events:  # the source stops here, however the loop ends
            for event in events:
                if isinstance(event, Commentary):
                    while due and event.end >= probes[due[0]][0] - 1e-6:
                        asked.append(due.popleft())
                        session.ask(probes[asked[-1]][1])
                elif isinstance(event, Answer) and event.done:
                    replies[asked.popleft()] = event.text
        for i in list(asked) + list(due):  # asked after the last chunk, or the video ended first
            replies[i] = _final_answer(session, probes[i][1])
        return replies


def _final_answer(session: StreamingSession, question: str) -> str:
    text = ""
    for event in session.answer(question):
        if isinstance(event, Answer):
            text = event.text
    return text


def commentate(loaded, config: SessionConfig, video: Path, begin: float, end: float, query: str) -> list[Commentary]:
    """The comments a fresh session makes on the clip [begin, end] given `query` as its instruction."""
    session = StreamingSession(loaded, replace(config, query=query))
    source = ClipSource(video, start=begin, end=end, sample_fps=config.fps)
    with _one_item(), closing(_play(session, source)) as events:
        return [event for event in events if isinstance(event, Commentary)]
