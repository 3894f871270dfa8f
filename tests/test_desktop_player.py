"""The app as a player (issue 15): each trap a new user fell into, and the player features, offscreen
with the real engine and the tiny model. Screenshots for docs/desktop.md come from here
(LIVECC_UPDATE_SCREENSHOT=1 copies them into resources/)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QSettings, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QApplication, QLineEdit, QMessageBox, QToolButton

from desktop_app.main_window import MainWindow
from desktop_app.region_picker import RegionDialog
from desktop_app.settings import AppSettings
from desktop_app.settings_dialog import SettingsDialog
from desktop_app.video_view import VideoView
from livecc.cli.main import main as livecc
from engine import flags
from engine.session.events import Answer, Commentary
from engine.session.session import StreamingSession
from test_desktop_app import (RESOURCES, WAIT_MS, app, close_and_check, commentary, grab_array,  # noqa: F401
                              make_window, seek_and_comment, short_answers)
from videos import write_video

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("player")
    return {"long": write_video(folder / "match.mp4", seconds=30, fps=10, width=320, height=180),
            "short": write_video(folder / "short.mp4", seconds=5, fps=10, width=320, height=180)}


def shoot(widget, name: str, artifacts_dir: Path) -> None:
    """A docs/desktop.md screenshot: always in artifacts/, into resources/ only when asked to."""
    shot = artifacts_dir / name
    assert widget.grab().save(str(shot))
    if flags.get("LIVECC_UPDATE_SCREENSHOT"):
        shutil.copyfile(shot, RESOURCES / name)


def loaded_window(make_window, qtbot, **kwargs) -> MainWindow:
    window = make_window(**kwargs)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    return window


def focus_in_text_field() -> bool:
    return isinstance(QApplication.focusWidget(), QLineEdit)


# -- traps ------------------------------------------------------------------------------------------
def test_space_starts_and_stops_but_never_edits_the_instruction(make_window, qtbot, videos, monkeypatch):
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Ok)  # Start again? yes
    window = loaded_window(make_window, qtbot)
    window.picker.add_file(str(videos["long"]))
    window.windowHandle().requestActivate()
    qtbot.waitActive(window)
    # Stop disables the button: a button that had focus would hand it to the Instruction field (X11)
    assert window.start_button.focusPolicy() == Qt.NoFocus
    instruction = window.instruction_edit.text()
    qtbot.mouseClick(window.start_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: window.run is not None, timeout=WAIT_MS)
    assert not focus_in_text_field()
    qtbot.keyClick(QApplication.focusWidget() or window, Qt.Key_Space)  # Stop
    qtbot.waitUntil(lambda: window.run is None, timeout=WAIT_MS)
    assert not focus_in_text_field(), "stopping handed focus to a text field"
    qtbot.keyClick(QApplication.focusWidget() or window, Qt.Key_Space)  # Start again
    qtbot.waitUntil(lambda: window.run is not None, timeout=WAIT_MS)
    assert window.instruction_edit.text() == instruction
    window.question_edit.setFocus()
    qtbot.keyClicks(window.question_edit, "what now")  # Space types a space in the question box
    assert window.question_edit.text() == "what now" and window.run is not None
    assert "Space" in window.toggle_action.shortcut().toString()  # shown in the Session menu
    close_and_check(window)


def test_errors_stay_above_warnings_with_dismiss_and_details(make_window, qtbot, tmp_path, artifacts_dir):
    window = make_window(model_override=str(tmp_path / "no-such-model"))
    qtbot.waitUntil(lambda: window.message_bar.level == "error", timeout=WAIT_MS)
    window.show_error("Speech is off: ChatTTS could not load; espeak-ng speaks instead", "warning", key="speech",
                      details="ChatTTS: no module named 'ChatTTS'")
    window.show_error("Tip: drop a video file on the window", "info", key="tip")
    levels = [m.level for m in window.message_bar.messages()]
    assert levels == ["error", "warning", "info"], "a warning hid or displaced the model error"
    warning_row = window.message_bar.rows[1]
    qtbot.mouseClick(warning_row.details_button, Qt.LeftButton)
    assert not warning_row.details.isHidden() and "no module named" in warning_row.details.text()
    shoot(window, "desktop-messages.png", artifacts_dir)
    qtbot.mouseClick(warning_row.close_button, Qt.LeftButton)
    assert [m.level for m in window.message_bar.messages()] == ["error", "info"]
    assert "no-such-model" in window.message_bar.text  # the reason is still on screen
    close_and_check(window)


def test_speech_without_a_sound_card_is_a_clean_banner_and_not_remembered(make_window, qtbot, tmp_path,
                                                                          null_audio):
    AppSettings(speech_enabled=True, voice="none", audio_device="no such card").save(
        QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    window = make_window(autoload=False)
    qtbot.waitUntil(lambda: "no audio output device" in window.message_bar.text, timeout=WAIT_MS)
    banner = window.message_bar.text
    assert "--" not in banner and "((" not in banner and "no such card" not in banner  # raw text is in Details
    row = window.message_bar.rows[0]
    assert "no such card" in row.details.text() and "--" not in row.details.text()
    assert window.status["speech"].text().startswith("Speech: error")
    assert not window.speak_action.isChecked(), "the toolbar says on while the status bar says error"
    assert not AppSettings.load(window.store).speech_enabled, "a failed choice was remembered as on"
    window.speak_action.trigger()  # clicking Speak retries: it fails again and the toggle says so
    qtbot.waitUntil(lambda: not window.speak_action.isChecked(), timeout=WAIT_MS)
    window.close()


def test_long_unbroken_text_wraps_inside_the_caption_and_answer_boxes(qtbot):
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(560, 315)
    view.show()
    url = "https://example.com/" + "a" * 160 + "?utm_source=livecc#" + "tag" * 20
    cjk = "今天的比赛非常精彩球员们在场上奔跑" * 5
    view.add_event(Commentary(1.0, 2.0, url, 0))
    view.add_event(Commentary(2.0, 3.0, cjk, 1))
    view.add_event(Answer("Which link is on the screen? " + url, url + cjk, False, 3.0))
    view.grab()
    area = view.rect()
    assert len(view.caption_boxes) == 2
    for box in view.caption_boxes:
        assert area.contains(box.toAlignedRect()), f"caption box {box} overflows the view {area}"


def test_after_the_end_questions_are_answered_and_start_asks_first(make_window, qtbot, videos, monkeypatch):
    window = loaded_window(make_window, qtbot)
    window.open_file(str(videos["short"]))
    qtbot.waitUntil(lambda: window.run is None and len(commentary(window)) >= 1, timeout=WAIT_MS)
    window.question_edit.setText("What was the last shape?")
    window.ask_question()
    qtbot.waitUntil(lambda: any(e.kind == "answer" and e.done for e in window.transcript.entries), timeout=WAIT_MS)
    assert "Start a source first" not in window.message_bar.text
    entries = len(window.transcript.entries)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Cancel)
    window.toggle_run()
    assert asked and window.run is None and len(window.transcript.entries) == entries  # cancelled: kept
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Ok)
    window.toggle_run()
    assert window.run is not None
    close_and_check(window)


def tight_budget(loaded, config):
    """The real session with a 400-token KV budget: a long question cannot fit even after compacting."""
    return StreamingSession(loaded, dataclasses.replace(config, answer_max_new_tokens=8, kv_budget=400,
                                                        memory_tokens=16, max_pixels=112 * 84, min_pixels=28 * 28))


def test_after_the_end_a_question_over_the_budget_gets_the_note_and_the_next_is_answered(make_window, qtbot, videos):
    window = loaded_window(make_window, qtbot, session_factory=tight_budget)
    failures = []
    window.controller.run_failed.connect(failures.append)
    window.open_file(str(videos["short"]))
    qtbot.waitUntil(lambda: window.run is None and len(commentary(window)) >= 1, timeout=WAIT_MS)
    answers = lambda: [e for e in window.transcript.entries if e.kind == "answer" and e.done]  # noqa: E731
    window.question_edit.setText(" ".join(["why is the red square moving left"] * 100))  # under 4000 characters
    window.ask_question()
    qtbot.waitUntil(lambda: len(answers()) == 1 and not window.controller.busy_reason(), timeout=WAIT_MS)
    assert "do not fit in the KV budget of 400 tokens" in answers()[0].note
    assert "do not fit" in window.transcript_view.toPlainText()
    window.question_edit.setText("What colour?")
    window.ask_question()
    qtbot.waitUntil(lambda: len(answers()) == 2 and not window.controller.busy_reason(), timeout=WAIT_MS)
    assert answers()[1].text and not answers()[1].note
    assert not failures  # a note, not an error that ends the file's questions
    close_and_check(window)


def test_settings_show_the_model_override_in_force(make_window, qtbot, tiny_model_dir, monkeypatch):
    window = make_window(autoload=False)
    shown = []
    monkeypatch.setattr(SettingsDialog, "exec", lambda dialog: shown.append(dialog) or 0)
    window.open_settings()
    assert shown[0].model_edit.text() == str(tiny_model_dir)
    assert "this run only" in shown[0].override_note.text()
    assert window.settings.model != str(tiny_model_dir)  # the saved default is untouched
    window.close()


def test_a_bad_file_leaves_no_opening_text_and_no_session_file(make_window, qtbot, tmp_path, videos):
    window = loaded_window(make_window, qtbot)
    bogus = tmp_path / "fake.mp4"
    bogus.write_text("not a video")
    window.open_file(str(bogus))
    qtbot.waitUntil(lambda: window.run is None and "cannot open" in window.message_bar.text, timeout=WAIT_MS)
    assert "Opening" not in window.video_view.placeholder
    sessions = tmp_path / "sessions"
    assert not sessions.exists() or not list(sessions.iterdir()), "a failed start wrote a session file"
    window.open_file(str(videos["short"]))
    qtbot.waitUntil(lambda: len(commentary(window)) >= 1, timeout=WAIT_MS)
    files = list(sessions.iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(sessions.stat().st_mode) == 0o700
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    close_and_check(window)


def test_first_start_asks_before_downloading_and_open_shows_a_preview(make_window, qtbot, tmp_path, videos,
                                                                      monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # read at import
    window = make_window(model_override=None)  # the default hub model, not in this cache
    assert not window.loader.busy, "the app reached for the hub without asking"
    assert "16 GB" in window.message_bar.text and "Download" in window.message_bar.action_titles()
    assert str(tmp_path / "empty-cache") in window.message_bar.text  # huggingface_hub's cache, named
    window.open_file(str(videos["short"]))
    assert grab_array(window.video_view).std() > 10, "no preview of the opened file"
    assert window.run is None and not window.loader.busy
    assert "Download" in window.message_bar.action_titles()  # Start says why nothing happens
    assert "Model: not downloaded" in window.status["model"].text()
    window.close()


def test_stale_display_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "DISPLAY": ":97", "PYTHONPATH": str(ROOT)}
    env.pop("QT_QPA_PLATFORM", None)
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run([sys.executable, "-m", "desktop_app.main", "--settings", str(tmp_path / "s.ini")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and ":97" in lines[0] and "DISPLAY" in lines[0]
    version = subprocess.run([sys.executable, "-m", "desktop_app.main", "--version"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("livecc-desktop ")


def test_closing_the_real_app_exits_within_2_s(tmp_path, tiny_model_dir, videos):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    app_process = subprocess.Popen(
        [sys.executable, "-m", "desktop_app.main", str(videos["long"]), "--model", str(tiny_model_dir),
         "--settings", str(tmp_path / "s.ini"), "--sessions-dir", str(tmp_path / "sessions")],
        env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in app_process.stderr:  # the log says when the first comment has been shown
            if "first comment" in line:
                break
        started = time.monotonic()
        app_process.send_signal(2)  # SIGINT closes the window, as the close button does
        app_process.wait(timeout=30)
        elapsed = time.monotonic() - started
    finally:
        app_process.kill()
    assert app_process.returncode == 0
    assert elapsed < 2.0, f"the process exited {elapsed:.2f} s after the close"


def test_a_small_window_keeps_toolbar_and_status_fields_usable(make_window, qtbot, artifacts_dir):
    window = make_window(autoload=False)
    window.resize(560, 380)
    extension = window.toolbar.findChild(QToolButton, "qt_toolbar_ext_button")
    qtbot.waitUntil(lambda: window.width() <= 600 and window.statusBar().width() <= 600)
    QApplication.processEvents()  # the layouts settle
    assert extension is not None and extension.isVisible(), "toolbar items overflow with no overflow menu"
    shown = [f.label for f in window.status_fields.fields.values() if f.label.isVisible()]
    assert shown, "no status field left"
    spans = sorted((label.mapTo(window, QPoint(0, 0)).x(), label.width()) for label in shown)
    assert all(x + w <= next_x for (x, w), (next_x, _) in zip(spans, spans[1:])), "fields overlap"
    assert spans[-1][0] + spans[-1][1] <= window.width()
    before = [label.mapTo(window, QPoint(0, 0)).x() for label in shown]
    window.statusBar().showMessage("Context compacted: 16000 → 7000 tokens (120 ms)")
    window.status["lag"].setText("Lag 12345 ms")
    qtbot.wait(50)
    assert [label.mapTo(window, QPoint(0, 0)).x() for label in shown] == before, "fields jumped"
    window.close()


def test_region_picker_drags_over_a_screenshot(qtbot, artifacts_dir):
    screenshot = QImage(1280, 720, QImage.Format_RGB32)
    screenshot.fill(QColor(40, 90, 160))
    painter = QPainter(screenshot)
    painter.fillRect(100, 50, 640, 360, QColor(230, 230, 230))  # a window on the desktop
    painter.end()
    dialog = RegionDialog(None, {"index": 1, "left": 0, "top": 0, "width": 1280, "height": 720},
                          screenshot=screenshot)
    qtbot.addWidget(dialog)
    dialog.resize(720, 560)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.summary.text() == "Watching: the whole screen"
    canvas = dialog.canvas
    start, end = canvas.to_widget((100, 50, 0, 0)).topLeft(), canvas.to_widget((740, 410, 0, 0)).topLeft()
    qtbot.mousePress(canvas, Qt.LeftButton, pos=start.toPoint())
    qtbot.mouseMove(canvas, end.toPoint())
    qtbot.mouseRelease(canvas, Qt.LeftButton, pos=end.toPoint())
    left, top, width, height = dialog.region()
    pixel = 1280 / canvas._frame().width() + 1  # one screen pixel of the canvas, in monitor pixels
    assert abs(left - 100) <= pixel and abs(top - 50) <= pixel
    assert abs(width - 640) <= 2 * pixel and abs(height - 360) <= 2 * pixel
    assert [s.value() for s in dialog.spins.values()] == [left, top, width, height]
    assert "Watching:" in dialog.summary.text() and "px" in dialog.summary.text()
    shoot(dialog, "desktop-region.png", artifacts_dir)
    dialog.spins["Width"].setValue(320)  # typed numbers move the frame too
    assert dialog.region() == (left, top, 320, height)
    dialog.choose_whole_screen()
    assert dialog.region() is None


# -- player features --------------------------------------------------------------------------------
def test_pause_and_seek_in_the_window(make_window, qtbot, videos, artifacts_dir, tmp_path):
    window = loaded_window(make_window, qtbot)
    window.resize(1100, 640)
    window.open_file(str(videos["long"]))
    qtbot.waitUntil(lambda: len(commentary(window)) >= 1, timeout=WAIT_MS)
    assert window.playback.pause_action.isEnabled() and window.playback.duration == pytest.approx(30.0, abs=0.5)
    window.playback.pause_action.trigger()
    assert window.run.source.paused and window.playback.pause_action.text() == "&Resume"
    window.playback.pause_action.trigger()
    mark, after = seek_and_comment(qtbot, window, 10.0)
    assert after[0].start == pytest.approx(10.0) and all(e.start >= 10.0 for e in after)
    assert "Jumped to 0:10" in window.transcript_view.entries_text()[mark]
    qtbot.waitUntil(lambda: window.playback_bar.position.text() >= "0:11", timeout=WAIT_MS)
    window.question_edit.setText("What happened after the jump?")
    window.ask_question()
    qtbot.waitUntil(lambda: window.video_view.captions.answer is not None, timeout=WAIT_MS)
    shoot(window, "desktop-player.png", artifacts_dir)
    assert window.default_save_path() == videos["long"].with_suffix(".srt")  # match.srt beside match.mp4
    saved = window.save_transcript(tmp_path / "out.srt").read_text()
    assert "Jumped" not in saved  # the mark is for the window, not the subtitles
    close_and_check(window)


def test_fullscreen_shows_video_and_captions_and_caption_style_is_remembered(make_window, qtbot, videos,
                                                                            artifacts_dir):
    window = loaded_window(make_window, qtbot)
    window.open_file(str(videos["long"]))
    qtbot.waitUntil(lambda: len(commentary(window)) >= 2, timeout=WAIT_MS)
    window.viewing.resize_captions(+1)
    window.viewing.top_action.setChecked(True)
    qtbot.mouseDClick(window.video_view, Qt.LeftButton)  # as F11 does
    qtbot.waitUntil(lambda: not window.transcript_view.isVisible(), timeout=WAIT_MS)
    assert window.viewing.fullscreen_action.isChecked()
    assert not window.menuBar().isVisible() and not window.toolbar.isVisible() and window.video_view.isVisible()
    view = window.video_view  # captions at the top, as chosen
    qtbot.waitUntil(lambda: bool(view.caption_boxes) and view.caption_boxes[0].top() < view.height() / 2,
                    timeout=WAIT_MS)
    shoot(window.video_view, "desktop-fullscreen.png", artifacts_dir)
    qtbot.keyClick(window.video_view, Qt.Key_Escape)
    qtbot.waitUntil(lambda: window.transcript_view.isVisible(), timeout=WAIT_MS)
    style = window.video_view.caption_style
    close_and_check(window)
    again = make_window(autoload=False)
    assert again.video_view.caption_style == style and style.scale > 1.0 and style.top
    again.close()


def test_narrate_to_subtitles_writes_what_livecc_narrate_writes(make_window, qtbot, videos, tiny_model_dir, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copyfile(videos["short"], video)
    window = loaded_window(make_window, qtbot, session_factory=short_answers)
    narration = window.narrator.narrate(video)
    progress = []
    narration.progress.connect(progress.append)
    with qtbot.waitSignal(narration.finished, timeout=WAIT_MS) as done:
        pass
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0, abs=0.05)
    assert done.args[0] == [video.with_suffix(".srt"), video.with_suffix(".vtt")]
    cli_srt = tmp_path / "cli.srt"
    assert livecc(["narrate", str(video), "--model", str(tiny_model_dir), "--device", "cpu",
                   "--srt", str(cli_srt)]) == 0
    app_srt = video.with_suffix(".srt").read_text()
    assert app_srt and app_srt == cli_srt.read_text()
    close_and_check(window)


def narrating(make_window, qtbot, source: Path, tmp_path: Path):
    """A loaded window narrating a copy of `source` in tmp_path (subtitles land beside the copy)."""
    video = tmp_path / source.name
    shutil.copyfile(source, video)
    window = loaded_window(make_window, qtbot, session_factory=short_answers)
    return window, video, window.narrator.narrate(video)


def test_narration_writes_cues_as_it_goes_and_a_cancel_keeps_them(make_window, qtbot, videos, tmp_path):
    window, video, narration = narrating(make_window, qtbot, videos["long"], tmp_path)
    srt, vtt = video.with_suffix(".srt"), video.with_suffix(".vtt")
    on_disk: list[int] = []  # SRT cues already in the file each time a chunk is reported

    def seen(fraction: float) -> None:
        on_disk.append(srt.read_text().count(" --> "))
        if len(on_disk) == 4:
            narration.cancel()

    narration.progress.connect(seen)
    with qtbot.waitSignal(narration.finished, timeout=WAIT_MS):
        pass
    assert on_disk[-1] >= 1 and on_disk == sorted(on_disk)  # on disk while the narration still ran
    cues = srt.read_text().count(" --> ")
    assert cues == on_disk[-1] and vtt.read_text().count(" --> ") == cues  # the cancel kept every cue
    assert len(on_disk) < 28  # it stopped well before the end of the 30 s file
    assert "Narration cancelled" in window.message_bar.text and str(srt) in window.message_bar.text
    close_and_check(window)


def test_a_failed_narration_says_it_stopped_and_where_the_cues_are(make_window, qtbot, videos, tmp_path,
                                                                   monkeypatch):
    video = tmp_path / "clip.mp4"
    shutil.copyfile(videos["short"], video)
    window = loaded_window(make_window, qtbot)

    def fails_after_one_cue(session, buffer):
        yield Commentary(0.0, 1.0, "the first cue", 0)
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(StreamingSession, "run", fails_after_one_cue)
    narration = window.narrator.narrate(video)
    with qtbot.waitSignal(narration.finished, timeout=WAIT_MS):
        pass
    notice = next(m for m in window.message_bar.messages() if m.key == "narrate")
    assert notice.level == "warning" and notice.text.startswith("Narration stopped")
    assert "the disk is on fire" in notice.text and str(video.with_suffix(".srt")) in notice.text
    assert "the first cue" in video.with_suffix(".srt").read_text()
    assert window.narrator.narration is None and window.start_button.isEnabled()
    close_and_check(window)


def test_start_waits_while_a_narration_has_the_model(make_window, qtbot, videos, tmp_path):
    window, _, narration = narrating(make_window, qtbot, videos["long"], tmp_path)
    assert not window.start_button.isEnabled() and not window.toggle_action.isEnabled()
    window.open_file(str(videos["short"]))  # one model, one stream: nothing starts, and the window says why
    assert window.run is None and "a narration is running" in window.message_bar.text
    assert window.narrator.narrate(videos["short"]) is None
    with qtbot.waitSignal(narration.finished, timeout=WAIT_MS):
        narration.cancel()
    assert window.narrator.narration is None and window.start_button.isEnabled()
    window.open_file(str(videos["short"]))
    qtbot.waitUntil(lambda: window.run is not None, timeout=WAIT_MS)
    close_and_check(window)


def test_leaving_fullscreen_gives_a_maximized_window_back_maximized(make_window, qtbot):
    window = make_window(autoload=False)
    window.showMaximized()
    qtbot.waitUntil(window.isMaximized)
    window.viewing.fullscreen_action.setChecked(True)
    qtbot.waitUntil(window.isFullScreen)
    window.viewing.fullscreen_action.setChecked(False)
    qtbot.waitUntil(lambda: not window.isFullScreen())
    assert window.isMaximized()
    window.close()


def test_recent_files_about_and_shortcuts(make_window, qtbot, videos, tiny_model_dir):
    window = loaded_window(make_window, qtbot)
    window.open_file(str(videos["short"]))
    close_and_check(window)
    again = make_window(autoload=False)
    assert again.picker.current_spec().path == str(videos["short"].resolve())  # listed, newest first
    again.recent.fill_menu(again.recent_menu, again.open_file)
    assert [a.text() for a in again.recent_menu.actions()][0] == videos["short"].name
    again.help.about()
    about = again.help.about_box.text()
    assert "CC BY-NC 4.0" in about and "tiny-qwen2-vl" in about and "LiveCC Desktop " in about
    shortcuts = {a.text(): a.shortcut().toString() for a in again.findChildren(type(again.toggle_action))}
    assert shortcuts["&Ask a question"] == "Ctrl+L" and shortcuts["Se&ttings…"] == "Ctrl+,"
    assert shortcuts["&Fullscreen"] == "F11" and shortcuts["Leave fullscreen"] == "Esc"
    again.close()
