"""Video sources on CPU: generated files, a camera patched to play a file (lerobot style), the
no-device/no-display errors, and a real X server (Xvfb) when one is installed."""

from __future__ import annotations

import os
import select
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.capture import sources
from engine.errors import SourceOpenError, SourceReadError
from engine.capture.frames import Frame, RingBuffer
from engine.capture.sources import (
    FileSource,
    ScreenSource,
    VideoInfo,
    WebcamSource,
    file_timestamp,
    list_monitors,
    list_webcams,
    probe_video,
)
from fake_devices import FakeCamera, FakeScreen
from videos import write_video

FPS, SECONDS, WIDTH, HEIGHT = 30.0, 2.0, 160, 112
N_FRAMES = int(SECONDS * FPS)


# -- helpers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", SECONDS, FPS, WIDTH, HEIGHT)


@pytest.fixture(scope="module")
def reference(video) -> list[Frame]:
    """The file decoded independently: RGB images and the container's CAP_PROP_POS_MSEC."""
    cap, frames = cv2.VideoCapture(str(video)), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0))
    cap.release()
    assert len(frames) == N_FRAMES
    return frames


def drain(buffer: RingBuffer, timeout: float = 10.0) -> list[Frame]:
    """Consume like the engine (wait -> snapshot -> discard) until the source closes the buffer."""
    frames: list[Frame] = []
    last = -1.0
    while True:
        assert buffer.wait(timeout=timeout, newer_than=last), "source neither delivered nor closed"
        new = [f for f in buffer.snapshot() if f.timestamp > last]
        frames += new
        last = new[-1].timestamp if new else last
        buffer.discard_before(last + 1e-6)
        if buffer.closed and not any(f.timestamp > last for f in buffer.snapshot()):
            return frames


def run_to_end(source, capacity: int = 256) -> tuple[list[Frame], RingBuffer]:
    buffer = RingBuffer(capacity)
    with source:
        source.start(buffer)
        frames = drain(buffer)
    assert not source.running
    return frames, buffer


def times(frames: list[Frame]) -> np.ndarray:
    return np.array([f.timestamp for f in frames])


def faststart(mp4: bytes) -> bytes:
    """Move the moov atom before mdat (as web-optimised mp4s have it), fixing chunk offsets,
    so that a truncated copy still opens and decodes its first frames."""
    boxes, pos = {}, 0
    while pos < len(mp4):
        size, kind = struct.unpack(">I4s", mp4[pos:pos + 8])
        boxes[kind] = mp4[pos:pos + size]
        pos += size
    moov = bytearray(boxes[b"moov"])
    _shift_chunk_offsets(moov, 8, len(moov), len(moov))
    rest = b"".join(body for kind, body in boxes.items() if kind not in (b"ftyp", b"moov"))
    return boxes[b"ftyp"] + bytes(moov) + rest


def _shift_chunk_offsets(buf: bytearray, start: int, end: int, shift: int) -> None:
    pos = start
    while pos < end:
        size, kind = struct.unpack(">I4s", buf[pos:pos + 8])
        if kind in (b"trak", b"mdia", b"minf", b"stbl"):
            _shift_chunk_offsets(buf, pos + 8, pos + size, shift)
        elif kind in (b"stco", b"co64"):
            fmt = ">I" if kind == b"stco" else ">Q"
            (count,) = struct.unpack(">I", buf[pos + 12:pos + 16])
            step = struct.calcsize(fmt)
            for i in range(count):
                at = pos + 16 + i * step
                struct.pack_into(fmt, buf, at, struct.unpack(fmt, buf[at:at + step])[0] + shift)
        pos += size


# -- FileSource ---------------------------------------------------------------------------------
def test_probe_video_reports_the_file(video):
    assert probe_video(video) == VideoInfo(video, WIDTH, HEIGHT, FPS, N_FRAMES, SECONDS)


def test_file_frames_and_timestamps_match_the_container(video, reference):
    frames, buffer = run_to_end(FileSource(video))
    assert len(frames) == N_FRAMES and buffer.error is None and buffer.dropped == 0
    np.testing.assert_allclose(times(frames), times(reference), atol=1e-3)
    np.testing.assert_allclose(times(frames), np.arange(N_FRAMES) / FPS, atol=1e-3)
    for got, want in zip(frames, reference):
        np.testing.assert_array_equal(got.image, want.image)  # RGB, not BGR


