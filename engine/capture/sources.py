"""Video sources: a video file, a webcam, or the screen, each captured on its own daemon thread
into a `RingBuffer` of timestamped RGB frames (lerobot-camera style: open synchronously with a
typed error, read on a thread, tolerate a few failed reads, join with a timeout on stop)."""

from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import cv2
import numpy as np

from engine.defaults import MAX_ASPECT_RATIO
from engine.errors import SourceError, SourceOpenError, SourceReadError

from .files import path_problem
from .frames import Frame, RingBuffer
from .sampler import Ticks

# Frames whose timestamps differ by less than this are "the same time" (tick and end matching).
_TIME_EPS = 1e-4
# Blocking puts wake this often to notice stop() (the buffer's condition cannot see our event).
_PUT_POLL_S = 0.1
# Used for timestamps when a container reports no frame rate.
_DEFAULT_FPS = 30.0
# Where Linux lists cameras (module-level so tests can point them at a fake tree).
_DEV_DIR = Path("/dev")
_V4L_SYS_DIR = Path("/sys/class/video4linux")


# How long the interpreter's exit waits for each capture thread to finish its current read.
_EXIT_JOIN_S = 5.0
_RUNNING: weakref.WeakSet[VideoSource] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    """Capture threads are daemons (a hung camera must not keep the process alive), but one still
    inside OpenCV when the interpreter finalizes aborts it ("FATAL: exception not rethrown",
    SIGABRT instead of the exit status): stop and join every running source first."""
    for source in list(_RUNNING):
        source.stop(timeout=_EXIT_JOIN_S)


class _EndOfStream(Exception):
    """Raised by `_read()` when a finite source has no more frames."""


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------
class VideoSource(ABC):
    """A frame producer. `start(buffer)` opens it (raising `SourceOpenError`) and starts a daemon
    thread that puts `Frame`s into `buffer`; when capture ends for any reason (end of file,
    `duration` seconds of capture, `stop()`, or `max_failed_reads` consecutive failed reads) the
    thread closes the buffer,
    passing the `SourceReadError` if there was one."""

    live: bool = True
    max_failed_reads: int = 5
    retry_delay_s: float = 0.05

    def __init__(self, duration: float | None = None) -> None:
        self.duration = duration  # a live source ends after this many seconds, as a file ends (None: at stop())
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._buffer: RingBuffer | None = None
        self._error: SourceError | None = None
        self._t0 = 0.0  # time.monotonic() when capture started

    # -- subclass hooks ------------------------------------------------------------------
    @abstractmethod
    def describe(self) -> str:
        """A short human name, e.g. 'camera 0' (used in the window title and logs)."""

    @abstractmethod
    def _open(self) -> None:
        """Acquire the device/file on the caller's thread; raise SourceOpenError naming the fix."""

    @abstractmethod
    def _read(self) -> Frame | None:
        """The next frame, None for a failed read, or raise `_EndOfStream`. Runs on the thread."""

    @abstractmethod
    def _release(self) -> None:
        """Free the device/file. Runs on the capture thread when it ends."""

    def _read_error(self) -> SourceReadError:
        return SourceReadError(
            f"{self.describe()} stopped delivering frames: check that it is still connected, then restart it"
        )

    def _finish(self) -> None:
        """Called at a clean end of stream; a subclass may raise SourceReadError (truncated file)."""

    # -- public API ----------------------------------------------------------------------
    def check(self) -> None:
        """Open and let go at once: a missing device raises SourceOpenError now, before a slow model load."""
        self._open()
        self._release()

    def start(self, buffer: RingBuffer) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self.describe()} is already running")
        self._open()
        self._buffer, self._error = buffer, None
        self._stop_event.clear()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"source: {self.describe()}", daemon=True)
        _RUNNING.add(self)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Signal the capture thread and join it; True when it has ended within `timeout`."""
        self._stop_event.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def error(self) -> SourceError | None:
        return self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- capture thread ------------------------------------------------------------------
    def _run(self) -> None:
        assert self._buffer is not None
        failure: BaseException | None = None
        try:
            self._capture_loop()
        except SourceError as exc:
            failure = exc
        except BaseException as exc:  # a bug: the consumer gets it too, the thread hook logs the traceback
            failure = exc
            raise
        finally:
            try:
                self._release()
            finally:
                self._error = failure if isinstance(failure, SourceError) else None
                self._buffer.close(failure)

    def _capture_loop(self) -> None:
        failures = 0
        while not self._stop_event.is_set():
            try:
                frame = self._read()
            except _EndOfStream:
                self._finish()
                return
            if frame is None:
                failures += 1
                if failures >= self.max_failed_reads:
                    raise self._read_error()
                self._stop_event.wait(self.retry_delay_s)  # give a flaky device a moment
                continue
            failures = 0
            if self.duration is not None and frame.timestamp >= self.duration:
                return
            self._deliver(frame)

    def _deliver(self, frame: Frame) -> None:
        assert self._buffer is not None
        if self.live:
            self._buffer.put(frame)  # live: newest wins, the buffer drops and counts the oldest
            return
        while not self._stop_event.is_set():
            if self._buffer.put(frame, block=True, timeout=_PUT_POLL_S):
                return
            if self._buffer.closed:  # the consumer closed the stream: nothing more to deliver
                self._stop_event.set()
            if self._superseded():
                return

    def _superseded(self) -> bool:
        """True when the frame waiting for room no longer matters (a file source has a seek pending)."""
        return False

    def _elapsed(self) -> float:
        return time.monotonic() - self._t0

    def _sleep_until(self, elapsed: float) -> bool:
        """Sleep until `elapsed` seconds after start; False when stop() came first."""
        return not self._stop_event.wait(max(0.0, elapsed - self._elapsed()))


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoInfo:
    """What a video file says about itself. fps, frame_count and duration are 0 when unknown."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    duration: float


