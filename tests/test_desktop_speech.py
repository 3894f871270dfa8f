"""Speech and context in the desktop app (issues 4 and 6), offscreen, with the real engine, the
tiny random model, espeak-ng and a real PortAudio stream into an ALSA null device."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtCore import QSettings

from desktop_app.settings import AppSettings
from desktop_app.transcript import read_session_log
from engine.session.session import StreamingSession
from test_desktop_app import (WAIT_MS, app, close_and_check, commentary, make_window,  # noqa: F401
                              store_settings, video)
from tts.player import SpeechPlayer
from tts.scheduler import Kind
from videos import write_video


@pytest.fixture
def said(monkeypatch):
    """A spy on the real SpeechPlayer.say_commentary: records each call, then calls through."""
    calls: list[tuple[str, float, float]] = []
    original = SpeechPlayer.say_commentary

    def spy(self, text, start, end):
        calls.append((text, start, end))
        original(self, text, start, end)

    monkeypatch.setattr(SpeechPlayer, "say_commentary", spy)
    return calls


def test_speech_speaks_commentary_and_answers_and_the_toggle_mutes(make_window, qtbot, video, tmp_path, null_audio,
                                                                   said):
    store_settings(tmp_path, speech_enabled=True, voice="espeak")
    window = make_window()
    assert window.speak_action.isChecked()
    qtbot.waitUntil(lambda: window.status["speech"].text() == "Speech: ready (espeak-ng)", timeout=WAIT_MS)
    window.open_file(str(video))
    qtbot.waitUntil(lambda: sum(bool(text) for text, _, _ in said) >= 2, timeout=WAIT_MS)
    player = window.speech.player
    assert player is not None and player.state in ("idle", "speaking")
    qtbot.waitUntil(lambda: window.status["speech"].text() == f"Speech: {player.state} (espeak-ng)", timeout=WAIT_MS)
    # every comment shown reached the player, and its video clock follows the chunks
    shown = commentary(window)
    spoken = [(start, end) for text, start, end in said if text]
    assert [(e.start, e.end) for e in shown] == spoken[:len(shown)]
    assert player.video.now() >= shown[-1].end

    window.question_edit.setText("What is moving?")
    window.ask_question()  # answers are never dropped as stale: this one is heard in full
    qtbot.waitUntil(lambda: any(s.phrase.kind is Kind.ANSWER for s in player.started), timeout=WAIT_MS)
    assert player.stats.blocks_played > 0  # audio went through the real output stream

    window.speak_action.trigger()  # the toolbar's Speak toggle: off mutes at once
    assert player.state == "muted" and window.speech.player is player
    qtbot.waitUntil(lambda: window.status["speech"].text() == "Speech: muted (espeak-ng)", timeout=WAIT_MS)
    assert AppSettings.load(window.store).speech_enabled is False  # remembered
    heard, calls = len(player.started), len(said)
    qtbot.waitUntil(lambda: len(said) >= calls + 3, timeout=WAIT_MS)  # commentary goes on...
    assert len(player.started) == heard  # ...unheard
    assert not player.scheduler.has_pending()

    window.speak_action.trigger()
    assert player.state in ("idle", "speaking") and AppSettings.load(window.store).speech_enabled

    close_and_check(window)  # the player's worker is joined with the engine, within 2 s
    assert player.state == "off" and window.speech.player is None


def test_an_answer_after_the_end_of_a_file_is_spoken(make_window, qtbot, tmp_path, null_audio):
    """The file's session is kept for questions after its end, and so is its voice."""
    clip = write_video(tmp_path / "clip.mp4", seconds=4, fps=10, width=160, height=112)
    store_settings(tmp_path, speech_enabled=True, voice="espeak")
    window = make_window()
    qtbot.waitUntil(lambda: window.status["speech"].text() == "Speech: ready (espeak-ng)", timeout=WAIT_MS)
    window.open_file(str(clip))
    qtbot.waitUntil(lambda: window.controller.ended is not None and window.run is None, timeout=WAIT_MS)
    player = window.speech.player
    assert player is not None
    window.question_edit.setText("What was there?")
    window.ask_question()
    qtbot.waitUntil(lambda: any(e.kind == "answer" and e.done for e in window.transcript.entries), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: any(s.phrase.kind is Kind.ANSWER for s in player.started), timeout=WAIT_MS)
    close_and_check(window)