def test_file_backpressure_loses_nothing_with_a_tiny_buffer(video):
    source = FileSource(video)
    frames, buffer = run_to_end(source, capacity=2)
    assert buffer.dropped == 0 and source.error is None
    np.testing.assert_allclose(times(frames), np.arange(N_FRAMES) / FPS, atol=1e-3)


def test_file_end_stops_there_without_error(video):
    source = FileSource(video, end=1.0)
    frames, buffer = run_to_end(source)
    np.testing.assert_allclose(times(frames), np.arange(31) / FPS, atol=1e-3)  # 0 .. 1.0 s inclusive
    assert buffer.closed and buffer.error is None and source.error is None
    frames, _ = run_to_end(FileSource(video, end=0.0))  # `livecc ask --at 0`: the first frame only
    assert times(frames).tolist() == [0.0]


def test_file_start_skips_to_that_time(video, reference):
    frames, _ = run_to_end(FileSource(video, start=1.0))
    np.testing.assert_allclose(times(frames), np.arange(30, N_FRAMES) / FPS, atol=1e-3)
    np.testing.assert_array_equal(frames[0].image, reference[30].image)


def test_file_sample_fps_keeps_the_frame_on_screen_at_each_tick(video, reference):
    frames, _ = run_to_end(FileSource(video, sample_fps=2))
    # frame i is on screen until (i + 1) / 30 s: frame 14 ends exactly at 0.5 s, frame 59 at 2.0 s
    np.testing.assert_allclose(times(frames), np.array([0, 14, 29, 44, 59]) / FPS, atol=1e-3)
    for got, index in zip(frames, (0, 14, 29, 44, 59)):
        np.testing.assert_array_equal(got.image, reference[index].image)


def test_file_sample_fps_with_a_rate_that_does_not_divide_the_file_rate(video):
    frames, _ = run_to_end(FileSource(video, sample_fps=7))
    ticks = np.arange(15) / 7  # 0, 1/7, ... 2 s; each maps to the first frame whose end reaches it
    expected = np.maximum(0, np.ceil(ticks * FPS - 1e-6) - 1) / FPS
    np.testing.assert_allclose(times(frames), expected, atol=1e-3)


def test_file_realtime_paces_to_the_wall_clock(video):
    source = FileSource(video, realtime=True)
    assert source.live
    began = time.monotonic()
    frames, buffer = run_to_end(source)
    elapsed = time.monotonic() - began
    assert elapsed >= SECONDS - 0.2, f"a {SECONDS} s video played in {elapsed:.2f} s"
    assert len(frames) + buffer.dropped == N_FRAMES
    np.testing.assert_allclose(times(frames), np.sort(times(frames)))


def test_stop_joins_a_realtime_source_within_the_timeout(video):
    source, buffer = FileSource(video, realtime=True), RingBuffer(8)
    source.start(buffer)
    assert buffer.wait(timeout=5.0)
    assert source.stop(timeout=2.0)
    assert not source.running and buffer.closed and buffer.error is None


class WatchedBuffer(RingBuffer):
    """Signals when a producer is about to block on a full buffer."""

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.producer_blocked = threading.Event()

    def put(self, frame: Frame, block: bool = False, timeout: float | None = None) -> bool:
        if block and len(self) >= self.capacity:
            self.producer_blocked.set()
        return super().put(frame, block, timeout)


def test_stop_releases_a_producer_blocked_on_a_full_buffer(video):
    source, buffer = FileSource(video), WatchedBuffer(1)
    source.start(buffer)
    assert buffer.producer_blocked.wait(timeout=5.0)  # one frame in, nobody consumes
    assert source.stop(timeout=2.0)
    assert not source.running and len(buffer) == 1 and buffer.dropped == 0


def test_file_source_ends_when_the_consumer_closes_the_buffer(video):
    source, buffer = FileSource(video), RingBuffer(1)
    source.start(buffer)
    buffer.close()
    source._thread.join(timeout=5.0)
    assert not source.running and source.error is None