def _finite_positive(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 0.0


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs a WARN for every open that fails; we raise a clearer error instead."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _open_capture(path: Path) -> cv2.VideoCapture:
    with _quiet_opencv():
        return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open a video file, decode its first frame and report its size, rate and length.
    Raises SourceOpenError for a missing path (code "missing"), a directory ("folder"), a non-video
    or a corrupt file."""
    path = Path(path)
    problem = path_problem(path)  # before exists(): it raises on a name too long, and a FIFO would block
    if problem:
        raise SourceOpenError(f"{path} {problem}")
    if not path.exists():
        raise SourceOpenError(f"video file not found: {path}", "check the path", code="missing")
    if path.is_dir():
        raise SourceOpenError(f"{path} is a directory, not a video file", "choose a video file inside it", code="folder")
    if not os.access(path, os.R_OK):
        raise SourceOpenError(f"cannot read {path}: check its permissions")
    cap = _open_capture(path)
    try:
        if not cap.isOpened():
            raise SourceOpenError(
                f"cannot open {path} as a video (not a video, or truncated/corrupt): re-download it or convert it to mp4"
            )
        ok, image = cap.read()
        if not ok or image is None:
            raise SourceOpenError(f"{path} has no decodable frames (truncated or corrupt): re-download or re-encode it")
        fps = _finite_positive(cap.get(cv2.CAP_PROP_FPS))
        count = int(_finite_positive(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        duration = count / fps if fps and count else 0.0
        return VideoInfo(path, image.shape[1], image.shape[0], fps, count, duration)
    finally:
        cap.release()


def file_timestamp(pos_msec: float, previous: float | None, fps: float) -> float:
    """A frame's time in seconds: the container's position when it gives one that moves forward,
    otherwise one frame period after the previous frame (or 0 for the first)."""
    t = pos_msec / 1000.0
    if math.isfinite(t) and (previous is None or t > previous) and (t > 0 or previous is None):
        return t
    return 0.0 if previous is None else previous + 1.0 / fps


class FileSource(VideoSource):
    """Frames of a video file with the file's own timestamps (seconds into the file).

    realtime=False: as fast as the consumer takes them, no frame lost (blocking puts).
    realtime=True: paced to the wall clock like a live source (non-blocking puts).
    start/end: seconds into the file (end inclusive). sample_fps: keep only the frame on screen at
    each 1/sample_fps tick; skipped frames are grabbed but never converted.
    transform: applied to each kept (H, W, 3) uint8 frame before it enters the buffer (the CLI
    downscales to the model's size there, so a 4K file never fills the buffer with 4K frames).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        realtime: bool = False,
        start: float = 0.0,
        end: float | None = None,
        sample_fps: float | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        if start < 0:
            raise SourceOpenError(f"start must be >= 0 seconds, got {start}: pass a time inside the video")
        if end is not None and end < start:
            raise SourceOpenError(f"end ({end} s) is before start ({start} s): pass a later end time")
        if sample_fps is not None and not sample_fps > 0:
            raise SourceOpenError(f"sample_fps must be > 0, got {sample_fps}: pass e.g. 2")
        self.path = Path(path)
        self.realtime = realtime
        self.live = realtime
        self.start_s = start
        self.end_s = end
        self.sample_fps = sample_fps
        self.transform = transform
        self.info: VideoInfo | None = None
        self._cap: cv2.VideoCapture | None = None
        self._prev_t: float | None = None
        self._ticks = Ticks(sample_fps, start, _TIME_EPS)
        self._control = threading.Condition()  # pause, resume and seek requests from other threads
        self._paused_at: float | None = None  # time.monotonic() when paused; None while playing
        self._seek_to: tuple[float, threading.Event] | None = None

    def describe(self) -> str:
        return f"video file {self.path.name}"

    # -- player controls (any thread) -------------------------------------------------------
    def pause(self) -> None:
        """Hold capture: no frame is read until resume(); frame times stay the file's own."""
        with self._control:
            if self._paused_at is None:
                self._paused_at = time.monotonic()

    def resume(self) -> None:
        with self._control:
            if self._paused_at is not None:
                self._t0 += time.monotonic() - self._paused_at  # real-time pacing skips the pause
                self._paused_at = None
                self._control.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def seek(self, seconds: float, timeout: float = 2.0) -> bool:
        """Continue from `seconds` into the file: the capture thread moves there and empties the
        buffer of older frames. True once done (False when capture has ended or is too slow)."""
        done = threading.Event()
        with self._control:
            self._seek_to = (max(0.0, float(seconds)), done)
            self._control.notify_all()
        return self.running and done.wait(timeout)

    def _superseded(self) -> bool:
        return self._seek_to is not None

    def _hold(self) -> None:
        """Capture thread: apply a pending seek, then wait while paused (stop() ends the wait)."""
        with self._control:
            while True:
                if self._seek_to is not None:
                    self._apply_seek(*self._seek_to)
                    self._seek_to = None
                if self._paused_at is None or self._stop_event.is_set():
                    return
                self._control.wait(_PUT_POLL_S)

    def _apply_seek(self, seconds: float, done: threading.Event) -> None:
        assert self._cap is not None and self._buffer is not None
        self._cap.set(cv2.CAP_PROP_POS_MSEC, seconds * 1000.0)  # frames before it are skipped by _wanted
        self._prev_t = None
        self._ticks.restart(seconds, origin=self.start_s)
        now = time.monotonic()
        self._t0 = now - (seconds - self.start_s)  # real time restarts at the new position
        if self._paused_at is not None:
            self._paused_at = now
        self._buffer.clear()  # frames of the old position must not reach the engine
        done.set()

    def _open(self) -> None:
        info = probe_video(self.path)
        if info.duration and self.start_s >= info.duration:
            raise SourceOpenError(
                f"start {self.start_s:.1f} s is past the end of {self.path} ({info.duration:.1f} s): choose an earlier start"
            )
        cap = _open_capture(self.path)
        if not cap.isOpened():  # probe_video just opened it: the file changed under us
            cap.release()
            raise SourceOpenError(f"cannot open {self.path} as a video: re-download it or convert it to mp4")
        if self.start_s > 0:
            cap.set(cv2.CAP_PROP_POS_MSEC, self.start_s * 1000.0)  # frames before start are still skipped below
        self.info, self._cap = info, cap
        self._prev_t = None
        self._ticks.restart(self.start_s)

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _read(self) -> Frame | None:
        assert self._cap is not None and self.info is not None
        self._hold()
        while True:
            if not self._cap.grab():
                raise _EndOfStream
            t = file_timestamp(self._cap.get(cv2.CAP_PROP_POS_MSEC), self._prev_t, self.info.fps or _DEFAULT_FPS)
            self._prev_t = t
            if self.end_s is not None and t > self.end_s + _TIME_EPS:
                raise _EndOfStream
            if self._wanted(t):
                break
        bgr = self._retrieve()
        if bgr is None:
            return None
        if self.transform is not None:
            bgr = self.transform(bgr)  # per channel, so BGR is fine; smaller before the colour conversion
        if self.realtime and not self._sleep_until(t - self.start_s):
            return None  # stop() during the wait: the loop sees the stop flag
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t, self._period())

    def _retrieve(self) -> np.ndarray | None:
        """The grabbed frame's image. A failed retrieve is tried again on the same grabbed frame
        (a file must lose no frame: a failed read would move on to the next one), up to
        max_failed_reads times; None after that."""
        for _ in range(self.max_failed_reads):
            ok, bgr = self._cap.retrieve()
            if ok and bgr is not None:
                return bgr
            if self._stop_event.wait(self.retry_delay_s):
                break
        return None

    def _period(self) -> float:
        """One frame's time on screen, from the container's rate."""
        return 1.0 / ((self.info.fps if self.info else 0.0) or _DEFAULT_FPS)

    def _wanted(self, t: float) -> bool:
        """Start/sample_fps filter. With sample_fps each tick takes the frame on screen at it: the
        first whose end (its start plus one frame period) reaches the tick, as LiveCC's livecc-utils
        matches targets against frame end times. Without it, every frame from the start on."""
        return self._ticks.keeps(t + self._period() if self.sample_fps else t)

    def _read_error(self) -> SourceReadError:
        where = f" after {self._prev_t:.1f} s" if self._prev_t is not None else ""
        return SourceReadError(
            f"{self.describe()} stopped delivering frames{where}: the file may be corrupt; re-download or re-encode it"
        )

    def _finish(self) -> None:
        # A read that fails well before the container's stated length is a truncated file, not an end.
        info = self.info
        if info is None or not info.duration or self._prev_t is None:
            return
        if self.end_s is None and self._prev_t + 2.0 / (info.fps or _DEFAULT_FPS) < 0.9 * info.duration:
            raise SourceReadError(
                f"{self.path} ends at {self._prev_t:.1f} s of {info.duration:.1f} s (truncated or corrupt): "
                "re-download or re-encode it"
            )


# ---------------------------------------------------------------------------------------------
# Webcams
# ---------------------------------------------------------------------------------------------
def _is_linux() -> bool:
    return sys.platform.startswith("linux")


def _camera_exists(index: int) -> bool:
    """On Linux a camera is a /dev/videoN node; elsewhere we cannot tell without opening it."""
    return not _is_linux() or (_DEV_DIR / f"video{index}").exists()


def _camera_name(index: int) -> str:
    name_file = _V4L_SYS_DIR / f"video{index}" / "name"
    try:
        return name_file.read_text().strip() or f"Camera {index}"
    except OSError:
        return f"Camera {index}"


def _is_capture_node(index: int) -> bool:
    """UVC cameras expose a second /dev/video node for metadata; its sysfs `index` is not 0."""
    try:
        return (_V4L_SYS_DIR / f"video{index}" / "index").read_text().strip() in ("", "0")
    except OSError:
        return True


def list_webcams(max_index: int = 8) -> list[tuple[int, str]]:
    """(index, name) of the cameras with index < max_index. Linux reads /dev and /sys only;
    other systems try to open each index."""
    if _is_linux():
        found = []
        for node in _DEV_DIR.glob("video*"):
            suffix = node.name[len("video"):]
            if suffix.isdigit() and int(suffix) < max_index and _is_capture_node(int(suffix)):
                found.append((int(suffix), _camera_name(int(suffix))))
        return sorted(found)
    cams = []
    with _quiet_opencv():
        for index in range(max_index):
            cap = cv2.VideoCapture(index)
            if cap.isOpened():
                cams.append((index, f"Camera {index}"))
            cap.release()
    return cams


class WebcamSource(VideoSource):
    """An OpenCV camera by index; timestamps are seconds since start(). Live: drops the oldest."""

    live = True

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None,
                 fps: float | None = None, duration: float | None = None):
        super().__init__(duration)
        self.index, self.width, self.height, self.fps = index, width, height, fps
        self._cap: cv2.VideoCapture | None = None

    def describe(self) -> str:
        return f"camera {self.index}"

    def _open_capture(self) -> cv2.VideoCapture:
        # V4L2 directly: CAP_ANY would try GStreamer and others first, slowly and noisily.
        return cv2.VideoCapture(self.index, cv2.CAP_V4L2 if _is_linux() else cv2.CAP_ANY)

    def _open(self) -> None:
        missing = SourceOpenError(f"no camera at index {self.index}: connect one or choose another source")
        if not _camera_exists(self.index):
            raise missing
        with _quiet_opencv():
            cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            raise missing
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                            (cv2.CAP_PROP_FPS, self.fps)):
            if value:
                cap.set(prop, value)
        ok, _ = cap.read()  # a camera that opens but gives no frame is busy or broken
        if not ok:
            cap.release()
            raise SourceOpenError(
                f"camera {self.index} opened but gives no frames: close other apps using it or choose another source"
            )
        self._cap = cap

    def _read(self) -> Frame | None:
        assert self._cap is not None
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            return None
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self._elapsed())

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# ---------------------------------------------------------------------------------------------
# Screen
# ---------------------------------------------------------------------------------------------
_NO_DISPLAY = "no display to capture: run inside a desktop session or set DISPLAY"


