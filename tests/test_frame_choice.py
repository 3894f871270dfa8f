"""Frame choice (issue 14): for each 2 fps target the file source and the sampler take the frame on
screen at that time, as LiveCC's livecc-utils does (targets matched against each frame's end time),
checked against the frame times the decoder itself reports."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.capture.frames import Frame, RingBuffer
from engine.capture.sampler import FrameSampler
from engine.capture.sources import FileSource
from fake_devices import Racing
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


def sampled(path, source=None, buffer=None) -> list[float]:
    """What the session sees: by default FileSource at 2 fps into a ring buffer, chunks from FrameSampler."""
    source = source or FileSource(path, sample_fps=2)
    buffer = buffer if buffer is not None else RingBuffer(64)
    sampler = FrameSampler(2.0, 6, 2)
    source.start(buffer)
    picked: list[float] = []
    try:
        while True:
            closed = buffer.closed  # read first: a chunk may still form from the last frames
            chunk = sampler.take(buffer, source.live, 2.0)
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


def test_a_file_that_ends_while_a_chunk_is_taken_loses_no_frame():
    """The producer may put its last frames and close the buffer between the sampler's look at the
    frames and its look at `closed` (CI hit it under load: a 3 s first chunk came out as 1 s). The
    chunk is made from every frame all the same."""
    image = np.zeros((4, 4, 3), np.uint8)
    frames = [Frame(image, k / 30, 1 / 30) for k in range(150)]
    buffer = Racing(frames[13:])
    for frame in frames[:13]:  # up to 0.4 s
        buffer.put(frame)
    sampler = FrameSampler(2.0, 6, 2)
    chunk = sampler.take(buffer, False, 2.0) or sampler.take(buffer, False, 2.0)
    assert [f.timestamp for f in chunk.frames] == pytest.approx([k / 30 for k in (0, 14, 29, 44, 59, 74)])


def test_a_session_narrates_the_frames_that_come_as_the_file_ends(tiny_loaded):
    """The session looks at `closed` before it takes a chunk: frames put just before the close are
    narrated, not dropped as if the stream had ended before them."""
    from engine.session.events import Commentary
    from engine.session.session import SessionConfig, StreamingSession
    from videos import synthetic_frame

    frames = [Frame(synthetic_frame(k / 2, 84, 84), k / 2, 0.5) for k in range(10)]
    config = SessionConfig(max_pixels=84 * 84, min_pixels=28 * 28, max_new_tokens=3)

    def chunks(buffer) -> list[float]:
        return [e.end for e in StreamingSession(tiny_loaded, config).run(buffer) if isinstance(e, Commentary)]

    whole = RingBuffer(16)
    for frame in frames:
        whole.put(frame)
    whole.close()
    racing = Racing(frames[4:], capacity=16)
    for frame in frames[:4]:  # 0 .. 1.5 s, too few for the first chunk; then the producer finishes
        racing.put(frame)
    assert chunks(racing) == chunks(whole) == [3.0, 4.0, 5.0]


# -- the every-frame path: the desktop app's file source, webcams and the screen ----------------

@pytest.mark.parametrize("fps", [25.0, 30.0])
def test_every_frame_file_source_takes_the_frame_on_screen(tmp_path, fps):
    """FileSource without sample_fps hands over every frame; the sampler picks the one on screen."""
    path = write_video(tmp_path / f"v{fps:.0f}.mp4", seconds=5, fps=fps, width=64, height=48)
    starts = decoded_times(path)
    picked = sampled(path, FileSource(path), RingBuffer(256))
    targets = np.arange(len(picked)) / 2.0
    assert len(picked) == 10
    np.testing.assert_allclose(picked, livecc_choice(starts, fps, targets), atol=1e-6)


def test_the_apps_file_path_takes_the_frame_on_screen(tmp_path):
    """The desktop app: FileSource(path, realtime=True) into its PreviewBuffer (an 8 fps keep grid),
    sampled live. At 25 fps the first chunk is frames 0, 12, 24, 37, 49, 62 (LiveCC's loop), not 0,
    12, 25, 37, 50, 62."""
    from desktop_app.preview import PreviewBuffer

    path = write_video(tmp_path / "v25.mp4", seconds=3.2, fps=25.0, width=64, height=48)
    starts = decoded_times(path)
    picked = sampled(path, FileSource(path, realtime=True), PreviewBuffer())
    assert np.searchsorted(starts, np.array(picked) - 1e-6).tolist() == [0, 12, 24, 37, 49, 62]


def live_times(seed: int = 0, fps: float = 30.0, seconds: float = 3.0) -> np.ndarray:
    """A camera's frame times: about fps, with jitter, starting a little after 0."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.uniform(0.6, 1.4, int(seconds * fps)) / fps)


def test_live_frames_last_until_the_next_one_through_the_apps_buffer():
    """Webcam and screen frames have no duration: the one on screen at t is the last that started
    before t. Checked through a plain ring and through the app's keep grid."""
    from desktop_app.preview import PreviewBuffer

    from engine.capture.frames import Frame

    times = live_times()
    image = np.zeros((4, 4, 3), np.uint8)
    targets = np.arange(6) / 2.0  # the first chunk
    expected = times[np.maximum(np.searchsorted(times, targets) - 1, 0)]
    for buffer in (RingBuffer(256), PreviewBuffer()):
        for t in times:
            buffer.put(Frame(image, float(t)))
        chunk = FrameSampler(2.0, 6, 2).take(buffer, True, 2.0)
        assert chunk is not None, type(buffer).__name__
        np.testing.assert_allclose([f.timestamp for f in chunk.frames], expected, err_msg=type(buffer).__name__)


def test_a_live_frame_captured_at_a_target_is_the_one_on_screen_then():
    """A live frame shows from its capture on: a 2 fps screen grab captured exactly at each target
    gives that target its own frame, not the one half a second older."""
    from engine.capture.frames import Frame

    buffer = RingBuffer(64)
    for k in range(8):
        buffer.put(Frame(np.full((4, 4, 3), k, np.uint8), k / 2))
    chunk = FrameSampler(2.0, 6, 2).take(buffer, False, 2.0)
    assert [f.timestamp for f in chunk.frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