def test_repeated_failed_reads_end_the_stream_with_a_read_error(video, monkeypatch):
    source = FileSource(video)
    source.retry_delay_s = 0.001
    real_read, calls = source._read, []

    def failing_after_five() -> Frame | None:
        calls.append(1)
        return real_read() if len(calls) <= 5 else None

    monkeypatch.setattr(source, "_read", failing_after_five)
    frames, buffer = run_to_end(source)
    assert len(frames) == 5
    assert isinstance(source.error, SourceReadError) and buffer.error is source.error
    assert len(calls) == 5 + source.max_failed_reads  # gave up after exactly max_failed_reads failures
    assert "shapes.mp4 stopped delivering frames" in str(source.error) and "\n" not in str(source.error)


def test_a_bug_in_capture_reaches_the_consumer_with_its_traceback(video, monkeypatch):
    hooked: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooked.append(args.exc_value))
    source = FileSource(video)
    monkeypatch.setattr(source, "_read", lambda: 1 / 0)
    _, buffer = run_to_end(source)
    assert isinstance(buffer.error, ZeroDivisionError) and hooked == [buffer.error]
    assert source.error is None  # not a SourceError: it is not presented as a user's problem


def test_file_timestamp_falls_back_to_the_frame_rate():
    assert file_timestamp(0.0, None, 30.0) == 0.0
    assert file_timestamp(500.0, 0.4, 30.0) == 0.5  # the container's time when it moves forward
    assert file_timestamp(0.0, 0.5, 25.0) == pytest.approx(0.54)  # container gives nothing
    assert file_timestamp(400.0, 0.5, 25.0) == pytest.approx(0.54)  # container goes backwards
    assert file_timestamp(float("nan"), 1.0, 10.0) == pytest.approx(1.1)


# -- bad files --------------------------------------------------------------------------------
def _missing(tmp_path, video):
    return tmp_path / "missing.mp4"


def _directory(tmp_path, video):
    (tmp_path / "folder.mp4").mkdir()
    return tmp_path / "folder.mp4"


def _text(tmp_path, video):
    path = tmp_path / "notes.mp4"
    path.write_text("these are my notes, not a video\n" * 20)
    return path


def _empty(tmp_path, video):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


def _truncated(tmp_path, video):
    data = video.read_bytes()  # OpenCV writes moov last: 40% of the bytes has no index at all
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(len(data) * 0.4)])
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (_missing, "video file not found"),
        (_directory, "is a directory"),
        (_text, "cannot open"),
        (_empty, "cannot open"),
        (_truncated, "cannot open"),
    ],
)
def test_bad_files_raise_source_open_error(tmp_path, video, make, words):
    path = make(tmp_path, video)
    with pytest.raises(SourceOpenError) as probed:
        probe_video(path)
    message = str(probed.value)
    assert words in message and path.name in message and "\n" not in message
    source, buffer = FileSource(path), RingBuffer(4)
    with pytest.raises(SourceOpenError):
        source.start(buffer)  # synchronously, before any thread
    assert not source.running and not buffer.closed


def test_truncated_faststart_file_delivers_frames_then_a_read_error(tmp_path, video, reference):
    data = faststart(video.read_bytes())
    whole = tmp_path / "whole.mp4"
    whole.write_bytes(data)
    assert probe_video(whole).frame_count == N_FRAMES  # the rewrite itself is a valid file
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    assert probe_video(cut).frame_count == N_FRAMES  # the index survives, the frame data does not
    source = FileSource(cut)
    frames, buffer = run_to_end(source)
    assert 0 < len(frames) < N_FRAMES * 0.9
    np.testing.assert_array_equal(frames[0].image, reference[0].image)
    assert isinstance(source.error, SourceReadError) and buffer.error is source.error
    assert "cut.mp4" in str(source.error) and "truncated" in str(source.error)


@pytest.mark.parametrize("kwargs", [dict(start=-1.0), dict(start=2.0, end=1.0), dict(sample_fps=0)])
def test_file_source_rejects_bad_options(video, kwargs):
    with pytest.raises(SourceOpenError):
        FileSource(video, **kwargs)


def test_file_start_past_the_end_is_an_open_error(video):
    with pytest.raises(SourceOpenError, match="past the end"):
        FileSource(video, start=5.0).start(RingBuffer(4))


