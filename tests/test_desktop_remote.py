"""The desktop app as a client of `livecc serve` (issue 22, acceptance 2): Settings > Engine > Server,
then start, captions, a question, a seek and stop over a real server (the ASGI app under uvicorn in
this process, tiny model), and each way the server can fail as one line in the message bar."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLineEdit

from desktop_app.controller import State
from desktop_app.main_window import MainWindow
from desktop_app.settings import LOCAL, SERVER
from desktop_app.settings_dialog import SettingsDialog
from desktop_app.source_picker import SourceSpec
from engine.capture.sources import FileSource
from engine.defaults import min_pixels_for
from engine.model.sizes import capture_size
from livecc.client.session import RemoteSession
from livecc.server.speech import ReplicaVoice
from servers import TextTone, record_frames, running_server, wait_idle
from test_sources import run_to_end
from test_desktop_app import (WAIT_MS, app, commentary, engine_threads_alive,  # noqa: F401
                              make_window, seek_and_comment, store_settings)
from tts.received import ReceivedVoice
from tts.scheduler import Kind
from videos import write_video

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def server(tiny_loaded, tiny_model_dir):
    with running_server(tiny_loaded, tiny_model_dir, sessions=2, token=TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("remote") / "match.mp4", seconds=30, fps=10, width=320, height=180)


def close_client(window: MainWindow) -> None:
    """but the server's own threads (its engine core, its voice) live in this process too."""
    server_threads = {name for name in engine_threads_alive() if name.startswith(("livecc-engine-core",
                                                                                   "livecc-server-"))}
    run = window.run
    window.close()
    assert window.run is None and (run is None or not run.running)
    assert set(engine_threads_alive()) == server_threads


def short_remote_answers(loaded, config):
    """The server's session, with answers capped so the random tiny model does not ramble."""
    config.settings["answer_max_new_tokens"] = 24
    return loaded.session(config)


def recalling_remote(loaded, config):
    """Short answers, and a context that compacts within seconds, so that a question recalls key frames."""
    config.settings.update(kv_budget=600, memory_tokens=16, video_window_s=2.0, max_new_tokens=4)
    return short_remote_answers(loaded, config)


def server_window(make_window, tmp_path, url: str, token: str = TOKEN, factory=short_remote_answers,
                  **kwargs) -> MainWindow:
    store_settings(tmp_path, engine=SERVER, server_url=url, server_token=token, max_pixels=100 * 28 * 28)
    return make_window(session_factory=factory, model_override=None, **kwargs)


def test_a_run_over_the_server_captions_answers_seeks_and_stops(make_window, qtbot, server, video, tmp_path,
                                                                monkeypatch):
    url, running = server
    sent = record_frames(monkeypatch)
    window = server_window(make_window, tmp_path, url)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)  # "loading" is connecting
    assert window.status["model"].text() == f"Model: {Path(window.loaded.model).name} on {url[5:]} (server)"
    window.open_file(str(video))
    qtbot.waitUntil(lambda: len(commentary(window)) >= 2, timeout=WAIT_MS)
    assert commentary(window)[-1].text in " ".join(window.video_view.captions.texts())
    assert all(e.text in line for e, line in zip(commentary(window), window.transcript_view.entries_text()))
    qtbot.waitUntil(lambda: re.fullmatch(r"Server \d+(\.\d)? ms", window.status["server"].text()) is not None,
                    timeout=WAIT_MS)  # the round trip, from the connection's pings

    window.question_edit.setText("What is moving?")
    window.ask_question()
    qtbot.waitUntil(lambda: any(e.kind == "answer" and e.done for e in window.transcript.entries), timeout=WAIT_MS)
    assert window.video_view.captions.answer.question == "What is moving?"
    # Up go the frames the session samples at 2 fps, not the preview's 8 (FileSource(sample_fps=2) picks them)
    played = [t for t, _ in sent]
    reference, _ = run_to_end(FileSource(video, end=played[-1], sample_fps=2))
    assert played == [f.timestamp for f in reference]
    assert len(played) <= 2 * (played[-1] + 0.1) + 1  # a tick each 0.5 s to the last frame's end (10 fps file)

    _, after = seek_and_comment(qtbot, window, 20.0)
    assert after[0].start == pytest.approx(20.0) and all(e.start >= 20.0 for e in after)

    window.stop()
    qtbot.waitUntil(lambda: window.controller.state is State.IDLE, timeout=WAIT_MS)
    assert window.transcript.entries and window.message_bar.text == ""
    close_client(window)
    wait_idle(running)


