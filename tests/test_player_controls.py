"""Pause, resume and seek of a file played in real time, through the real session and the tiny model
(issue 15, acceptance 2): time stays the file's own and a seek starts a new conversation there."""

from __future__ import annotations

import threading
import time

import pytest

from engine.capture.frames import RingBuffer
from engine.capture.sources import FileSource
from engine.session.events import Commentary, Seek, Stats
from engine.session.session import SessionConfig, StreamingSession
from videos import write_video


@pytest.fixture(scope="module")
def video30(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("player") / "thirty.mp4", seconds=30, fps=10, width=160, height=112)


class Played:
    """A real-time FileSource and a live session on an engine thread, events collected."""

    def __init__(self, loaded, path):
        self.source = FileSource(path, realtime=True, sample_fps=2.0)
        self.buffer = RingBuffer(64)
        config = SessionConfig(max_pixels=112 * 168, min_pixels=28 * 28, max_new_tokens=3, live=True)
        self.session = StreamingSession(loaded, config)
        self.events: list = []
        self.source.start(self.buffer)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for event in self.session.run(self.buffer):
            self.events.append(event)

    def comments(self) -> list[Commentary]:
        return [e for e in list(self.events) if isinstance(e, Commentary)]

    def wait_for(self, predicate, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)

    def close(self) -> None:
        self.session.stop()
        self.buffer.close()
        self.source.stop()
        self.thread.join(10)


def test_pause_holds_capture_and_time_continues_after_resume(tiny_loaded, video30):
    played = Played(tiny_loaded, video30)
    try:
        played.wait_for(lambda: len(played.comments()) >= 1)
        played.source.pause()
        time.sleep(1.5)  # chunks already captured may still finish
        held = len(played.comments())
        time.sleep(3.5)  # 5 s paused in all
        assert len(played.comments()) == held, "commentary went on while paused"
        assert played.source.paused
        played.source.resume()
        played.wait_for(lambda: len(played.comments()) >= held + 2)
    finally:
        played.close()
    comments = played.comments()
    for before, after in zip(comments, comments[1:]):  # Time= continues: no gap, no jump
        assert after.start == pytest.approx(before.end)
        assert after.chunk_index == before.chunk_index + 1
    stats = [e for e in played.events if isinstance(e, Stats)]
    assert stats[-1].frames_dropped == 0 and stats[-1].chunks_skipped == 0
    assert comments[-1].end < 15.0, "the pause did not hold the file's clock"


def test_seek_starts_a_new_conversation_at_the_new_time(tiny_loaded, video30):
    played = Played(tiny_loaded, video30)
    try:
        played.wait_for(lambda: len(played.comments()) >= 1)
        played.session.seek(10.0, played.source.seek)
        played.wait_for(lambda: any(isinstance(e, Seek) for e in played.events))
        mark = next(i for i, e in enumerate(played.events) if isinstance(e, Seek))
        played.wait_for(lambda: len([e for e in played.events[mark:] if isinstance(e, Commentary)]) >= 2)
    finally:
        played.close()
    assert played.events[mark] == Seek(10.0)
    after = [e for e in played.events[mark:] if isinstance(e, Commentary)]
    assert after[0].start == pytest.approx(10.0)
    assert after[0].end == pytest.approx(13.0)  # a first chunk again: 3 s of video, a new conversation
    assert all(c.start >= 10.0 for c in after)
    assert all(c.start < 10.0 for c in played.events[:mark] if isinstance(c, Commentary))


def test_seek_reaches_a_source_blocked_on_a_full_buffer(video30):
    buffer = RingBuffer(2)
    source = FileSource(video30, realtime=False)  # blocking puts: it waits for room
    source.start(buffer)
    try:
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a timing
        while len(buffer) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert source.seek(20.0)  # the frame waiting for room is dropped: it belongs to the old position
        deadline = time.monotonic() + 60  # a bound for a loaded machine, not a timing
        while not buffer.snapshot():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert buffer.snapshot()[0].timestamp == pytest.approx(20.0, abs=0.11)
    finally:
        buffer.close()
        source.stop()