def test_missing_audio_device_is_a_message_and_the_app_plays_on(make_window, qtbot, video, tmp_path, null_audio):
    store_settings(tmp_path, speech_enabled=True, voice="none", audio_device="no such card")
    window = make_window()
    qtbot.waitUntil(lambda: "no audio output device" in window.message_bar.text, timeout=WAIT_MS)
    assert "choose another Audio output in Settings" in window.message_bar.text  # the app's fix, not the CLI's
    assert window.status["speech"].text() == "Speech: error: no audio output device"
    assert window.speech.state.startswith("error: no audio output device")

    window.open_file(str(video))  # Start retries the device, says so again, and the video plays
    qtbot.waitUntil(lambda: len(commentary(window)) >= 2, timeout=WAIT_MS)
    assert window.speech.player is None
    assert "no audio output device" in window.message_bar.text
    assert window.status["speech"].text().startswith("Speech: error")
    close_and_check(window)


def test_a_bad_speech_switch_is_a_message_and_the_app_plays_on(make_window, qtbot, video, tmp_path, null_audio,
                                                               monkeypatch):
    monkeypatch.setenv("LIVECC_SPEECH_START", "word")  # not a policy the player knows
    store_settings(tmp_path, speech_enabled=True, voice="none")
    window = make_window()
    window.open_file(str(video))
    qtbot.waitUntil(lambda: "LIVECC_SPEECH_START" in window.message_bar.text, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: len(commentary(window)) >= 2, timeout=WAIT_MS)
    assert window.speech.player is None
    close_and_check(window)


def small_context(loaded, config):
    """The real session with 56x56 frames and a 400-token KV budget: a compaction every few s."""
    return StreamingSession(loaded, dataclasses.replace(
        config, max_pixels=56 * 56, min_pixels=56 * 56, max_new_tokens=4, answer_max_new_tokens=8,
        kv_budget=400, video_window_s=3.0, memory_tokens=48))


def test_compactions_show_in_the_status_bar(make_window, qtbot, video):
    window = make_window(session_factory=small_context)
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    window.open_file(str(video))
    qtbot.waitUntil(lambda: "· 2 compactions" in window.status["context"].text(), timeout=WAIT_MS)
    assert window.status["context"].text().startswith("Context ")
    compacted = [m for m in messages if m.startswith("Context compacted: ")]
    assert len(compacted) >= 2 and " → " in compacted[0] and "tokens" in compacted[0]
    records = read_session_log(window.session_log.path)
    assert sum(r["type"] == "compaction" for r in records) >= 2
    assert all(r["tokens_after"] < r["tokens_before"] for r in records if r["type"] == "compaction")
    close_and_check(window)


def test_speech_settings_persist_and_a_new_voice_replaces_the_old(make_window, qtbot, tmp_path, null_audio):
    store_settings(tmp_path, voice="espeak")
    window = make_window(autoload=False)
    assert not window.speak_action.isChecked() and window.status["speech"].text() == "Speech: off"
    window.speak_action.trigger()  # on: the voice loads in the background
    qtbot.waitUntil(lambda: window.status["speech"].text() == "Speech: ready (espeak-ng)", timeout=WAIT_MS)
    window.apply_settings(dataclasses.replace(window.settings, voice="none"))
    qtbot.waitUntil(lambda: window.status["speech"].text() == "Speech: ready (silent)", timeout=WAIT_MS)
    stored = AppSettings.load(QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    assert stored.speech_enabled and stored.voice == "none"
    close_and_check(window)
