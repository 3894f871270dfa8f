"""`livecc-desktop`: open the main window (optionally playing a video file at once)."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication

from desktop_app.about import version
from desktop_app.collector import collect_on_gui_thread
from desktop_app.controller import join_stragglers
from desktop_app.main_window import MainWindow
from desktop_app.theme import apply_theme
from engine import flags
from engine.model import quiet_third_parties

ORGANIZATION = "LiveCC"
APPLICATION = "LiveCC Desktop"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="livecc-desktop", description="Real-time video commentary with LiveCC.")
    parser.add_argument("video", nargs="?", help="a video file to play and narrate at once")
    model = flags.get("LIVECC_MODEL") if flags.is_set("LIVECC_MODEL") else None  # else: the one in Settings
    parser.add_argument("--model", default=model,
                        help="model id or local folder for this run (default: the one in Settings; "
                             "env LIVECC_MODEL)")
    parser.add_argument("--settings", type=Path, default=flags.get("LIVECC_DESKTOP_SETTINGS"),
                        help="keep settings in this INI file instead of the system's place")
    parser.add_argument("--sessions-dir", type=Path, help="where session JSONL files go")
    parser.add_argument("--version", action="version", version=f"livecc-desktop {version()}")
    return parser.parse_args(argv)


def missing_display() -> str | None:
    """Qt aborts the process when it cannot reach a display; say what to do instead."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("WAYLAND_DISPLAY"):
        return None
    display = os.environ.get("DISPLAY")
    if display:
        if x_display_reachable(display):
            return None
        return (f"cannot reach the X display {display!r} (DISPLAY is stale, or the X server is gone): run "
                "livecc-desktop inside a running desktop session or fix DISPLAY")
    return ("no display to open a window on: run livecc-desktop inside a desktop session (or set DISPLAY); "
            "for headless narration use `livecc narrate VIDEO`")


def x_display_reachable(display: str) -> bool:
    """Qt aborts (exit 134) on an X display it cannot open; try it first with libxcb, as Qt would.
    True when libxcb is not there to ask (Qt then reports for itself)."""
    try:
        xcb = ctypes.CDLL(ctypes.util.find_library("xcb") or "libxcb.so.1")
    except OSError:
        return True
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    try:
        return xcb.xcb_connection_has_error(connection) == 0
    finally:
        xcb.xcb_disconnect(connection)


def create_application(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APPLICATION)
    apply_theme(app)
    return app


def _close_on_signals(window: MainWindow) -> None:
    """Ctrl+C / SIGTERM in a terminal close the window cleanly (threads joined, log closed)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    timer = QTimer(window)  # Python runs signal handlers only when the interpreter gets control
    timer.timeout.connect(lambda: None)
    timer.start(200)


def bad_settings() -> str | None:
    """A bad LIVECC_* value, in one line (unknown names are only logged)."""
    try:
        for warning in flags.check_environment():
            print(f"livecc-desktop: warning: {warning}", file=sys.stderr)
    except flags.FlagError as error:
        return str(error)
    return None


def main(argv: list[str] | None = None) -> int:
    if problem := bad_settings():  # before argparse reads the defaults from the same variables
        print(f"livecc-desktop: error: {problem}", file=sys.stderr)
        _show_error(problem)
        return 2
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if problem := missing_display():
        print(f"livecc-desktop: error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    quiet_third_parties()  # as the CLI: no transformers FutureWarning in the terminal
    app = create_application()
    collect_on_gui_thread(app)  # a cycle holding a Qt object is never freed on a worker thread
    store = QSettings(str(args.settings), QSettings.IniFormat) if args.settings else QSettings()
    window = MainWindow(store, model_override=args.model, sessions_dir=args.sessions_dir)
    window.show()
    _close_on_signals(window)
    if args.video:
        window.open_file(args.video)
    code = app.exec()
    join_stragglers(5.0)
    return code


def _show_error(problem: str) -> None:
    """The same line in a dialog, where a display can be reached (the app may have been started from a menu)."""
    if missing_display():
        return
    from PySide6.QtWidgets import QMessageBox

    create_application()
    QMessageBox.critical(None, "LiveCC Desktop", f"LiveCC Desktop cannot start: {problem}. Fix or unset it, "
                         "then start the app again.")


def fast_exit(code: int) -> None:
    """Leave without the interpreter's teardown: settings are synced, session files closed and
    threads joined by now, and tearing down torch, transformers and Qt objects takes seconds.
    LIVECC_CLEAN_EXIT=1 runs the normal teardown."""
    if flags.get("LIVECC_CLEAN_EXIT"):
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run() -> None:
    """The `livecc-desktop` entry point."""
    fast_exit(main())


if __name__ == "__main__":
    run()
