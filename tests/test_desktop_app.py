"""The desktop app end to end, offscreen, with the real engine and the tiny random model.

Generous waits (qtbot.waitUntil) keep these robust on a loaded 2-core CI machine; nothing is
asserted on a fixed sleep.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDialog

from desktop_app.main import create_application
from desktop_app.main_window import MainWindow
from desktop_app.message_bar import MAX_MESSAGES, MessageBar
from desktop_app.region_picker import RegionDialog
from desktop_app.settings import AppSettings
from desktop_app.settings_dialog import SettingsDialog
from desktop_app.source_picker import SourceSpec
from desktop_app.transcript import clean_text, read_session_log
from engine import flags
from engine.session.events import Answer
from engine.session.session import StreamingSession
from engine.capture.sources import FileSource, VideoSource
from videos import write_video

WAIT_MS = 90_000  # the model load and a few seconds of real-time video, on a slow machine
RESOURCES = Path(__file__).resolve().parent.parent / "resources"


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "shapes.mp4", seconds=40, fps=30, width=640, height=360)


def store_settings(tmp_path: Path, **fields) -> None:
    """Write settings where `make_window` reads them, as if a previous session had saved them."""
    AppSettings(**fields).save(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))


@pytest.fixture
def app(qapp):
    return create_application()


def short_answers(loaded, config):
    """The real session, with answers capped so a random tiny model does not ramble 512 tokens."""
    return StreamingSession(loaded, dataclasses.replace(config, answer_max_new_tokens=40))


@pytest.fixture
def make_window(app, qtbot, tmp_path, tiny_model_dir):
    windows = []
    threads = torch.get_num_threads()  # the app gives one core back to the GUI: undo it for other tests

    def make(session_factory=short_answers, **kwargs) -> MainWindow:
        store = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
        kwargs.setdefault("model_override", str(tiny_model_dir))
        window = MainWindow(store, sessions_dir=tmp_path / "sessions", session_factory=session_factory,
                            probe_devices=False, **kwargs)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:  # a failed test must not leave an engine thread to crash the next one
        window.shutdown(10.0)
        window.loader.join(30.0)
    torch.set_num_threads(threads)


def commentary(window: MainWindow):
    return [e for e in window.transcript.entries if e.kind == "commentary"]


def seek_and_comment(qtbot, window: MainWindow, seconds: float) -> tuple[int, list]:
    """Seek the player and wait for the Seek entry and a comment after it: (the entry's index, the
    comments since)."""
    window.playback.seek(seconds)
    qtbot.waitUntil(lambda: any(e.kind == "seek" for e in window.transcript.entries), timeout=WAIT_MS)
    mark = next(i for i, e in enumerate(window.transcript.entries) if e.kind == "seek")
    qtbot.waitUntil(lambda: any(e.kind == "commentary" for e in window.transcript.entries[mark:]), timeout=WAIT_MS)
    return mark, [e for e in window.transcript.entries[mark:] if e.kind == "commentary"]


def grab_array(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format_RGB888)
    ptr = image.constBits()
    arr = np.frombuffer(ptr, np.uint8, count=image.sizeInBytes()).reshape(image.height(), image.bytesPerLine())
    return arr[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def engine_threads_alive() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.is_alive() and t.name.startswith(("source:", "livecc-", "speech-"))]


def close_and_check(window: MainWindow) -> None:
    """Closing stops everything within 2 s and leaves no engine or capture thread running."""
    run = window.run
    started = time.monotonic()
    window.close()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"closing took {elapsed:.2f} s"
    assert window.run is None
    if run is not None:
        assert not run.running
        assert not run.source.running
    assert engine_threads_alive() == []


def test_playback_commentary_reaches_transcript_and_overlay(make_window, qtbot, video):
    window = make_window()
    window.open_file(str(video))
    qtbot.waitUntil(lambda: window.video_view.frames_shown > 0, timeout=WAIT_MS)
    first = grab_array(window.video_view)
    assert first.std() > 10, "the video view is blank"
    qtbot.waitUntil(lambda: len(commentary(window)) >= 3, timeout=WAIT_MS)

    entries = commentary(window)
    starts = [e.start for e in entries]
    assert starts == sorted(starts) and len(set(starts)) == len(starts), "commentary out of time order"
    shown = window.transcript_view.entries_text()
    assert all(e.text in line for e, line in zip(entries, shown))
    assert entries[-1].text in " ".join(window.video_view.captions.texts())
    # frames are painted at the source's rate, not the engine's 2 fps, and the picture moves
    assert window.video_view.frames_shown > 4 * window.video_view.frame_time
    qtbot.waitUntil(lambda: np.abs(grab_array(window.video_view).astype(int) - first).mean() > 2, timeout=WAIT_MS)
    assert "Chunk" in window.status["chunk"].text() and "%" in window.status["context"].text()
    assert window.status["memory"].text().startswith("Memory ") and "key frames" in window.status["memory"].text()
    assert window.status["model"].text().startswith("Model: tiny-qwen2-vl on CPU")
    close_and_check(window)


def test_question_gets_an_answer_then_commentary_resumes(make_window, qtbot, video, artifacts_dir, tmp_path,
                                                         null_audio):
    store_settings(tmp_path, speech_enabled=True, voice="espeak")  # the screenshot shows speech on
    window = make_window()
    window.open_file(str(video))
    qtbot.waitUntil(lambda: len(commentary(window)) >= 2, timeout=WAIT_MS)
    qtbot.keyClicks(window.question_edit, "What is moving?")
    qtbot.keyClick(window.question_edit, Qt.Key_Return)
    assert window.question_edit.text() == ""

    def answered():
        return [e for e in window.transcript.entries if e.kind == "answer" and e.done]

    qtbot.waitUntil(lambda: len(answered()) == 1, timeout=WAIT_MS)
    answer = answered()[0]
    assert answer.question == "What is moving?"
    assert window.video_view.captions.answer is not None
    assert window.video_view.captions.answer.question == "What is moving?"
    assert any("Q: What is moving?" in line for line in window.transcript_view.entries_text())
    index = window.transcript.entries.index(answer)
    qtbot.waitUntil(lambda: any(e.kind == "commentary" for e in window.transcript.entries[index + 1:]),
                    timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(window.video_view.captions.texts()) >= 2, timeout=WAIT_MS)
    assert window.status["speech"].text().startswith("Speech: ")
    assert window.status["speech"].text().endswith("(espeak-ng)")

    shot = artifacts_dir / "desktop-playback.png"
    assert window.grab().save(str(shot))
    assert QImage(str(shot)).width() >= 800
    RESOURCES.mkdir(exist_ok=True)
    if flags.get("LIVECC_UPDATE_SCREENSHOT"):  # refresh the README's picture on purpose only
        shutil.copyfile(shot, RESOURCES / "screenshot.png")
    close_and_check(window)


class FailingSession(StreamingSession):
    """The real session, killed by an exception in the middle of an answer."""

    def run(self, buffer):
        partial_answers = 0
        for event in super().run(buffer):
            yield event
            partial_answers += isinstance(event, Answer) and not event.done
            if partial_answers == 3:
                raise RuntimeError("injected failure")


def test_session_file_and_saved_transcripts_survive_an_engine_crash(make_window, qtbot, video, tmp_path):
    window = make_window(session_factory=lambda loaded, config: FailingSession(loaded, config))
    window.open_file(str(video))
    qtbot.waitUntil(lambda: len(commentary(window)) >= 3, timeout=WAIT_MS)
    session_file = window.session_log.path
    assert session_file.name in window.session_label.text()
    window.question_edit.setText("Where is the circle?")
    window.ask_question()
    qtbot.waitUntil(lambda: "injected failure" in window.message_bar.text, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.run is None, timeout=WAIT_MS)
    entries = list(window.transcript.entries)
    assert entries[-1].kind == "answer" and not entries[-1].done  # kept, as far as it got
    assert window.start_button.isEnabled() and window.start_button.text() == "Start"

    records = read_session_log(session_file)
    logged = {(r["type"], clean_text(r["text"])) for r in records if r["type"] in ("commentary", "answer")}
    for entry in entries:  # every line shown is on disk
        assert (entry.kind, entry.text) in logged, entry
    assert any(r["type"] == "error" and "injected failure" in r["message"] for r in records)
    assert records[0]["type"] == "session"

    srt = window.save_transcript(tmp_path / "out.srt").read_text()
    cues = [block.splitlines() for block in srt.strip().split("\n\n")]
    assert len(cues) == len(entries)
    for number, cue in enumerate(cues, 1):
        assert cue[0] == str(number)
        start, arrow, end = cue[1].split(" ")
        assert arrow == "-->" and start < end and len(start) == len("00:00:00,000")
    vtt = window.save_transcript(tmp_path / "out.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(entries)
    lines = window.save_transcript(tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == [e.kind for e in entries]
    close_and_check(window)


def test_source_errors_leave_the_window_usable(make_window, qtbot, video, tmp_path):
    window = make_window()
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    window.start_source(SourceSpec("webcam", index=97, label="Camera 97"))
    qtbot.waitUntil(lambda: "no camera at index 97" in window.message_bar.text, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.run is None, timeout=WAIT_MS)

    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video")
    window.open_file(str(bogus))
    qtbot.waitUntil(lambda: "cannot open" in window.message_bar.text, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.run is None, timeout=WAIT_MS)
    assert window.start_button.isEnabled()
    listed = [window.picker.combo.itemData(i) for i in range(window.picker.combo.count())]
    assert str(bogus) not in window.recent.paths()  # refused before it joins the recent files...
    assert not any(getattr(spec, "path", None) == str(bogus) for spec in listed)  # ...and the source list
    window.open_file(str(tmp_path))  # a folder dropped on the window
    qtbot.waitUntil(lambda: "is a directory, not a video file; open a video file" in window.message_bar.text, timeout=WAIT_MS)
    assert window.run is None

    window.open_file(str(video))  # still usable: a good source plays
    qtbot.waitUntil(lambda: len(commentary(window)) >= 1, timeout=WAIT_MS)
    assert not window.message_bar.isVisible()
    close_and_check(window)


class DraggedRegion(RegionDialog):
    """The region dialog as a user leaves it: a region typed in (the drag is test_desktop_player's), OK."""

    def __init__(self, region, monitor, parent=None):
        super().__init__(region, monitor, parent, screenshot=QImage(64, 36, QImage.Format_RGB32))

    def exec(self):
        for name, value in zip(("Left", "Top", "Width", "Height"), (40, 40, 320, 240)):
            self.spins[name].setValue(value)
        return QDialog.Accepted


def test_the_screen_region_is_remembered_and_a_failed_save_names_the_fix(make_window, tmp_path, monkeypatch):
    monkeypatch.setattr("desktop_app.source_picker.RegionDialog", DraggedRegion)
    window = make_window(autoload=False)
    picker = window.picker
    picker.set_devices([], [{"index": 1, "left": 0, "top": 0, "width": 1280, "height": 720}])
    screen = next(spec for spec in map(picker.combo.itemData, range(picker.combo.count()))
                  if getattr(spec, "kind", None) == "screen")
    assert picker.select(screen) and picker.region_button.isEnabled()
    picker.region_button.click()
    assert picker.region == (40, 40, 320, 240)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    assert window.save_transcript(a_file / "out.srt") is None  # a folder that cannot be made
    assert "Could not save the transcript" in window.message_bar.text
    assert "Choose another place with File > Save transcript" in window.message_bar.text
    window.close()
    again = make_window(autoload=False)
    assert again.picker.region == (40, 40, 320, 240)
    again.close()

    store = QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)
    store.setValue("engine/screen_region", "40,40,wide,tall")  # hand-edited: the whole screen, no error
    store.sync()
    third = make_window(autoload=False)
    assert third.picker.region is None
    third.close()