# -- webcams ----------------------------------------------------------------------------------
def test_missing_camera_fails_fast_with_a_fix(tmp_path, monkeypatch):
    if sys.platform.startswith("linux"):  # no /dev/video57 node: OpenCV must not even be asked
        monkeypatch.setattr(sources, "_DEV_DIR", tmp_path)
        monkeypatch.setattr(WebcamSource, "_open_capture", lambda self: pytest.fail("probed OpenCV"))
    began = time.monotonic()
    with pytest.raises(SourceOpenError, match="no camera at index 57: connect one or choose another source"):
        WebcamSource(57).start(RingBuffer(4))
    assert time.monotonic() - began < 2.0


def test_missing_camera_fails_fast_even_when_opencv_is_asked(monkeypatch):
    monkeypatch.setattr(sources, "_camera_exists", lambda index: True)  # as on a system without /dev/videoN
    began = time.monotonic()
    with pytest.raises(SourceOpenError, match="no camera at index 57"):
        WebcamSource(57).start(RingBuffer(4))
    assert time.monotonic() - began < 2.0


class FlakyCapture:
    """A cv2.VideoCapture that plays a file (BGR, like a camera) and fails two reads in a row,
    four times: 8 failures in all, but never max_failed_reads (5) consecutive ones."""

    FAILING_READS = (10, 11, 20, 21, 30, 31, 40, 41)

    def __init__(self, path: Path):
        self.cap, self.reads = cv2.VideoCapture(str(path)), 0

    def read(self):
        self.reads += 1
        return (False, None) if self.reads in self.FAILING_READS else self.cap.read()

    def __getattr__(self, name):
        return getattr(self.cap, name)


class SlowRetrieve:
    """A file's cv2.VideoCapture whose retrieve fails three times in a row on two of the frames
    before it gives the image (as seen once under heavy load: four frames lost in a row)."""

    FAILING = {5: 3, 12: 3}  # grab number -> failed retrieves before the image comes

    def __init__(self, path: Path):
        self.cap, self.grabs, self.failed = cv2.VideoCapture(str(path)), 0, 0

    def grab(self):
        self.grabs, self.failed = self.grabs + 1, 0
        return self.cap.grab()

    def retrieve(self):
        if self.failed < self.FAILING.get(self.grabs, 0):
            self.failed += 1
            return False, None
        return self.cap.retrieve()

    def __getattr__(self, name):
        return getattr(self.cap, name)


def test_a_file_loses_no_frame_to_failed_retrieves(video, reference, monkeypatch):
    monkeypatch.setattr(sources, "_open_capture", lambda path: SlowRetrieve(path))
    source = FileSource(video)
    source.retry_delay_s = 0.001
    frames, buffer = run_to_end(source)
    assert len(frames) == len(reference) and source.error is None
    for got, want in zip(frames, reference):
        np.testing.assert_array_equal(got.image, want.image)
        assert got.timestamp == pytest.approx(want.timestamp)


def test_camera_converts_to_rgb_survives_flaky_reads_and_reports_unplugging(video, reference, monkeypatch):
    monkeypatch.setattr(sources, "_camera_exists", lambda index: True)
    monkeypatch.setattr(WebcamSource, "_open_capture", lambda self: FlakyCapture(video))
    source = WebcamSource(3)
    source.retry_delay_s = 0.001
    assert source.live
    frames, buffer = run_to_end(source)
    # The warm-up read in start() takes frame 0; two failed reads lose nothing; the file's end
    # looks like an unplugged camera: max_failed_reads failures in a row.
    assert len(frames) == N_FRAMES - 1
    for got, want in zip(frames, reference[1:]):
        np.testing.assert_array_equal(got.image, want.image)
    assert np.all(np.diff(times(frames)) > 0) and frames[0].timestamp >= 0
    assert isinstance(source.error, SourceReadError) and buffer.error is source.error
    assert "camera 3 stopped delivering frames" in str(source.error)


