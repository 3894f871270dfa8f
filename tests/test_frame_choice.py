"""Frame choice (issue 14): for each 2 fps target the file source and the sampler take the frame on
screen at that time, as LiveCC's livecc-utils does (targets matched against each frame's end time),
checked against the frame times the decoder itself reports."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.capture.frames import RingBuffer
from engine.capture.sampler import FrameSampler
from engine.capture.sources import FileSource
from videos import write_video


def decoded_times(path) -> np.ndarray:
    cap, starts = cv2.VideoCapture(str(path)), []
    while cap.grab():
        starts.append(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
    cap.release()
    return np.array(starts)


def livecc_choice(starts: np.ndarray, fps: float, targets: np.ndarray) -> np.ndarray:
    """livecc-utils: `(expected_timestamps[:, None] <= clip_pts).argmax(axis=1)` over frame end times."""
    ends = starts + 1.0 / fps
    return starts[(targets[:, None] <= ends + 1e-6).argmax(axis=1)]


def sampled(path) -> list[float]:
    """What the session sees: FileSource at 2 fps into a ring buffer, chunks from FrameSampler."""
    source, buffer, sampler = FileSource(path, sample_fps=2), RingBuffer(64), FrameSampler(2.0, 6, 2)
    source.start(buffer)
    picked: list[float] = []
    try:
        while True:
            closed = buffer.closed  # read first: a chunk may still form from the last frames
            chunk = sampler.take(buffer, False, 2.0)
            if chunk is not None:
                picked += [f.timestamp for f in chunk.frames]
            elif closed:
                return picked
            else:
                buffer.wait(timeout=0.2)
    finally:
        source.stop()


@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_chosen_frames_equal_livecc_rule(tmp_path, fps):
    path = write_video(tmp_path / f"v{fps:.0f}.mp4", seconds=5, fps=fps, width=64, height=48)
    starts = decoded_times(path)
    picked = sampled(path)
    targets = np.arange(len(picked)) / 2.0
    np.testing.assert_allclose(picked, livecc_choice(starts, fps, targets), atol=1e-6)
    assert len(picked) == 10  # 0 .. 4.5 s: a 3 s chunk, then two 1 s chunks
    late = starts[np.searchsorted(starts, targets - 1e-6)]  # the old rule: first frame at or after
    assert not np.allclose(picked, late)  # so this test tells the two rules apart


def test_a_chunk_forms_once_the_frame_on_screen_at_its_last_target_is_here():
    """Paced (--realtime) narration must not wait a sample longer for a frame that starts after the target."""
    from engine.capture.frames import Frame

    image = np.zeros((4, 4, 3), np.uint8)
    buffer, sampler = RingBuffer(64), FrameSampler(2.0, 6, 2)
    for t in [0.0] + [k / 2 - 1 / 30 for k in range(1, 6)]:  # 30 fps file: 0, 14/30, 29/30, ..., 74/30 s
        buffer.put(Frame(image, t, 1 / 30))
    chunk = sampler.take(buffer, False, 2.0)  # the buffer is still open: no later frame has come
    assert chunk is not None and [f.timestamp for f in chunk.frames][-1] == pytest.approx(2.5 - 1 / 30)
