"""The clients of `livecc serve` (issue 22, "Clients" and acceptance 4): a client-only install (no
torch, no transformers) narrates and asks over the server as a local run does; `ask` and
`narrate --realtime` over the server; the base install is the client's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest

from livecc.cli.main import build_parser, main
from livecc.client.session import RemoteSession
from servers import record_frames, running_server, wait_idle
from test_sources import run_to_end
from videos import write_video

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--max-pixels", "20000"]
TOKEN = "s3cret"
# A Python where the engine's libraries cannot be imported, as on a machine with the client-only install.
NO_TORCH = ("import sys; sys.modules['torch'] = sys.modules['transformers'] = None; "
            "from livecc.cli.main import program; program()")
HELP_WIDTH = {"COLUMNS": "100"}  # argparse wraps help to the terminal: the same width on both sides


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "shapes.mp4", seconds=6, fps=30)


@pytest.fixture(scope="module")
def server(tiny_loaded, tiny_model_dir):
    with running_server(tiny_loaded, tiny_model_dir, sessions=2, token=TOKEN) as running:
        yield running


def without_torch(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    """`livecc ARGS` in a Python that fails `import torch` and `import transformers`."""
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **env), timeout=300)


def test_a_client_without_torch_narrates_and_asks_as_a_local_run(server, tiny_model_dir, tmp_path, capsys):
    """Without torch the client sends frames at the file's size and the server resizes them: with PNG,
    the model input, and so the SRT and the answer, are still a local run's."""
    from engine.model.preprocess import frame_resizer

    video = write_video(tmp_path / "wide.mp4", seconds=6, fps=30, width=240, height=160)
    size = ["--max-pixels", "18816"]  # 112x168: 240x160 frames need the capture-side resize
    assert frame_resizer(160, 240, 18816, 18816) is not None
    url, running = server
    model = ["--model", str(tiny_model_dir)]
    assert main(["narrate", str(video), *model, "--srt", str(tmp_path / "local.srt"), *size]) == 0
    capsys.readouterr()
    assert main(["ask", str(video), "What is it?", *model, "--max-answer-tokens", "8",
                 "--jsonl", str(tmp_path / "local.jsonl"), *size]) == 0
    local_answer = capsys.readouterr().out
    remote = ["--server", url, "--token", TOKEN, "--frames", "png", *size]
    narrated = without_torch(["narrate", str(video), "--srt", "remote.srt", *remote], tmp_path)
    assert narrated.returncode == 0, narrated.stderr
    assert "livecc: 4 chunks, 4 comments, 0 s skipped; wrote " in narrated.stderr
    local = (tmp_path / "local.srt").read_bytes()
    assert local and (tmp_path / "remote.srt").read_bytes() == local
    asked = without_torch(["ask", str(video), "What is it?", "--max-answer-tokens", "8", "--jsonl", "remote.jsonl",
                           *remote], tmp_path)
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout == local_answer and asked.stdout.strip()
    assert (tmp_path / "remote.jsonl").read_text() == (tmp_path / "local.jsonl").read_text()
    assert "Traceback" not in narrated.stderr + asked.stderr
    wait_idle(running)


