"""Screen capture for real: an Xvfb display with a moving picture on it, captured with mss by
the app's screen source. The test starts Xvfb itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from PySide6.QtCore import QSettings

from desktop_app.main import create_application
from desktop_app.main_window import MainWindow
from desktop_app.source_picker import SourceSpec

WAIT_MS = 90_000

# A window on the Xvfb screen that keeps changing, so captured frames differ in time.
PAINTER = textwrap.dedent("""
    import sys
    from PySide6.QtCore import QTimer, Qt
    from PySide6.QtGui import QColor, QPainter
    from PySide6.QtWidgets import QApplication, QWidget

    class Shapes(QWidget):
        t = 0
        def paintEvent(self, _):
            p = QPainter(self)
            p.fillRect(self.rect(), QColor(30, 90 + self.t % 100, 160))
            p.setBrush(QColor(240, 60, 60))
            p.drawEllipse(40 + (self.t * 7) % 400, 120, 120, 120)
            p.end()
        def tick(self):
            self.t += 1
            self.update()

    app = QApplication(sys.argv)
    w = Shapes()
    w.setWindowFlag(Qt.FramelessWindowHint)
    w.setGeometry(0, 0, 640, 480)
    w.show()
    timer = QTimer(); timer.timeout.connect(w.tick); timer.start(50)
    print("ready", flush=True)
    app.exec()
""")


@pytest.fixture
def xvfb_display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb; `make test` installs it as root)")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()  # Xvfb writes its display number once it accepts clients
    if not number:
        server.kill()
        pytest.skip("Xvfb did not start on this machine")
    display = f":{number}"
    env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    painter = subprocess.Popen([sys.executable, "-c", PAINTER], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert painter.stdout.readline().strip() == "ready", "the test picture could not open on Xvfb"
        yield display
    finally:
        for proc in (painter, server):
            proc.terminate()
            proc.wait(timeout=10)


def test_screen_source_under_xvfb(qapp, qtbot, tmp_path, tiny_model_dir, xvfb_display, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb_display)
    create_application()
    store = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    window = MainWindow(store, model_override=str(tiny_model_dir), sessions_dir=tmp_path / "sessions")
    qtbot.addWidget(window)
    window.show()

    def screens():
        return [window.picker.combo.itemData(i) for i in range(window.picker.combo.count())
                if isinstance(window.picker.combo.itemData(i), SourceSpec)
                and window.picker.combo.itemData(i).kind == "screen"]

    qtbot.waitUntil(lambda: len(screens()) == 1, timeout=WAIT_MS)  # the device probe found the monitor
    assert screens()[0].label == "Screen 1 (640×480)"
    window.picker.set_region((40, 40, 320, 240))
    spec = window.picker.current_spec() if window.picker.current_spec().kind == "screen" else screens()[0]
    assert spec.region == (40, 40, 320, 240)
    window.start_source(spec)
    qtbot.waitUntil(lambda: window.video_view.frames_shown >= 5, timeout=WAIT_MS)
    _, frame = window.run.buffer.preview()
    assert frame.image.shape == (240, 320, 3)
    assert frame.image.std() > 10  # the picture, not a black screen
    qtbot.waitUntil(lambda: any(e.kind == "commentary" for e in window.transcript.entries), timeout=WAIT_MS)
    window.close()
    assert window.run is None