def _new_mss() -> Any:
    """An mss instance (imported lazily: it loads X11 libraries). Raises SourceOpenError."""
    if _is_linux() and not os.environ.get("DISPLAY"):
        raise SourceOpenError(_NO_DISPLAY)
    import mss

    factory = getattr(mss, "MSS", None) or mss.mss  # mss >= 10.2 deprecates mss.mss()
    try:
        return factory()
    except mss.ScreenShotError as exc:
        raise SourceOpenError(f"{_NO_DISPLAY} ({exc})") from exc


def list_monitors() -> list[dict]:
    """mss monitors as dicts (index, left, top, width, height); index 0 spans all of them.
    Empty when there is no display."""
    try:
        sct = _new_mss()
    except SourceOpenError:
        return []
    with sct:
        return [{"index": i, **{k: m[k] for k in ("left", "top", "width", "height")}} for i, m in enumerate(sct.monitors)]


class ScreenSource(VideoSource):
    """A monitor (1-based as in mss; 0 = all monitors) or a region of it, grabbed `fps` times a
    second. region = (left, top, width, height) relative to the monitor. Live: drops the oldest."""

    live = True

    def __init__(self, monitor: int = 1, region: tuple[int, int, int, int] | None = None, fps: float = 10.0,
                 duration: float | None = None):
        super().__init__(duration)
        if not fps > 0:
            raise SourceOpenError(f"screen capture fps must be > 0, got {fps}: pass e.g. 10")
        if region is not None and (region[2] <= 0 or region[3] <= 0):
            raise SourceOpenError(f"screen region {region} is empty: give a positive width and height")
        self.monitor, self.region, self.fps = monitor, region, fps
        self._box: dict[str, int] | None = None
        self._sct: Any = None
        self._grabs = 0

    def describe(self) -> str:
        return f"screen {self.monitor}" + (f" region {self.region}" if self.region else "")

    def _open(self) -> None:
        sct = _new_mss()
        try:
            monitors = sct.monitors
            if not 0 <= self.monitor < len(monitors):
                raise SourceOpenError(
                    f"no monitor {self.monitor}: choose one of 0..{len(monitors) - 1} (0 = all monitors)"
                )
            self._box = self._capture_box(monitors[self.monitor])
            self._grab(sct)  # fail now, on the caller's thread, if grabbing does not work
        finally:
            sct.close()  # the capture thread opens its own: X connections are not shared across threads
        self._grabs = 0

    def _capture_box(self, mon: dict) -> dict[str, int]:
        if self.region is None:
            return {k: mon[k] for k in ("left", "top", "width", "height")}
        left, top, width, height = self.region
        if left < 0 or top < 0 or left + width > mon["width"] or top + height > mon["height"]:
            raise SourceOpenError(
                f"screen region {self.region} is outside monitor {self.monitor} ({mon['width']}x{mon['height']}): "
                "choose a region inside it"
            )
        if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
            raise SourceOpenError(f"screen region {self.region} is {width}x{height}: Qwen2-VL takes frames up to "
                                  f"{MAX_ASPECT_RATIO}:1; choose a region of a less extreme shape")
        return {"left": mon["left"] + left, "top": mon["top"] + top, "width": width, "height": height}

    def _grab(self, sct: Any) -> np.ndarray:
        import mss

        try:
            shot = sct.grab(self._box)
        except mss.ScreenShotError as exc:
            raise SourceOpenError(f"cannot capture {self.describe()} ({exc}): {_NO_DISPLAY}") from exc
        return cv2.cvtColor(np.asarray(shot), cv2.COLOR_BGRA2RGB)

    def _read(self) -> Frame | None:
        if self._sct is None:
            self._sct = _new_mss()
        # Pace to ticks of 1/fps; after a slow grab, skip the missed ticks instead of bursting.
        tick = max(self._grabs, math.ceil(self._elapsed() * self.fps - _TIME_EPS))
        if not self._sleep_until(tick / self.fps):
            return None
        self._grabs = tick + 1
        try:
            image = self._grab(self._sct)
        except SourceOpenError:
            return None  # counted as a failed read; enough of them end the stream with SourceReadError
        return Frame(image, self._elapsed())

    def _read_error(self) -> SourceReadError:
        return SourceReadError(
            f"{self.describe()} stopped delivering frames: check that the desktop session is still running, then restart it"
        )

    def _release(self) -> None:
        if self._sct is not None:
            self._sct.close()
            self._sct = None