def test_after_the_end_of_a_video_the_server_answers_with_its_moments(make_window, qtbot, server, tmp_path):
    """As a local run: the session outlives its video for questions, and an answer shows a thumbnail
    of each moment it recalled; closing the window ends the session on the server."""
    url, running = server
    clip = write_video(tmp_path / "clip.mp4", seconds=12, fps=10, width=160, height=112)
    window = server_window(make_window, tmp_path, url, factory=recalling_remote)
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    shown: list[str] = []
    window.statusBar().messageChanged.connect(shown.append)  # every message, however briefly it shows
    window.open_file(str(clip))
    qtbot.waitUntil(lambda: window.controller.state is State.ENDED, timeout=WAIT_MS)
    assert next(m for m in shown if m.startswith("End of video")).endswith("questions are still answered")
    assert window.run is None and window.controller.ended is not None

    window.question_edit.setText("What was there at first?")
    window.ask_question()
    qtbot.waitUntil(lambda: any(e.kind == "answer" and e.done for e in window.transcript.entries), timeout=WAIT_MS)
    index, answer = next((i, e) for i, e in enumerate(window.transcript.entries) if e.kind == "answer")
    assert answer.recalled and len(answer.thumbnails) == len(answer.recalled)
    assert window.transcript_view.entries_text()[index].count("\ufffc") == len(answer.recalled)  # the pictures
    close_client(window)
    wait_idle(running)  # the kept session closed with the window


@pytest.mark.parametrize("case", ["wrong token", "unreachable", "busy"])
def test_a_server_that_refuses_is_one_line_in_the_message_bar(make_window, qtbot, server, tmp_path, case):
    url, running = server
    held = [RemoteSession.connect(url, TOKEN) for _ in range(2)] if case == "busy" else []
    try:
        window = server_window(make_window, tmp_path, "ws://127.0.0.1:9" if case == "unreachable" else url,
                               token="wrong" if case == "wrong token" else TOKEN)
        qtbot.waitUntil(lambda: window.message_bar.text != "", timeout=WAIT_MS)
    finally:
        for remote in held:
            remote.close()
    text = window.message_bar.text
    assert "\n" not in text and "Traceback" not in text and "--" not in text  # the app's words, not the CLI's
    assert {"wrong token": "enter the server's token in Settings > Engine",
            "unreachable": "check the URL in Settings > Engine",
            "busy": "is busy (every session slot is taken); press Start again later"}[case] in text
    assert window.loaded is None and window.controller.state is State.IDLE
    window.close()
    wait_idle(running)


def test_a_server_stopping_mid_run_keeps_the_transcript(make_window, qtbot, tiny_loaded, tiny_model_dir, video,
                                                        tmp_path):
    with running_server(tiny_loaded, tiny_model_dir, sessions=1) as (url, running):
        window = server_window(make_window, tmp_path, url, token="")
        window.open_file(str(video))
        qtbot.waitUntil(lambda: len(commentary(window)) >= 1, timeout=WAIT_MS)
        asyncio.run_coroutine_threadsafe(running.hub.drain(), running._loop).result(60)
        qtbot.waitUntil(lambda: window.controller.state is State.IDLE, timeout=WAIT_MS)
    assert "server stopping" in window.message_bar.text and "press Start when the server is back" in \
        window.message_bar.text
    assert commentary(window)  # the transcript is kept
    close_client(window)


def test_a_source_that_fails_to_open_gives_the_server_its_slot_back(make_window, qtbot, tiny_loaded,
                                                                   tiny_model_dir, video, tmp_path):
    """The first Start takes the connection that checked the server; when its source cannot be opened
    (no camera at that index) that connection closes with the run, so the one-slot server takes the next."""
    with running_server(tiny_loaded, tiny_model_dir, sessions=1) as (url, running):
        window = server_window(make_window, tmp_path, url, token="")
        qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
        window.start_source(SourceSpec("webcam", index=97, label="Camera 97"))
        qtbot.waitUntil(lambda: "no camera at index 97" in window.message_bar.text and window.run is None,
                        timeout=WAIT_MS)
        wait_idle(running)  # with the connection left open, the server would hold its one slot
        window.open_file(str(video))
        qtbot.waitUntil(lambda: len(commentary(window)) >= 1, timeout=WAIT_MS)
        close_client(window)
        wait_idle(running)


def test_the_engine_settings_refuse_a_bad_url_and_are_remembered(make_window, qtbot, server, tmp_path):
    url, running = server
    window = make_window(autoload=False)
    assert window.settings.engine == LOCAL and "server" not in window.presenter.fields.fields
    dialog = SettingsDialog(window.settings, window, devices=[])
    dialog.show()
    engine = dialog.engine
    assert engine.token.echoMode() == QLineEdit.Password and not engine.url.isEnabled()
    engine.choice.setCurrentIndex(engine.choice.findData(SERVER))
    engine.url.setText("http://127.0.0.1:8000")
    engine.token.setText(TOKEN)
    dialog.accept()
    assert dialog.isVisible() and dialog.result() == 0  # refused: the dialog stays open and says why
    assert not engine.problem.isHidden() and "ws://127.0.0.1:8000 in Settings > Engine" in engine.problem.text()
    engine.url.setText(url)
    dialog.accept()
    assert not dialog.isVisible() and dialog.result() == 1
    window.apply_settings(dialog.result_settings())  # a new engine: connect now
    qtbot.waitUntil(lambda: window.loaded is not None, timeout=WAIT_MS)
    assert window.presenter.fields.fields["server"].wanted
    window.close()

    again = make_window(autoload=False)
    assert (again.settings.engine, again.settings.server_url, again.settings.server_token) == (SERVER, url, TOKEN)
    again.close()
    wait_idle(running)


