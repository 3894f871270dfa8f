"""`livecc narrate --webcam` / `--screen` (issue 22, Clients: "the same for webcam and screen"): a
camera or the screen narrated here or on a server into the same SRT, VTT and JSONL as a file, until
--duration or Ctrl-C; no camera, no display or a bad region is one line and exit 2 before the model
loads. The camera and the screen are stand-ins (tests/fake_devices.py): CI has neither."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from engine.capture import sources
from engine.capture.sources import WebcamSource
from engine.output.narrate import NarrationFiles
from engine.session.events import Stats
from fake_devices import FakeCamera, FakeScreen
from livecc.cli.main import main
from livecc.client.session import RemoteSession
from servers import running_server, wait_idle
from test_cli import SMALL, parse_srt

TOKEN = "s3cret"
SUMMARY = re.compile(r"^livecc: (\d+) chunks, \d+ comments, \d+ s skipped; wrote (.*)$", re.M)


@pytest.fixture(scope="module")
def server(tiny_loaded, tiny_model_dir):
    with running_server(tiny_loaded, tiny_model_dir, sessions=2, token=TOKEN) as running:
        yield running


@pytest.fixture
def camera(monkeypatch) -> list[FakeCamera]:
    """Camera 0 is a FakeCamera; the list holds each one opened (the check, then the run)."""
    opened: list[FakeCamera] = []

    def open_camera(source):
        opened.append(FakeCamera())
        return opened[-1]

    monkeypatch.setattr(sources, "_camera_exists", lambda index: index == 0)
    monkeypatch.setattr(WebcamSource, "_open_capture", open_camera)
    return opened


@pytest.fixture(params=["here", "server"])
def where(request, tiny_model_dir) -> list[str]:
    """Where the model runs: flags for a local run, or for the test server."""
    if request.param == "here":
        yield ["--model", str(tiny_model_dir)]
        return
    url, running = request.getfixturevalue("server")
    yield ["--server", url, "--token", TOKEN]
    wait_idle(running)


def outputs(folder: Path) -> list[str]:
    return ["--srt", str(folder / "a.srt"), "--vtt", str(folder / "a.vtt"), "--jsonl", str(folder / "a.jsonl")]


def written(srt: Path, vtt: Path, jsonl: Path) -> list[dict]:
    """The JSONL's records, after checking the subtitles hold exactly its comments."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    spoken = [(r["start"], r["end"]) for r in records if r["text"]]
    assert [(a, b) for a, b, _ in parse_srt(srt.read_text())] == spoken if spoken else not srt.read_text().strip()
    assert vtt.read_text().startswith("WEBVTT") and vtt.read_text().count("-->") == len(spoken)
    assert [r["chunk_index"] for r in records] == list(range(len(records)))
    return records


def test_a_camera_is_narrated_until_the_duration(camera, where, tmp_path, capsys, monkeypatch):
    asked = []
    update = RemoteSession.update
    monkeypatch.setattr(RemoteSession, "update", lambda self, text, settings, *audio: asked.append(settings) or
                        update(self, text, settings, *audio))
    assert main(["narrate", "--webcam", "--duration", "4", *outputs(tmp_path), *where, *SMALL]) == 0
    records = written(tmp_path / "a.srt", tmp_path / "a.vtt", tmp_path / "a.jsonl")
    assert records and (records[0]["start"], records[0]["end"]) == (0.0, 3.0)
    assert all(r["start"] < 4 for r in records) and records[-1]["end"] == 4.0  # up to the duration, not past it
    assert int(SUMMARY.search(capsys.readouterr().err).group(1)) == len(records)
    assert all(c.released for c in camera) and len(camera) == 2  # checked before the model loads, then run
    assert all(s["live"] is True for s in asked)  # a server's session lets the newest frames win too


def test_ctrl_c_ends_a_camera_narration_with_every_chunk_in_the_files(camera, where, tmp_path, capsys, monkeypatch):
    on_event, chunks = NarrationFiles.on_event, []

    def ctrl_c_after_two_chunks(self, event):
        on_event(self, event)
        if isinstance(event, Stats):  # the chunk's record is in the JSONL
            chunks.append(event)
            if len(chunks) == 2:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(NarrationFiles, "on_event", ctrl_c_after_two_chunks)
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert main(["narrate", "--webcam", *outputs(tmp_path), *where, *SMALL]) == 130
    finally:
        signal.signal(signal.SIGINT, handler)  # the CLI stays deaf to a second Ctrl-C once stopping
    records = written(tmp_path / "a.srt", tmp_path / "a.vtt", tmp_path / "a.jsonl")
    assert len(records) == 2 and all("stats" in r for r in records)
    err = capsys.readouterr().err
    assert "livecc: interrupted (SIGINT)" in err and SUMMARY.search(err).group(1) == "2"
    assert all(c.released for c in camera)