def test_camera_that_opens_but_gives_no_frames(monkeypatch):
    dead = _DeadCapture()
    monkeypatch.setattr(sources, "_camera_exists", lambda index: True)
    monkeypatch.setattr(WebcamSource, "_open_capture", lambda self: dead)
    source = WebcamSource(0, width=640, height=480, fps=30)
    with pytest.raises(SourceOpenError, match="camera 0 opened but gives no frames"):
        source.start(RingBuffer(4))
    assert dead.released and not source.running
    assert dead.settings == {cv2.CAP_PROP_FRAME_WIDTH: 640, cv2.CAP_PROP_FRAME_HEIGHT: 480, cv2.CAP_PROP_FPS: 30}


class _DeadCapture:
    """Opens, accepts settings, never delivers a frame (a camera held by another app)."""

    def __init__(self):
        self.released, self.settings = False, {}

    def isOpened(self):
        return True

    def set(self, prop, value):
        self.settings[prop] = value
        return True

    def read(self):
        return False, None

    def release(self):
        self.released = True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /dev and /sys (Linux only)")
def test_list_webcams_reads_dev_and_sysfs(tmp_path, monkeypatch):
    dev, sysfs = tmp_path / "dev", tmp_path / "sys"
    for n in (0, 1, 3, 12):
        (dev / f"video{n}").parent.mkdir(exist_ok=True)
        (dev / f"video{n}").touch()
        (sysfs / f"video{n}").mkdir(parents=True)
    (dev / "videodev").touch()  # not a numbered node
    (sysfs / "video0" / "name").write_text("Integrated Camera: Integrated C\n")
    (sysfs / "video0" / "index").write_text("0\n")
    (sysfs / "video1" / "index").write_text("1\n")  # the metadata node of the same camera
    monkeypatch.setattr(sources, "_DEV_DIR", dev)
    monkeypatch.setattr(sources, "_V4L_SYS_DIR", sysfs)
    assert list_webcams(max_index=8) == [(0, "Integrated Camera: Integrated C"), (3, "Camera 3")]