class HeldAnswer(StreamingSession):
    """The real session; an answer after the end stops after its first words until it is stopped."""

    def __init__(self, loaded, config):
        super().__init__(loaded, dataclasses.replace(config, answer_max_new_tokens=40))
        self.held = threading.Event()

    def answer(self, question: str):
        for event in super().answer(question):
            yield event
            if isinstance(event, Answer) and not event.done and event.text.strip():
                self.held.wait(WAIT_MS / 1000)  # until stop(): the window closes mid-answer
                return

    def stop(self) -> None:
        self.held.set()
        super().stop()


def test_closing_mid_answer_after_the_end_logs_the_answer_so_far(make_window, qtbot, tmp_path):
    clip = write_video(tmp_path / "clip.mp4", seconds=4, fps=10, width=160, height=112)
    window = make_window(session_factory=HeldAnswer)
    window.open_file(str(clip))
    qtbot.waitUntil(lambda: window.controller.ended is not None and window.run is None, timeout=WAIT_MS)
    session_file = window.session_log.path
    window.question_edit.setText("What was there?")
    window.ask_question()
    qtbot.waitUntil(lambda: any(e.kind == "answer" and e.text.strip() for e in window.transcript.entries),
                    timeout=WAIT_MS)
    shown = next(e for e in window.transcript.entries if e.kind == "answer")
    window.close()
    answers = [r for r in read_session_log(session_file) if r["type"] == "answer"]
    assert [(r["question"], clean_text(r["text"]), r["done"]) for r in answers] == \
        [("What was there?", clean_text(shown.text), False)]