def test_an_unplugged_camera_over_a_server_is_one_line_after_its_chunks(server, monkeypatch, tmp_path, capsys):
    url, running = server
    monkeypatch.setattr(sources, "_camera_exists", lambda index: True)
    monkeypatch.setattr(WebcamSource, "_open_capture", lambda self: FakeCamera(works_for=45))
    assert main(["narrate", "--webcam", "--server", url, "--token", TOKEN, *outputs(tmp_path), *SMALL]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "error" in line] == [
        "livecc: error: camera 0 stopped delivering frames: check that it is still connected, then restart it"]
    assert written(tmp_path / "a.srt", tmp_path / "a.vtt", tmp_path / "a.jsonl")  # the chunks before it are kept
    wait_idle(running)


def test_a_screen_region_is_narrated_into_files_named_after_it(tiny_model_dir, tmp_path, capsys, monkeypatch):
    screen = FakeScreen()
    monkeypatch.setattr(sources, "_new_mss", lambda: screen)
    assert main(["narrate", "--screen", "2:10,20,60,40", "--duration", "3", "--out-dir", str(tmp_path / "out"),
                 "--model", str(tiny_model_dir), *SMALL]) == 0
    srt, vtt, jsonl = (next((tmp_path / "out").glob(f"screen2-*.{kind}")) for kind in ("srt", "vtt", "jsonl"))
    assert re.fullmatch(r"screen2-\d{8}-\d{6}", jsonl.stem) and srt.stem == vtt.stem == jsonl.stem
    assert written(srt, vtt, jsonl)
    assert {tuple(box.values()) for box in screen.boxes} == {(210, 20, 60, 40)}  # the region, on monitor 2
    assert str(jsonl) in SUMMARY.search(capsys.readouterr().err).group(2)


def _no_camera(monkeypatch):
    monkeypatch.setattr(sources, "_camera_exists", lambda index: False)


def _camera_that_does_not_open(monkeypatch):
    class Closed(FakeCamera):
        def isOpened(self):
            return False

    monkeypatch.setattr(sources, "_camera_exists", lambda index: True)
    monkeypatch.setattr(WebcamSource, "_open_capture", lambda self: Closed())


def _no_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(sources, "_is_linux", lambda: True)


def _screen(monkeypatch):
    monkeypatch.setattr(sources, "_new_mss", lambda: FakeScreen())


# (case, the stand-in, flags, what the line says)
BAD_SOURCES = [
    ("no camera", _no_camera, ["--webcam"], "no camera at index 0: connect one"),
    ("a camera that does not open", _camera_that_does_not_open, ["--webcam", "1"], "no camera at index 1"),
    ("not a camera index", _no_camera, ["--webcam", "front"], "'front' is not a camera index; give a number"),
    ("no display", _no_display, ["--screen"], "no display to capture: run inside a desktop session or set DISPLAY"),
    ("a region off the monitor", _screen, ["--screen", "1:150,150,100,100"],
     "screen region (150, 150, 100, 100) is outside monitor 1 (200x200): choose a region inside it"),
    ("an empty region", _screen, ["--screen", "10,10,0,50"], "is empty: give a positive width and height"),
    ("not a region", _screen, ["--screen", "1:10,10"], "'1:10,10' is not a screen; give N (monitor N"),
    ("no monitor 5", _screen, ["--screen", "5"], "no monitor 5: choose one of 0..2"),
    ("a file as well", _screen, ["clip.mp4", "--screen"], "narrate either video files or --screen, not both"),
    ("a duration for a file", _screen, ["clip.mp4", "--duration", "5"], "--duration ends a --webcam or --screen run"),
    ("a zero duration", _screen, ["--screen", "--duration", "0"], "--duration 0 must be more than 0 seconds"),
]


@pytest.mark.parametrize("stand_in, flags, says", [row[1:] for row in BAD_SOURCES], ids=[row[0] for row in BAD_SOURCES])
def test_a_bad_source_is_one_line_and_exit_2_before_the_model_loads(stand_in, flags, says, tmp_path, capsys,
                                                                     monkeypatch):
    stand_in(monkeypatch)
    absent = tmp_path / "no-model"  # loading it would fail with another line: the source is checked first
    assert main(["narrate", *flags, "--model", str(absent), "--srt", str(tmp_path / "a.srt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livecc: error: ") and says in err[0], err
    assert not (tmp_path / "a.srt").exists()


@pytest.mark.parametrize("case", ["bad token", "unreachable", "busy"])
def test_server_refusals_of_a_camera_are_one_line_and_exit_2(camera, server, tmp_path, capsys, case):
    url, running = server
    held = [RemoteSession.connect(url, TOKEN) for _ in range(2)] if case == "busy" else []
    url = "ws://127.0.0.1:9" if case == "unreachable" else url
    try:
        code = main(["narrate", "--webcam", "--server", url, "--token", "wrong" if case == "bad token" else TOKEN,
                     *outputs(tmp_path), *SMALL])
    finally:
        for remote in held:
            remote.close()
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and {"bad token": "token", "unreachable": "cannot reach", "busy": "busy"}[case] in err[0]
    assert not (tmp_path / "a.jsonl").exists()
    wait_idle(running)