# -- screen -----------------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY only matters on X11")
def test_screen_without_display_fails_fast_with_a_fix(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    began = time.monotonic()
    with pytest.raises(SourceOpenError, match="no display to capture: run inside a desktop session or set DISPLAY"):
        ScreenSource().start(RingBuffer(4))
    assert time.monotonic() - began < 2.0
    assert list_monitors() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY only matters on X11")
def test_screen_with_a_dead_display_fails_with_the_same_fix(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":987")  # nothing listens there
    began = time.monotonic()
    with pytest.raises(SourceOpenError, match="no display to capture"):
        ScreenSource().start(RingBuffer(4))
    assert time.monotonic() - began < 2.0


def test_screen_converts_bgra_to_rgb_and_offsets_the_region(monkeypatch):
    screen = FakeScreen()
    monkeypatch.setattr(sources, "_new_mss", lambda: screen)
    source, buffer = ScreenSource(monitor=2, region=(10, 20, 30, 40), fps=50), RingBuffer(4)
    with source:
        source.start(buffer)
        assert buffer.wait(timeout=5.0)
        image = buffer.latest().image
    assert image.shape == (40, 30, 3) and np.all(image == (3, 2, 1))
    assert screen.boxes[0] == {"left": 210, "top": 20, "width": 30, "height": 40}  # region is monitor-relative


def test_a_screen_region_too_thin_for_the_model_is_refused_when_checked(monkeypatch):
    """--screen 0,0,640,2 loaded the model, then failed on the engine thread with a traceback."""
    monkeypatch.setattr(sources, "_new_mss", FakeScreen)
    for region in ((0, 0, 400, 1), (0, 0, 201, 1)):  # monitor 0 of the fake is 400x200
        with pytest.raises(SourceOpenError, match="up to 200:1; choose a region of a less extreme shape"):
            ScreenSource(monitor=0, region=region).check()
    ScreenSource(monitor=0, region=(0, 0, 200, 1)).check()  # 200:1 is still a frame the model takes


def test_screen_grab_failures_end_the_stream_with_a_read_error(monkeypatch):
    screen = FakeScreen(works_for=3)  # the open-time check grab, then two frames, then failures
    monkeypatch.setattr(sources, "_new_mss", lambda: screen)
    source = ScreenSource(monitor=0, fps=200)
    source.retry_delay_s = 0.001
    frames, buffer = run_to_end(source)
    assert len(frames) == 2 and frames[0].image.shape == (200, 400, 3)
    assert isinstance(source.error, SourceReadError) and buffer.error is source.error
    assert "screen 0 stopped delivering frames" in str(source.error)
    assert len(screen.boxes) == 3 + source.max_failed_reads


def test_a_live_source_with_a_duration_ends_there_as_a_file_ends(monkeypatch):
    monkeypatch.setattr(sources, "_new_mss", lambda: FakeScreen())
    frames, buffer = run_to_end(ScreenSource(monitor=1, fps=50, duration=0.2))
    assert frames and max(times(frames)) < 0.2
    assert buffer.closed and buffer.error is None


def test_check_opens_and_lets_go_of_the_camera(monkeypatch):
    camera = FakeCamera()
    monkeypatch.setattr(sources, "_camera_exists", lambda index: True)
    monkeypatch.setattr(WebcamSource, "_open_capture", lambda self: camera)
    source = WebcamSource(2)
    source.check()
    assert camera.released and not source.running


@pytest.mark.parametrize("kwargs", [dict(fps=0), dict(region=(0, 0, 0, 10))])
def test_screen_source_rejects_bad_options(kwargs):
    with pytest.raises(SourceOpenError):
        ScreenSource(**kwargs)


@pytest.fixture(scope="module")
def xvfb_display():
    """A private Xvfb (320x240); -displayfd tells us its number once it accepts connections;
    -noreset: by default the server resets when its last client leaves, refusing new ones meanwhile."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb not installed (apt package xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "320x240x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 10.0)
        number = os.read(read_fd, 16).decode().strip() if ready else ""
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_fd)
        proc.terminate()
        proc.wait(timeout=5)


def test_screen_capture_on_xvfb(xvfb_display, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb_display)
    monitors = list_monitors()
    assert [m["index"] for m in monitors] == [0, 1]
    assert (monitors[1]["width"], monitors[1]["height"]) == (320, 240)
    source, buffer = ScreenSource(monitor=1, fps=20), RingBuffer(4)
    with source:
        source.start(buffer)
        assert buffer.wait(timeout=5.0)
        first = buffer.latest()
        assert buffer.wait(timeout=5.0, newer_than=first.timestamp)
        second = buffer.latest()
    assert not source.running and source.error is None
    assert first.image.shape == (240, 320, 3) and second.timestamp > first.timestamp >= 0


def test_screen_region_on_xvfb(xvfb_display, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb_display)
    source, buffer = ScreenSource(monitor=1, region=(10, 20, 100, 50), fps=20), RingBuffer(4)
    with source:
        source.start(buffer)
        assert buffer.wait(timeout=5.0)
        assert buffer.latest().image.shape == (50, 100, 3)
    with pytest.raises(SourceOpenError, match="outside monitor 1"):
        ScreenSource(monitor=1, region=(300, 0, 100, 50)).start(RingBuffer(4))
    with pytest.raises(SourceOpenError, match="no monitor 5"):
        ScreenSource(monitor=5).start(RingBuffer(4))


# A source left running when the program exits: its capture thread must be stopped and joined
# before the interpreter finalizes (a daemon thread torn down inside OpenCV aborts the process).
EXIT_WITH_A_RUNNING_SOURCE = """
import atexit, sys, threading

def report():  # registered first, so it runs after the engine's own exit hooks
    alive = [t.name for t in threading.enumerate() if t.name.startswith("source:")]
    print(f"capture threads alive at exit: {len(alive)}", flush=True)

atexit.register(report)
from engine.capture.frames import RingBuffer
from engine.capture.sources import FileSource

buffer = RingBuffer(64)
FileSource(sys.argv[1], realtime=True).start(buffer)  # paced: still capturing when the program ends
buffer.wait(timeout=60)  # the first frame has arrived
sys.exit(130)
"""


def test_a_source_still_running_at_exit_is_joined_and_the_exit_status_kept(tmp_path):
    video = write_video(tmp_path / "long.mp4", seconds=6, fps=10)
    proc = subprocess.run([sys.executable, "-c", EXIT_WITH_A_RUNNING_SOURCE, str(video)], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent)))
    assert proc.returncode == 130, proc.stderr
    assert "capture threads alive at exit: 0" in proc.stdout, (proc.stdout, proc.stderr)