def test_help_needs_no_torch(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", HELP_WIDTH["COLUMNS"])
    for command in ([], ["narrate"], ["ask"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        out = without_torch([*command, "--help"], tmp_path, **HELP_WIDTH)
        assert out.returncode == 0 and out.stdout == capsys.readouterr().out, out.stderr
        assert "--server" in out.stdout or not command


def test_the_flags_show_the_engine_defaults():
    """The CLI's defaults live in engine/defaults.py (no torch to read them): they are SessionConfig's."""
    from engine.session.session import SessionConfig

    args = build_parser().parse_args(["narrate", "v.mp4"])
    config = SessionConfig()
    assert (args.positions, args.video_window_s, args.memory_tokens, args.memory, args.router, args.recall_k,
            args.memory_mb) == (config.positions, config.video_window_s, config.memory_tokens, config.memory,
                                config.router_strategy, config.topk, config.memory_mb)


@pytest.mark.parametrize("case", ["bad token", "unreachable", "busy"])
def test_ask_refusals_are_one_line_and_exit_2(server, video, tmp_path, capsys, case):
    url, running = server
    held = [RemoteSession.connect(url, TOKEN) for _ in range(2)] if case == "busy" else []
    url = "ws://127.0.0.1:9" if case == "unreachable" else url
    token = "wrong" if case == "bad token" else TOKEN
    try:
        code = main(["ask", str(video), "What is it?", "--server", url, "--token", token,
                     "--jsonl", str(tmp_path / "a.jsonl"), *SMALL])
    finally:
        for remote in held:
            remote.close()
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livecc: error:"), err
    assert {"bad token": "token", "unreachable": "cannot reach", "busy": "busy"}[case] in err[0]
    assert not (tmp_path / "a.jsonl").exists()
    wait_idle(running)


def test_ask_before_the_first_whole_chunk_says_what_the_server_did_not_see(server, video, capsys):
    """A local run narrates a last part-chunk at the end of the file; a server waits for whole chunks."""
    url, running = server
    assert main(["ask", str(video), "What is it?", "--at", "2", "--server", url, "--token", TOKEN,
                 "--max-answer-tokens", "4", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert out.strip()
    warnings = [line for line in err.splitlines() if line.startswith("livecc: warning:")]
    assert warnings == ["livecc: warning: over a server a question waits for whole chunks: the video from 0.0 s "
                        "to 2.0 s is not seen (ask --at 3 or later to include it)"], err
    wait_idle(running)


def test_realtime_over_the_server_sends_frames_at_capture_time_to_a_live_session(server, video, tmp_path,
                                                                                  monkeypatch):
    url, running = server
    sent, settings = [], []
    send, update = RemoteSession.send, RemoteSession.update

    def record_send(self, message):
        if message["type"] == "input_video_buffer.append":
            sent.append((time.monotonic(), message["timestamp"]))
        send(self, message)

    def record_update(self, instructions, asked, *audio):
        settings.append(asked)
        return update(self, instructions, asked, *audio)

    monkeypatch.setattr(RemoteSession, "send", record_send)
    monkeypatch.setattr(RemoteSession, "update", record_update)
    start = time.monotonic()
    assert main(["narrate", str(video), "--realtime", "--server", url, "--token", TOKEN,
                 "--jsonl", str(tmp_path / "rt.jsonl"), *SMALL]) == 0
    assert settings and settings[0]["live"] is True  # the server's session lets the newest frames win
    late = [(round(when - start, 3), timestamp) for when, timestamp in sent if when - start < timestamp - 0.01]
    assert len(sent) >= 12 and not late, f"frames sent before their capture time: {late}"
    assert [json.loads(line)["type"] for line in (tmp_path / "rt.jsonl").read_text().splitlines()][:1] == ["commentary"]
    wait_idle(running)


def test_the_base_install_is_the_client():
    """`pip install .` brings the app, capture, audio and the WebSocket client, and no model libraries;
    the engine extra brings those, and `make run` / `make test` install it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda requirements: {r.split(">")[0].split("<")[0].split("[")[0].strip().lower()  # noqa: E731
                                  for r in requirements}
    base = names(project["dependencies"])
    assert {"pyside6-essentials", "opencv-python-headless", "sounddevice", "websockets", "numpy"} <= base
    assert not base & {"torch", "transformers", "tokenizers", "safetensors", "huggingface_hub"}
    assert {"torch", "transformers"} <= names(project["optional-dependencies"]["engine"])
    assert '-m pip install -q -e ".[engine,' in (ROOT / "Makefile").read_text()


def test_a_live_stream_sends_the_frames_the_session_samples_at_the_models_size(server, tmp_path, monkeypatch):
    """RemoteStream (the app's session over a server) sends, of a 30 fps file, the frames a local
    session samples at 2 fps (FileSource(sample_fps=2) picks the same ones), each at the model's size."""
    from engine.capture.frames import RingBuffer
    from engine.capture.sources import FileSource
    from engine.model.sizes import capture_size
    from livecc.client.live import RemoteStream, ServerAddress

    url, running = server
    video = write_video(tmp_path / "wide.mp4", seconds=4, fps=30, width=320, height=180)
    sent = record_frames(monkeypatch)
    stream = RemoteStream(ServerAddress(url, TOKEN), "Describe it.", {"max_pixels": 20000, "min_pixels": 10000,
                                                                     "live": False})
    source, buffer = FileSource(video), RingBuffer(16)
    source.start(buffer)
    try:
        events = list(stream.run(buffer))
    finally:
        stream.stop()
        source.stop()
    reference, _ = run_to_end(FileSource(video, sample_fps=2))
    assert type(events[-1]).__name__ == "StreamEnded"
    assert [t for t, _ in sent] == [f.timestamp for f in reference] and len(sent) == 2 * 4 + 1  # ticks 0 to 4 s
    assert {size for _, size in sent} == {capture_size(180, 320, 20000, 10000)} == {(84, 168)}
    wait_idle(running)


def test_without_torch_jpeg_frames_are_resized_here_and_lossless_ones_on_the_server(monkeypatch):
    from engine.model.sizes import capture_size
    from livecc.client.narrate import client_resizer, resizer_for

    monkeypatch.setitem(sys.modules, "engine.model.preprocess", None)  # `import` fails, as without torch
    image = np.zeros((180, 320, 3), np.uint8)
    assert client_resizer(180, 320, 20000, 10000)(image).shape[:2] == capture_size(180, 320, 20000, 10000) == (84, 168)
    assert client_resizer(180, 320, 20000, 10000, lossless=True) is None  # the server's resize is exact
    assert resizer_for("png")(180, 320, 20000, 10000) is None and resizer_for("jpeg")(180, 320, 20000, 10000)
    assert client_resizer(112, 168, 18816, 18816) is None  # already the model's size


def test_the_sender_sends_frames_that_come_as_the_buffer_closes():
    """A source may put its last frames and close the buffer between the sender's look at the frames
    and its look at `closed` (the race CI hit in the sampler): they go up all the same, then the end."""
    from engine.capture.frames import Frame
    from fake_devices import Racing
    from livecc.client.narrate import FrameSender

    class Remote:
        def __init__(self):
            self.sent = []

        def send(self, message):
            self.sent.append(message["timestamp"])

        def end(self, keep_open):
            self.sent.append("end")

    image = np.zeros((8, 8, 3), np.uint8)
    remote = Remote()
    FrameSender(remote, Racing([Frame(image, k / 2, 0.5) for k in range(3)], capacity=16), "jpeg")._send_all()
    assert remote.sent == [0.0, 0.5, 1.0, "end"]


@pytest.mark.parametrize("first", ["hello", b"\x00\xff", "[1, 2]", '{"type": "error", "error": "no"}'])
def test_a_server_that_is_not_livecc_is_one_error_and_its_socket_closes(first):
    """A URL that reaches some other WebSocket server: its first message is not a session, whatever
    it is; the client says so and closes the connection (the other server sees it go)."""
    import threading

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.server import serve

    from livecc.client.session import RemoteError

    left = threading.Event()

    def handler(ws):
        ws.send(first)
        try:
            ws.recv(60)
        except ConnectionClosed:
            left.set()
        except TimeoutError:
            pass

    with serve(handler, "127.0.0.1", 0) as other:
        thread = threading.Thread(target=other.serve_forever, daemon=True)
        thread.start()
        url = f"ws://127.0.0.1:{other.socket.getsockname()[1]}"
        with pytest.raises(RemoteError) as refused:
            RemoteSession.connect(url, timeout=10)
        assert refused.value.code == "server-url" and "\n" not in str(refused.value)
        assert left.wait(30)  # closed by the client, not left to time out
        other.shutdown()
    thread.join(30)


@pytest.mark.parametrize("url", ["ws://localhost:port", "ws://127.0.0.1:99999", "ws://[::1", "", "http://127.0.0.1:8000"])
def test_a_bad_server_url_is_one_line_and_exit_2(url, video, tmp_path, capsys):
    """A URL copied from the help's ws://host:port, a port past 65535, an unset variable (""): one line
    naming a good URL, and no run, here or there."""
    assert main(["narrate", str(video), "--server", url, "--srt", str(tmp_path / "x.srt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livecc: error: --server") and "ws://127.0.0.1:8000" in err[0], err
    assert not (tmp_path / "x.srt").exists()