class UnpluggedCamera(FileSource):
    """A camera (played from a file) whose device stops delivering after 5 s: unplugged."""

    _read_error = VideoSource._read_error  # the camera's message, not the file's

    def describe(self) -> str:
        return "camera 7"

    def _read(self):
        frame = super()._read()
        return None if frame is not None and frame.timestamp > 5.0 else frame


def test_camera_unplugged_mid_stream_keeps_the_transcript(make_window, qtbot, video, monkeypatch):
    monkeypatch.setattr(SourceSpec, "make_source", lambda spec: UnpluggedCamera(spec.path, realtime=True))
    window = make_window()
    window.open_file(str(video))
    qtbot.waitUntil(lambda: "camera 7 stopped delivering frames" in window.message_bar.text, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.run is None, timeout=WAIT_MS)
    assert len(commentary(window)) >= 1
    assert len(window.transcript_view.entries_text()) == len(window.transcript.entries)
    close_and_check(window)


def test_screen_capture_without_a_display_is_a_message(make_window, qtbot, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    window = make_window()
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    window.start_source(SourceSpec("screen", index=1, label="Screen 1"))
    qtbot.waitUntil(lambda: "no display" in window.message_bar.text, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.run is None, timeout=WAIT_MS)
    close_and_check(window)


def test_missing_model_offers_a_local_folder(make_window, qtbot, tmp_path, tiny_model_dir, monkeypatch):
    window = make_window(model_override=str(tmp_path / "no-such-model"))
    qtbot.waitUntil(lambda: window.message_bar.isVisible(), timeout=WAIT_MS)
    assert "Choose local folder…" in window.message_bar.action_titles()
    assert window.status["model"].text() == "Model: not loaded"
    monkeypatch.setattr("desktop_app.file_dialogs.QFileDialog.getExistingDirectory",
                        lambda *args, **kwargs: str(tiny_model_dir))
    window.choose_model_folder()
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    assert window.settings.model == str(tiny_model_dir)
    assert not window.message_bar.isVisible()
    close_and_check(window)


def test_a_failed_load_takes_back_the_start_it_promised(make_window, qtbot, video, tmp_path):
    window = make_window(model_override=str(tmp_path / "no-such-model"), autoload=False)
    window.open_file(str(video))  # no model yet: "... starts when it is ready", and the load begins
    assert any("starts when it is ready" in m.text for m in window.message_bar.messages())
    qtbot.waitUntil(lambda: "Choose local folder…" in window.message_bar.action_titles(), timeout=WAIT_MS)
    assert not any("starts when it is ready" in m.text for m in window.message_bar.messages())
    assert window.run is None and not window.controller.waiting_for_model
    close_and_check(window)


def test_settings_survive_a_restart(make_window, qtbot, tmp_path, tiny_model_dir):
    window = make_window(autoload=False, model_override=None)
    assert window.settings == AppSettings()  # a fresh settings file: the defaults
    chosen = AppSettings(model=str(tiny_model_dir), max_pixels=200 * 28 * 28, repetition_penalty=1.15,
                         max_new_tokens=24, instruction="Describe the video in French.", speech_enabled=True,
                         voice="espeak:fr", audio_device="null output")
    dialog = SettingsDialog(chosen, window, devices=["null output"])
    assert dialog.result_settings() == chosen  # the dialog shows and returns every field
    window.apply_settings(dialog.result_settings())
    assert window.instruction_edit.text() == "Describe the video in French."
    assert window.speak_action.isChecked()
    # speech turns on at once: the voice loads, and "null output" is no device on this machine
    qtbot.waitUntil(lambda: "no audio output device" in window.message_bar.text, timeout=WAIT_MS)
    assert window.status["speech"].text().startswith("Speech: error: no audio output device")
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)  # a new model loads at once
    window.close()

    again = make_window(autoload=False, model_override=None)
    assert again.settings == dataclasses.replace(chosen, speech_enabled=False)  # it failed: not remembered as on
    assert again.instruction_edit.text() == "Describe the video in French."
    assert again.model_name == str(tiny_model_dir)
    again.close()


def test_a_new_weight_precision_reloads_the_model(make_window, monkeypatch):
    window = make_window(autoload=False)
    loads = []
    monkeypatch.setattr(window, "load_model", lambda: loads.append(window.settings.quantize))
    window.apply_settings(dataclasses.replace(window.settings, quantize="int8"))
    assert loads == ["int8"]  # the model and its precision go together: Quantize is applied, not only saved
    window.apply_settings(dataclasses.replace(window.settings, max_new_tokens=20, memory=False))
    assert loads == ["int8"]  # these wait for the next Start
    window.close()


def test_a_full_message_stack_drops_the_oldest_of_the_least_severe(qtbot):
    bar = MessageBar()
    qtbot.addWidget(bar)
    notices = [f"notice {i}" for i in range(MAX_MESSAGES)]
    for text in notices:
        bar.show_message(text, "info")
    bar.show_message("broken", "error")
    assert [m.text for m in bar.messages()] == ["broken", *notices[1:]]  # the first notice went
    bar.show_message("careful", "warning")
    assert [m.text for m in bar.messages()] == ["broken", "careful", *notices[2:]]
    bar.show_message("newest notice", "info")
    assert [m.text for m in bar.messages()] == ["broken", "careful", notices[3], "newest notice"]
