"""Soak (issue 6, acceptance 1): the tiny model narrates a 1-hour 2 fps stream, fed as fast as
possible, inside a small KV budget. The cache never exceeds the budget, process memory stays flat
after the first 10 minutes of video, every chunk yields a comment and a JSONL record."""

from __future__ import annotations

import gc
import json
import os
import threading

import numpy as np
import pytest
import torch

from engine.session.events import Commentary, Compaction, Stats, event_to_record
from engine.capture.frames import Frame, RingBuffer
from engine.session.session import SessionConfig, StreamingSession
from engine.output.jsonl import JsonlLog
from videos import synthetic_frame

HOUR_FRAMES = 7200  # 1 hour at 2 fps
SIDE = 56  # 4 visual tokens a chunk: the test is about bookkeeping, not pixels
BUDGET = 2048
CHUNKS = 1 + (HOUR_FRAMES - 6) // 2  # a 3 s first chunk, then 1 s chunks


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def produce(buffer: RingBuffer, images: list[np.ndarray]) -> None:
    """A file-like source: every frame delivered (blocking put), timestamps of a 2 fps hour."""
    for i in range(HOUR_FRAMES):
        if not buffer.put(Frame(images[i % len(images)], i * 0.5), block=True, timeout=60):
            break
    buffer.close()


@pytest.mark.slow
def test_one_hour_stream_stays_in_budget_and_memory(tiny_loaded, tmp_path, one_thread):
    # The visual memory grows to its bound and then stays there: a small bound fills in the first minutes.
    config = SessionConfig(max_pixels=SIDE * SIDE, min_pixels=SIDE * SIDE, max_new_tokens=4, kv_budget=BUDGET,
                           memory_tokens=256, video_window_s=16.0, memory_mb=2.0)
    session = StreamingSession(tiny_loaded, config)
    images = [synthetic_frame(t * 0.7, SIDE, SIDE) for t in range(8)]
    buffer = RingBuffer(64)
    producer = threading.Thread(target=produce, args=(buffer, images), daemon=True)
    comments, compactions, rss_at_10min, last_comment, worst_ms = 0, 0, None, None, 0.0
    log_path = tmp_path / "soak.jsonl"
    producer.start()
    with JsonlLog(log_path) as log:
        for event in session.run(buffer):
            if isinstance(event, Commentary):
                assert event.chunk_index == comments
                comments, last_comment = comments + 1, event
            elif isinstance(event, Compaction):
                compactions, worst_ms = compactions + 1, max(worst_ms, event.ms)
                assert event.tokens_after < event.tokens_before <= BUDGET
            elif isinstance(event, Stats):
                assert last_comment is not None and event.chunk_index == last_comment.chunk_index
                assert event.cache_tokens == session.runner.length <= BUDGET
                assert len(session.state.tokens) <= BUDGET and event.compactions == compactions
                log.write(event_to_record(last_comment) | {"stats": event_to_record(event)})  # as the CLI does
                if rss_at_10min is None and event.end >= 600:
                    gc.collect()
                    rss_at_10min = rss_bytes()
    producer.join(timeout=10)
    gc.collect()
    rss_end = rss_bytes()

    assert comments == CHUNKS and last_comment.end == HOUR_FRAMES * 0.5
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert len(records) == CHUNKS and [r["chunk_index"] for r in records] == list(range(CHUNKS))
    assert compactions > 50 and session.state.compactions == compactions
    assert session.trace is None and len(session.context.window) <= 18
    memory = session.recall.memory
    assert 0 < memory.nbytes <= 2 * 2**20 and memory.covers(memory.frames[0].start, HOUR_FRAMES * 0.5 - 16.0)
    growth = (rss_end - rss_at_10min) / rss_at_10min
    print(f"soak: {comments} chunks, {compactions} compactions (worst {worst_ms:.1f} ms), "
          f"RSS {rss_at_10min / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB ({growth:+.2%})")
    assert growth < 0.05, f"process memory grew {growth:.1%} from 10 minutes of video to 60"