def test_the_app_runs_over_the_server_without_torch(server, tmp_path):
    """A client-only install: the window, Settings > Engine > Server, a run's first captions, with
    `import torch` failing; frames go up at the model's size, resized here."""
    url, running = server
    video = write_video(tmp_path / "wide.mp4", seconds=8, fps=10, width=640, height=360)
    max_pixels = 160 * 28 * 28
    store_settings(tmp_path, engine=SERVER, server_url=url, server_token=TOKEN, max_pixels=max_pixels)
    script = f"""
import sys, time
sys.modules["torch"] = sys.modules["transformers"] = None
from pathlib import Path
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from desktop_app.main import create_application
from desktop_app.main_window import MainWindow
from livecc import protocol as wire
from livecc.client.session import RemoteSession
import base64
sizes, send = set(), RemoteSession.send
def record(self, message):
    if message["type"] == "input_video_buffer.append":
        sizes.add(wire.image_size(base64.b64decode(message["frame"]), message["format"]))
    send(self, message)
RemoteSession.send = record
app = create_application()
window = MainWindow(QSettings({str(tmp_path / 'settings.ini')!r}, QSettings.IniFormat), sessions_dir=Path({str(tmp_path)!r}),
                    probe_devices=False)
window.open_file({str(video)!r})
deadline = time.monotonic() + 90
while not any(e.kind == "commentary" for e in window.transcript.entries) and time.monotonic() < deadline:
    app.processEvents(); time.sleep(0.05)
print("sizes", sorted(sizes))
print("commentary" if any(e.kind == "commentary" for e in window.transcript.entries) else window.message_bar.text)
window.close()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), QT_QPA_PLATFORM="offscreen"))
    assert done.returncode == 0 and done.stdout.strip().endswith("commentary"), done.stdout + done.stderr
    size = capture_size(360, 640, max_pixels, min_pixels_for(max_pixels))
    assert size == (252, 448) and f"sizes [{size}]" in done.stdout  # every frame at the model's size
    wait_idle(running)


def speaking_window(make_window, tmp_path, url: str, token: str) -> MainWindow:
    store_settings(tmp_path, engine=SERVER, server_url=url, server_token=token, max_pixels=100 * 28 * 28,
                   speech_enabled=True, voice="chattts")  # a voice that would need a download here
    return make_window(session_factory=short_remote_answers, model_override=None)


def test_over_a_server_the_app_plays_the_server_s_voice(make_window, qtbot, tiny_loaded, tiny_model_dir, video,
                                                         tmp_path, null_audio, monkeypatch):
    import tts.factory

    def no_local_voice(*_args, **_kwargs):
        raise AssertionError("over a server the app needs no synthesizer of its own")

    monkeypatch.setattr(tts.factory, "make_synthesizer", no_local_voice)
    with running_server(tiny_loaded, tiny_model_dir, voice=ReplicaVoice(TextTone()), sessions=1) as (url, running):
        window = speaking_window(make_window, tmp_path, url, "")
        qtbot.waitUntil(lambda: window.status["speech"].text() == "Speech: ready (server)", timeout=WAIT_MS)
        window.open_file(str(video))
        qtbot.waitUntil(lambda: window.speech.player is not None and any(
            s.phrase.kind is Kind.COMMENTARY for s in window.speech.player.started), timeout=WAIT_MS)
        player = window.speech.player
        assert isinstance(player.synth, ReceivedVoice)
        qtbot.waitUntil(lambda: player.stats.blocks_played > 0, timeout=WAIT_MS)  # through the real output stream

        window.speak_action.trigger()  # Speak off: the server stops speaking for this session
        qtbot.waitUntil(lambda: [c.speech for c in running.hub.connections] == [None], timeout=WAIT_MS)
        assert window.run is not None and window.message_bar.text == ""
        close_client(window)
        wait_idle(running)


def test_speak_over_a_server_without_a_voice_is_one_line_and_the_run_goes_on(make_window, qtbot, server, video,
                                                                             tmp_path, null_audio):
    url, running = server
    window = speaking_window(make_window, tmp_path, url, TOKEN)
    window.open_file(str(video))
    qtbot.waitUntil(lambda: "the server has no speech" in window.message_bar.text, timeout=WAIT_MS)
    assert "start the server with `livecc serve --speech chattts`, or turn Speak off" in window.message_bar.text
    assert "\n" not in window.message_bar.text
    qtbot.waitUntil(lambda: len(commentary(window)) >= 1, timeout=WAIT_MS)  # the captions go on
    assert not window.speak_action.isChecked()
    close_client(window)
    wait_idle(running)
