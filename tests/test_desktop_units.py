"""Qt-free parts of the desktop app: the transcript model, the session log, captions, the
preview tap."""

from __future__ import annotations

import json
import stat

import numpy as np

from desktop_app.captions import ANSWER_CHARS, FADE_S, HOLD_S, CaptionTrack
from desktop_app.preview import PreviewBuffer
from desktop_app.transcript import SessionLog, Transcript, clean_text, read_session_log, save_transcript
from engine.session.events import Answer, Commentary, Stats
from engine.capture.frames import Frame


def _stats(i: int) -> Stats:
    return Stats(i, i, i + 1, 1, 1, 1, 1, 3, 100, 1000, 0, 0, 0)


def test_transcript_folds_streaming_answers_and_hides_silence():
    t = Transcript()
    assert t.apply(Commentary(0.0, 3.0, "a man walks", 0)) == (0, True)
    assert t.apply(Commentary(3.0, 4.0, "  ", 1)) is None  # silence is not an entry
    assert t.apply(_stats(1)) is None
    assert t.apply(Answer("who?", "a", False, 4.0)) == (1, True)
    assert t.apply(Answer("who?", "a man\x15", False, 4.0)) == (1, False)
    assert t.open_answer is t.entries[1]
    assert t.apply(Answer("who?", "a man in red", True, 4.0)) == (1, False)
    assert t.open_answer is None
    assert t.apply(Commentary(4.0, 5.0, "he\ufffd runs", 2)) == (2, True)
    assert [(e.kind, e.text) for e in t.entries] == [
        ("commentary", "a man walks"), ("answer", "a man in red"), ("commentary", "he runs")]
    assert clean_text("x\r\ny\tz\x00") == "x\ny z"


def test_saved_formats_are_valid(tmp_path):
    t = Transcript()
    for i, text in enumerate(["one", "two", "three"]):
        t.apply(Commentary(3.0 + i if i else 0.0, 4.0 + i if i else 3.0, text, i))
    t.apply(Answer("what?", "an answer", True, 5.2))
    srt = save_transcript(t.entries, tmp_path / "t.srt").read_text()
    blocks = [b.splitlines() for b in srt.strip().split("\n\n")]
    assert [b[0] for b in blocks] == [str(i) for i in range(1, len(blocks) + 1)]
    assert blocks[0][1] == "00:00:00,000 --> 00:00:03,000" and blocks[0][2] == "one"
    vtt = save_transcript(t.entries, tmp_path / "t.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n") and "00:00:04.000 --> 00:00:05.000\ntwo" in vtt
    records = [json.loads(line) for line in save_transcript(t.entries, tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["type"] for r in records] == ["commentary"] * 3 + ["answer"]
    assert records[3]["question"] == "what?" and records[3]["text"] == "an answer"
    assert "Q: what?" in save_transcript(t.entries, tmp_path / "t.txt").read_text()


def test_session_log_is_readable_while_open(tmp_path):
    log = SessionLog.create(tmp_path)
    log.write_event(Commentary(0.0, 3.0, "hello", 0))
    records = read_session_log(log.path)  # flushed: another reader sees it before close
    assert records[0]["type"] == "commentary" and records[0]["text"] == "hello"
    second = SessionLog.create(tmp_path, now=None)
    assert second.path != log.path
    log.close()
    log.write({"type": "late"})  # after close: ignored, not an exception
    assert len(read_session_log(log.path)) == 1


def test_session_log_leaves_a_chosen_folders_mode_alone_and_makes_its_own_private(tmp_path):
    chosen = tmp_path / "Documents"  # --sessions-dir ~/Documents: the user's folder, not the app's
    chosen.mkdir()
    chosen.chmod(0o755)
    log = SessionLog.create(chosen)
    log.close()
    assert stat.S_IMODE(chosen.stat().st_mode) == 0o755
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600  # the file is private all the same
    made = SessionLog.create(tmp_path / "new" / "sessions")
    made.close()
    assert stat.S_IMODE(made.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600


def test_captions_merge_fragments_fade_and_keep_answers_short():
    now = [100.0]
    track = CaptionTrack(clock=lambda: now[0])
    track.apply(Commentary(0.0, 3.0, "a man", 0))
    now[0] += 1
    track.apply(Commentary(3.0, 4.0, "walks in", 1))  # a fresh, short line grows
    assert [c.text for c in track.lines] == ["a man walks in"]
    now[0] += 4
    track.apply(Commentary(4.0, 5.0, "and sits", 2))  # an older line is left alone
    assert len(track.lines) == 2 and track.lines[1].time == 4.0
    track.apply(Answer("q?", "x " * 400, False, 5.0))
    assert len(track.answer.text) <= ANSWER_CHARS + 1 and track.answer.text.startswith("…")
    now[0] += HOLD_S + FADE_S / 2
    answer, lines = track.visible()
    assert answer is not None  # streaming answers never fade
    assert [round(o, 2) for _, o in lines] == [0.5]  # the first line is gone, the second fading
    now[0] += FADE_S
    assert track.texts() == [track.answer.text]


def test_preview_tap_sees_every_frame_while_the_ring_keeps_the_engine_grid():
    buf = PreviewBuffer(capacity=8, keep_fps=4.0)
    img = np.zeros((4, 4, 3), np.uint8)
    for i in range(30):  # 1 s at 30 fps
        buf.put(Frame(img, i / 30))
        assert buf.preview()[0] == i + 1
    kept = [f.timestamp for f in buf.snapshot()]
    assert len(kept) == 4 and kept[0] == 0.0  # one frame per 1/4 s tick
    buf.discard_before(10.0)  # the engine consumed everything
    seq, frame = buf.preview()
    assert seq == 30 and frame.timestamp == 29 / 30


def test_no_display_is_a_one_line_error_not_a_qt_abort():
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "desktop_app.main"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("livecc-desktop: error: no display")
    assert proc.stderr.strip().count("\n") == 0


def test_the_settings_file_listing_recent_videos_is_private_like_session_files(tmp_path):
    from PySide6.QtCore import QSettings

    from desktop_app.recent import RecentFiles
    from desktop_app.settings import AppSettings

    clip = tmp_path / "holiday.mp4"
    clip.write_bytes(b"")
    older = tmp_path / "older.ini"  # written 0644 by an earlier version
    older.write_text("[engine]\nmax_new_tokens=20\n")
    older.chmod(0o644)
    for path in (tmp_path / "fresh.ini", older):
        store = QSettings(str(path), QSettings.IniFormat)
        settings = AppSettings.load(store)  # what the window does first
        RecentFiles(store).add(clip)
        settings.save(store)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert str(clip) in path.read_text()
    assert AppSettings.load(QSettings(str(older), QSettings.IniFormat)).max_new_tokens == 20
