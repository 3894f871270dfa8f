"""Issue 23, the desktop items: what a new user found when trying the app, offscreen (pytest-qt),
each test failing on the code before its fix."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtGui import QHelpEvent, QMouseEvent, QTextCursor
from PySide6.QtWidgets import QAbstractSlider, QApplication, QMessageBox, QToolTip

from desktop_app.captions import FADE_S, HOLD_S, CaptionTrack
from desktop_app.controller import State
from desktop_app.playback import NO_TIME, PlaybackBar, PlaybackController
from desktop_app.preview import frame_at
from desktop_app.source_picker import SourceSpec
from desktop_app.video_view import VideoView
from engine import Answer, Commentary
from test_desktop_app import (WAIT_MS, app, close_and_check, grab_array, make_window, store_settings,  # noqa: F401,E501
                              short_answers)
from test_desktop_player import loaded_window, videos  # noqa: F401


class FakeRun:
    """What PlaybackController needs of a LiveRun: a file of `duration` seconds, or a live source."""

    def __init__(self, duration: float = 0.0):
        self.seekable = duration > 0
        self.duration = duration
        self.seeks: list[float] = []

    def seek(self, seconds: float) -> None:
        self.seeks.append(seconds)

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass


def mouse(widget, kind: QEvent.Type, x: float) -> None:
    """A left-button mouse event at (x, middle) of `widget`, button held for presses and moves."""
    pos = QPointF(x, widget.height() / 2)
    held = Qt.NoButton if kind == QEvent.MouseButtonRelease else Qt.LeftButton
    QApplication.sendEvent(widget, QMouseEvent(kind, pos, widget.mapToGlobal(pos), Qt.LeftButton, held,
                                               Qt.NoModifier))


@pytest.fixture
def player(qtbot):
    """A playback bar wired to a 120 s file whose frame on screen is at `now[0]`."""
    bar = PlaybackBar()
    qtbot.addWidget(bar)
    bar.resize(600, 40)
    bar.show()
    now = [28.0]
    controller = PlaybackController(bar, lambda: now[0], bar)  # goes with the bar
    run = FakeRun(120.0)
    controller.attach(run)
    controller._poll()
    return bar, controller, run, now


# -- 1 ------------------------------------------------------------------------------------------------
def test_1_a_finished_narration_says_written_not_cancelled(make_window, qtbot, videos, tmp_path):
    video = tmp_path / "clip.mp4"
    shutil.copyfile(videos["short"], video)
    window = loaded_window(make_window, qtbot, session_factory=short_answers)
    narration = window.narrator.narrate(video)
    with qtbot.waitSignal(narration.finished, timeout=WAIT_MS):
        pass
    notice = next(m for m in window.message_bar.messages() if m.key == "narrate")
    assert notice.text.startswith("Subtitles written beside the video") and "cancelled" not in notice.text
    assert not narration.cancelled
    close_and_check(window)


# -- 2 ------------------------------------------------------------------------------------------------
def test_2_a_drag_seeks_once_on_release_and_the_label_follows(player):
    bar, controller, run, _ = player
    slider = bar.slider
    seeked = []
    controller.seeked.connect(seeked.append)
    mouse(slider, QEvent.MouseButtonPress, slider.width() * 0.25)
    for fraction in (0.3, 0.5, 0.7, 0.9):
        mouse(slider, QEvent.MouseMove, slider.width() * fraction)
        assert bar.position.text() == f"{slider.sliderPosition() // 60}:{slider.sliderPosition() % 60:02d}"
    assert run.seeks == [], "a seek before the release"
    mouse(slider, QEvent.MouseButtonRelease, slider.width() * 0.9)
    assert len(run.seeks) == 1 and seeked == run.seeks
    assert run.seeks[0] == pytest.approx(slider.value_at(slider.width() * 0.9)) and run.seeks[0] > 100


def test_2_a_click_jumps_to_where_it_was_clicked(player):
    bar, _, run, _ = player
    slider = bar.slider
    x = slider.width() * 0.75
    mouse(slider, QEvent.MouseButtonPress, x)
    mouse(slider, QEvent.MouseButtonRelease, x)
    assert run.seeks == [pytest.approx(slider.value_at(x))]
    assert 80 < run.seeks[0] < 100  # three quarters of 120 s, not a page step from 0:28


# -- 4 ------------------------------------------------------------------------------------------------
def test_4_a_live_source_shows_no_time_of_the_previous_file(player):
    bar, controller, _, _ = player
    assert bar.position.text() == "0:28" and bar.duration.text() == "2:00"
    controller.detach()
    controller.attach(FakeRun())  # the screen: no position
    controller._poll()
    assert bar.position.text() == NO_TIME and bar.duration.text() == NO_TIME
    assert bar.slider.value() == 0 and bar.slider.maximum() == 0 and not bar.slider.isEnabled()


# -- 9 ------------------------------------------------------------------------------------------------
def test_9_the_precision_shows_and_a_reload_shows_progress(make_window, qtbot):
    window = loaded_window(make_window, qtbot)
    assert window.status["model"].text() == "Model: tiny-qwen2-vl on CPU (float32)"
    window.apply_settings(dataclasses.replace(window.settings, quantize="int8"))
    assert window.status["model"].text() == "Model: loading tiny-qwen2-vl (int8)…"
    assert window.model_ui.progress.dialog is not None  # progress, as at start-up
    assert not window.ask_button.isEnabled() and "loading" in window.ask_button.toolTip()
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    assert window.status["model"].text() == "Model: tiny-qwen2-vl on CPU (float32, int8 weights)"
    assert window.statusBar().currentMessage().startswith("Model ready: ")
    assert window.ask_button.toolTip().startswith("Start a source first")
    window.help.about()
    assert "int8 weights" in window.help.about_box.text()
    close_and_check(window)


# -- 12 -----------------------------------------------------------------------------------------------
def test_12_help_lists_the_shortcuts_and_opens_the_docs(make_window, qtbot, tmp_path, monkeypatch):
    window = make_window(autoload=False)
    help_menu = window.menuBar().actions()[-1].menu()
    assert [a.text() for a in help_menu.actions() if a.text()] == [
        "&Keyboard shortcuts", "&Documentation", "&About LiveCC Desktop"]
    window.help.shortcuts_action.trigger()
    rows: dict[str, str] = {}
    for keys, what in window.help.shortcuts_dialog.rows():
        rows.setdefault(what, keys)  # the menu's keys first
    assert rows["Start"] == "Space" and rows["Back 5 s"] == "Ctrl+Left" and rows["Forward 5 s"] == "Ctrl+Right"
    assert rows["Fullscreen"] == "F11" and rows["Ask a question"] == "Ctrl+L" and rows["Speak"] == "Ctrl+Shift+M"
    assert rows["Keyboard shortcuts"] == "F1" and "Double-click the video" in window.help.shortcuts_dialog.rows()[-4]

    opened = []
    monkeypatch.setattr("desktop_app.help_menu.QDesktopServices.openUrl", lambda url: opened.append(url) or True)
    docs = tmp_path / "desktop.md"
    docs.write_text("# LiveCC Desktop\n")
    monkeypatch.setattr("desktop_app.help_menu.DOCS", docs)
    assert window.help.open_docs() and opened[0].toLocalFile() == str(docs)
    told = []
    monkeypatch.setattr("desktop_app.help_menu.QMessageBox.information", lambda *args: told.append(args[2]))
    monkeypatch.setattr("desktop_app.help_menu.DOCS", tmp_path / "missing.md")
    assert not window.help.open_docs() and "docs/desktop.md" in told[0]
    window.close()


# -- 7 ------------------------------------------------------------------------------------------------
def test_7_at_1280_px_every_field_shows_and_a_message_is_read_in_full(make_window, qtbot):
    window = make_window(autoload=False)
    window.resize(1280, 760)
    bar = window.statusBar()
    qtbot.waitUntil(lambda: bar.width() == 1280)
    fields = window.status_fields.fields
    assert all(f.label.isVisible() for key, f in fields.items() if key != "voice")  # the voice: speech is off
    assert fields["memory"].label.isVisible()
    for message in ("Context compacted: 16000 → 7000 tokens (120 ms)",
                    "End of video at 242.0 s: questions are still answered"):
        bar.showMessage(message)
        QApplication.processEvents()
        shown = [f.label for f in fields.values() if f.label.isVisible()]
        room = min(label.mapTo(bar, QPointF(0, 0).toPoint()).x() for label in shown)
        assert bar.fontMetrics().horizontalAdvance(message) + 12 < room, f"'{message}' is cut at {room} px"
        bar.clearMessage()
        QApplication.processEvents()
        assert fields["memory"].label.isVisible() and fields["lag"].label.isVisible()  # back after the message
    window.close()


# -- 8 ------------------------------------------------------------------------------------------------
def test_8_large_captions_stay_on_the_video(qtbot):
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(480, 270)
    view.show()
    view.caption_style.scale = 2.0  # View > Larger captions, to the largest step
    for i in range(3):
        view.add_event(Commentary(float(i), i + 1.0, "the player in red runs down the left wing and crosses", i))
    view.add_event(Answer("Who has the ball now?", "The player in red, near the corner flag.", False, 3.0))
    view.grab()
    assert len(view.caption_boxes) == 2
    for box in view.caption_boxes:
        assert QRectF(view.rect()).contains(box), f"caption box {box} runs off the video {view.rect()}"


def test_8_a_faded_caption_leaves_no_ghost_on_a_frozen_frame(qtbot):
    view = VideoView()
    qtbot.addWidget(view)
    view.resize(480, 270)
    view.show()
    qtbot.waitExposed(view)
    now = [100.0]
    view.captions = CaptionTrack(clock=lambda: now[0])
    view.add_event(Commentary(0.0, 1.0, "a comment", 0))
    QApplication.processEvents()
    now[0] += HOLD_S + FADE_S * 0.95  # the last paint of the fade: almost gone, not gone
    view.grab()
    assert view.caption_boxes, "the fading caption was painted"
    now[0] += FADE_S  # faded out; no new frame comes (paused, or after the end)
    QApplication.processEvents()  # whatever was due is painted by now
    assert view.caption_boxes, "the ghost of the last fading paint"
    view._last_caption_paint = 0.0
    view._poll()
    qtbot.waitUntil(lambda: view.caption_boxes == [], timeout=10_000)


# -- 3 ------------------------------------------------------------------------------------------------
def test_3_the_transcript_follows_after_a_round_trip_to_fullscreen(make_window, qtbot):
    window = make_window(autoload=False)
    window.resize(1100, 640)
    view, transcript = window.transcript_view, window.transcript
    shown = lambda: qtbot.waitUntil(lambda: view.isVisible() and view.viewport().width() > 0)  # noqa: E731

    def add(n: int) -> None:
        for i in range(n):
            index, created = transcript.apply(Commentary(float(i), i + 1.0, f"line {i} " + "words " * 12, i))
            view.show_entry(index, transcript.entries[index], created)

    shown()
    add(60)
    bar = view.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    window.viewing.fullscreen_action.setChecked(True)  # F11
    qtbot.waitUntil(lambda: not view.isVisible())
    window.viewing.fullscreen_action.setChecked(False)  # Esc
    shown()
    window.splitter.setSizes([900, 200])  # a narrower transcript: more wrapped lines
    QApplication.processEvents()
    add(3)
    QApplication.processEvents()
    assert bar.value() == bar.maximum() and bar.value() > 0, "the transcript stopped following"
    bar.triggerAction(QAbstractSlider.SliderToMinimum)  # the user scrolls up to read: new lines leave it there
    add(2)
    QApplication.processEvents()
    assert bar.value() == 0 and not view.following
    window.close()


# -- 5 ------------------------------------------------------------------------------------------------
def test_5_seek_keys_work_from_the_question_box_and_focus_returns_to_the_video(make_window, qtbot, monkeypatch):
    window = make_window(autoload=False)
    window.windowHandle().requestActivate()
    qtbot.waitActive(window)
    run = FakeRun(120.0)
    window.playback.attach(run)
    edit = window.question_edit
    edit.setFocus()
    qtbot.waitUntil(edit.hasFocus)
    qtbot.keyClick(edit, Qt.Key_Right, Qt.ControlModifier)
    assert run.seeks == [5.0], "Ctrl+Right did not seek from the Question box"
    qtbot.keyClicks(edit, "who scored")  # now it is being edited: the keys jump over words
    qtbot.keyClick(edit, Qt.Key_Left, Qt.ControlModifier)
    assert run.seeks == [5.0] and edit.cursorPosition() == len("who ")
    monkeypatch.setattr(window.controller, "ask", lambda question: True)
    qtbot.keyClick(edit, Qt.Key_Return)
    assert edit.text() == "" and QApplication.focusWidget() is window.video_view
    qtbot.keyClick(window.video_view, Qt.Key_Left, Qt.ControlModifier)
    assert len(run.seeks) == 2
    window.playback.detach()
    window.close()


# -- 10 -----------------------------------------------------------------------------------------------
def test_10_open_asks_before_clearing_the_transcript(make_window, qtbot, videos, monkeypatch):
    window = loaded_window(make_window, qtbot)
    window.open_file(str(videos["short"]))
    qtbot.waitUntil(lambda: window.run is None and len(window.transcript.entries) >= 1, timeout=WAIT_MS)
    entries = list(window.transcript.entries)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Cancel)
    window.open_file(str(videos["long"]))  # File > Open, a drop or a recent file: all go through here
    assert asked and window.run is None and window.transcript.entries == entries  # cancelled: kept
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Ok)
    window.open_file(str(videos["long"]))
    assert window.run is not None and window.run.spec.path == str(videos["long"])
    close_and_check(window)


def test_10_a_missing_file_is_a_message_not_a_source(make_window, qtbot, tmp_path):
    window = make_window(autoload=False)
    window.open_file("nosuch.mp4")  # livecc-desktop nosuch.mp4
    items = [window.picker.combo.itemText(i) for i in range(window.picker.combo.count())]
    assert "nosuch.mp4" not in items and window.run is None
    assert "nosuch.mp4" in window.message_bar.text and "nosuch.mp4; open a video with File > Open" in (
        window.message_bar.text)
    window.open_file("a" * 300 + ".mp4")  # a name no file system takes: a message, not a traceback
    assert "longer than the file system allows" in window.message_bar.text
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    read, write = os.pipe()  # livecc-desktop <(ffmpeg ...): a pipe under /dev/fd, which narrate may read
    try:
        for path in (str(fifo), f"/dev/fd/{read}"):  # a probe would block the window, or drain the pipe
            window.open_file(path)
            assert f"{path} is not a regular file" in window.message_bar.text
    finally:
        os.close(read)
        os.close(write)
    assert window.run is None and window.picker.combo.count() == len(items)
    window.close()


def test_10_file_dialogs_open_in_the_last_folder_used(make_window, qtbot, videos, tmp_path, monkeypatch):
    window = make_window(autoload=False)
    starts = []

    def dialog(parent, title, folder, filters):
        starts.append(folder)
        return "", ""  # cancelled: only where it opened matters

    monkeypatch.setattr("desktop_app.file_dialogs.QFileDialog.getOpenFileName", dialog)
    window.choose_file()
    assert starts == [str(Path.home())]  # nothing used yet
    window.dialogs.remember(videos["short"])  # a video was opened from its folder
    window.choose_file()
    window.narrator.choose()
    assert starts[1:] == [str(videos["short"].parent)] * 2
    window.close()
    again = make_window(autoload=False)  # remembered in the settings file
    again.choose_file()
    assert starts[-1] == str(videos["short"].parent)
    again.close()


def test_10_a_recent_file_at_start_up_shows_its_first_frame(make_window, qtbot, videos):
    window = make_window(autoload=False)
    window.recent.add(videos["short"])
    window.close()
    again = make_window(autoload=False)
    assert again.picker.current_spec().path == str(videos["short"].resolve())
    pixels = grab_array(again.video_view).astype(int)
    coloured = (pixels.max(axis=2) - pixels.min(axis=2) > 50).mean()  # the placeholder is grey on black
    assert coloured > 0.05, "a recent file shows 'Choose a source' instead of its frame"
    again.close()


# -- 11 -----------------------------------------------------------------------------------------------
def test_11_the_app_hides_the_transformers_future_warning(tmp_path, monkeypatch):
    import logging
    import warnings

    import desktop_app.main as app_main
    from engine.model.quiet import CHATTY_LOGGERS

    monkeypatch.setattr(warnings, "filters", list(warnings.filters))  # undone after the test
    for name in ("TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS", "OPENCV_FFMPEG_LOGLEVEL",
                 "OPENCV_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    for name in CHATTY_LOGGERS:
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    shown = []

    class Window:  # what the terminal would show once the window (and the model) load
        def __init__(self, *args, **kwargs):
            with warnings.catch_warnings(record=True) as caught:
                warnings.warn("`past_key_values` is deprecated (issue 23, item 11)", FutureWarning)
            shown.extend(caught)

        def show(self):
            pass

    class App:
        def exec(self):
            return 0

    monkeypatch.setattr(app_main, "MainWindow", Window)
    monkeypatch.setattr(app_main, "create_application", App)
    monkeypatch.setattr(app_main, "collect_on_gui_thread", lambda app: None)
    monkeypatch.setattr(app_main, "_close_on_signals", lambda window: None)
    monkeypatch.setattr(app_main.logging, "basicConfig", lambda **kwargs: None)
    assert app_main.main(["--settings", str(tmp_path / "s.ini")]) == 0
    assert shown == [], "the app's terminal shows a FutureWarning the CLI hides"


def test_11_speak_asks_before_downloading_chattts(make_window, qtbot, tmp_path, monkeypatch, null_audio):
    pytest.importorskip("ChatTTS", reason="without ChatTTS, espeak-ng speaks and nothing is downloaded")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    store_settings(tmp_path, speech_enabled=True)  # the default voice: ChatTTS
    window = make_window(autoload=False)
    assert window.speech._task is None and window.speech.state == "off", "the app reached for ChatTTS unasked"
    assert not window.speak_action.isChecked()
    assert "ChatTTS" in window.message_bar.text and str(tmp_path / "empty-cache") in window.message_bar.text
    window.message_bar.dismiss("speech")
    window.speak_action.trigger()  # Speak on: it asks again, and still fetches nothing
    assert window.speech._task is None and not window.speak_action.isChecked()
    row = next(r for r in window.message_bar.rows if r.message.key == "speech")
    assert [b.text() for b in row.buttons] == ["Download", "Use espeak-ng"]
    row.buttons[1].click()  # espeak-ng needs no download
    assert window.settings.voice == "espeak" and window.speak_action.isChecked()
    qtbot.waitUntil(lambda: window.status["speech"].text() == "Speech: ready (espeak-ng)", timeout=WAIT_MS)
    close_and_check(window)


# -- 6 ------------------------------------------------------------------------------------------------
def link_point(view, text: str):
    """Where the time link `text` sits in the transcript view (viewport coordinates)."""
    doc = view.document()
    block = doc.findBlockByNumber(view._blocks - 1)
    cursor = QTextCursor(doc)
    cursor.setPosition(block.position() + block.text().index(text) + 2)
    return view.cursorRect(cursor).center()


def show_recalled_answer(window) -> None:
    thumb = np.full((27, 48, 3), 90, np.uint8)
    index, created = window.transcript.apply(Answer("What was there at first?", "A red ball.", True, 20.0,
                                                    ((10.0, 12.0),), (thumb,)))
    window.transcript_view.show_entry(index, window.transcript.entries[index], created)


def test_6_a_recalled_moment_of_a_file_opens_a_preview_and_the_run_goes_on(make_window, qtbot, videos):
    window = make_window(autoload=False)
    window.keeper.source = SourceSpec("file", path=str(videos["long"]), label="match.mp4")
    show_recalled_answer(window)
    qtbot.mouseClick(window.transcript_view.viewport(), Qt.LeftButton, pos=link_point(window.transcript_view, "0:10"))
    preview = window.moments.preview
    assert preview is not None and preview.isVisible()
    assert not preview.picture.pixmap().isNull() and "0:10–0:12" in preview.caption.text()
    assert window.controller.state is State.IDLE and window.run is None  # nothing was sought or restarted
    assert frame_at(videos["long"], 10.0).image.mean() != pytest.approx(frame_at(videos["long"], 0.0).image.mean())
    window.close()


def test_6_a_recalled_moment_of_a_live_source_says_what_the_link_is(make_window, qtbot):
    window = make_window(autoload=False)
    window.keeper.source = SourceSpec("screen", index=1, label="Screen 1")
    show_recalled_answer(window)
    view = window.transcript_view
    point = link_point(view, "0:10")
    QApplication.sendEvent(view, QHelpEvent(QEvent.ToolTip, point, view.viewport().mapToGlobal(point)))
    qtbot.waitUntil(QToolTip.isVisible, timeout=10_000)
    assert "0:10–0:12" in QToolTip.text() and "cannot be replayed" in QToolTip.text()
    window.close()
