"""`livecc serve` without Ray: the ASGI app under uvicorn on 127.0.0.1 with the tiny model, and the
`livecc narrate --server` client (issue 22)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.defaults import KV_BUDGET, VIDEO_WINDOW_S
from engine.errors import LiveCCError
from engine.session.events import Commentary, Seek, StreamEnded
from livecc import protocol as wire
from livecc.cli.main import main
from livecc.client.session import RemoteError, RemoteSession
from livecc.server.settings import FrameRate, ServerConfigError, ServerSettings, check_bind
from servers import running_server, wait_idle
from videos import write_video

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--max-pixels", "20000"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "shapes.mp4", seconds=6, fps=30)


@pytest.fixture(scope="module")
def server(tiny_loaded, tiny_model_dir):
    with running_server(tiny_loaded, tiny_model_dir, sessions=2, token="s3cret") as running:
        yield running


def narrate(args: list[str]) -> int:
    return main(["narrate", *args, *SMALL])


def test_png_frames_give_the_local_srt_byte_for_byte(server, tiny_model_dir, video, tmp_path):
    url, _ = server
    assert narrate([str(video), "--model", str(tiny_model_dir), "--srt", str(tmp_path / "local.srt")]) == 0
    assert narrate([str(video), "--server", url, "--token", "s3cret", "--frames", "png",
                    "--srt", str(tmp_path / "remote.srt"), "--jsonl", str(tmp_path / "remote.jsonl")]) == 0
    local = (tmp_path / "local.srt").read_bytes()
    assert local and (tmp_path / "remote.srt").read_bytes() == local
    records = [json.loads(line) for line in (tmp_path / "remote.jsonl").read_text().splitlines()]
    assert len(records) == local.decode().count(" --> ") and all("stats" in r for r in records)


def test_jpeg_frames_narrate_the_whole_file(server, video, tmp_path, capsys):
    url, _ = server
    assert narrate([str(video), "--server", url, "--token", "s3cret", "--srt", str(tmp_path / "r.srt")]) == 0
    assert "4 chunks" in capsys.readouterr().err  # 6 s: a 3-s first chunk, then one a second
    assert (tmp_path / "r.srt").read_text().count(" --> ") == 4


@pytest.mark.parametrize("case", ["bad token", "no token", "unreachable", "busy", "not ws"])
def test_refusals_are_one_line_and_exit_2(server, video, tmp_path, capsys, case):
    url, running = server
    held = []
    token = {"bad token": "wrong", "no token": None}.get(case, "s3cret")
    if case == "unreachable":
        url = "ws://127.0.0.1:9"
    if case == "not ws":
        url = url.replace("ws://", "http://")
    if case == "busy":
        held = [RemoteSession.connect(url, "s3cret") for _ in range(2)]
    args = [str(video), "--server", url, "--srt", str(tmp_path / "x.srt")] + (["--token", token] if token else [])
    try:
        assert narrate(args) == 2
    finally:
        for remote in held:
            remote.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("livecc: error:"), err
    assert {"bad token": "token", "no token": "token", "unreachable": "cannot reach", "busy": "busy",
            "not ws": "ws://"}[case] in err[0]
    assert not (tmp_path / "x.srt").exists()
    wait_idle(running)


def raw_session(url: str, first: str = "session.created"):
    from websockets.sync.client import connect

    ws = connect(url + wire.PATH, additional_headers={"Authorization": "Bearer s3cret"}, max_size=None, legacy=True)
    assert json.loads(ws.recv(30))["type"] == first
    return ws


def drained(ws) -> list[dict]:
    """The messages a closed connection received before its close."""
    from websockets.exceptions import ConnectionClosed

    messages = []
    try:
        while True:
            messages.append(json.loads(ws.recv(30)))
    except ConnectionClosed:
        return messages


def errors_of(ws, count: int) -> list[str]:
    return [json.loads(ws.recv(30))["error"]["code"] for _ in range(count)]


def errors_of_all(ws, messages: list[str]) -> list[str]:
    """Each message's error code, in order (sent one by one: a reply is read before the next goes)."""
    codes = []
    for text in messages:
        ws.send(text)
        codes += errors_of(ws, 1)
    return codes


def question_message(text: str) -> str:
    return json.dumps({"type": "conversation.item.create",
                       "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})


def test_bad_messages_get_errors_and_the_session_goes_on(server, video):
    url, running = server
    ws, other = raw_session(url), raw_session(url)
    png = base64.b64encode(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()).decode()
    bad = ["{not json", json.dumps([1, 2]), "x" * (4 * 2**20 + 1), json.dumps({"type": "nonsense"}),
           json.dumps({"type": "input_video_buffer.append", "format": "jpeg", "timestamp": 0, "frame": png}),
           json.dumps({"type": "input_video_buffer.append", "format": "jpeg", "timestamp": 0, "frame": "@@"}),
           json.dumps({"type": "session.update", "session": {"settings": {"memory_mb": 1e6}}}),
           '{"type": "input_video_buffer.clear", "time": NaN}', '{"type": "input_video_buffer.clear", "time": -1}',
           '{"type": "input_video_buffer.clear", "time": "soon"}', '{"type": "input_video_buffer.end", "keep_open": 1}']
    assert errors_of_all(ws, bad) == ["bad_json", "bad_message", "message_too_large", "error", "bad_frame",
                                      "bad_frame", "error", "bad_json", "error", "error", "error"]
    # Each of these once ended the session (an engine error, or a writer that fell silent on NaN):
    huge = "1" + "0" * 400
    thin = base64.b64encode(cv2.imencode(".png", np.zeros((1, 300, 3), np.uint8))[1].tobytes()).decode()
    hostile = {
        '{"type": "nonsense", "event_id": NaN}': "bad_json",
        '{"type": "input_video_buffer.clear", "time": Infinity}': "bad_json",
        "[" * 100_000 + "]" * 100_000: "bad_json",
        '{"type": "input_video_buffer.append", "format": "png", "timestamp": %s, "frame": "%s"}' % (huge, png): "bad_frame",
        '{"type": "input_video_buffer.append", "format": "png", "timestamp": 0, "frame": "%s"}' % thin: "bad_frame",
        '{"type": "input_video_buffer.clear", "time": %s}' % huge: "error",
        **{json.dumps({"type": "session.update", "session": {"settings": {name: value}}}): "error"
           for name, value in (("eos_step", int(huge)), ("max_new_tokens", 2.5), ("eos_base", "x"),
                               ("seed", 2**70), ("topk", True), ("live", 1))},
        '{"type": "session.update", "session": {"settings": {"max_new_tokens": 3}, "instructions": 7}}': "bad_text",
        question_message("why\ud800"): "bad_text",  # a lone surrogate: the tokenizer failed on the engine thread
        question_message("x" * 5000): "bad_text",
    }
    assert errors_of_all(ws, list(hostile)) == list(hostile.values())
    ws.send(json.dumps({"type": "session.update", "session": {}}))  # the refused update changed nothing:
    assert json.loads(ws.recv(30))["session"]["max_new_tokens"] != 3
    for remote in (ws, other):  # both sessions still narrate: frames in, commentary out
        frame = wire.frame_message(np.full((112, 160, 3), 90, np.uint8), 0.0, 0.5, "png")
        for i in range(6):
            remote.send(wire.dumps(frame | {"timestamp": i * 0.5}))
        remote.send(wire.dumps({"type": "input_video_buffer.end"}))
        kinds = [json.loads(remote.recv(60))["type"] for _ in range(5)]
        assert kinds == ["response.output_text.delta", "response.output_text.done", "stats",
                         "input_video_buffer.ended", "session.closed"]
        remote.close()
    wait_idle(running)


def test_a_question_gets_a_streamed_answer(server, video):
    url, running = server
    remote = RemoteSession.connect(url, "s3cret")
    remote.update("Describe it.", {"max_pixels": 20000, "min_pixels": 20000, "answer_max_new_tokens": 8})
    frame = wire.frame_message(np.full((112, 160, 3), 90, np.uint8), 0.0, 0.5, "png")
    for i in range(6):
        remote.send(frame | {"timestamp": i * 0.5})
    remote.ask("What is there?")
    remote.end()
    answers = [e for e in remote.events() if type(e).__name__ == "Answer"]
    assert answers and answers[-1].done and answers[-1].question == "What is there?"
    assert all(not a.done for a in answers[:-1])
    wait_idle(running)


def test_kept_open_the_session_answers_after_the_end_with_recalled_thumbnails(server):
    """`input_video_buffer.end` with `keep_open`: `ended` comes and the session stays for questions;
    an answer carries a JPEG thumbnail per recalled span, the picture the engine kept of that moment."""
    url, running = server
    remote = RemoteSession.connect(url, "s3cret")
    remote.update("Describe it.", {"max_pixels": 20000, "min_pixels": 20000, "max_new_tokens": 4,
                                   "answer_max_new_tokens": 8, "kv_budget": 300, "memory_tokens": 16,
                                   "video_window_s": 2.0})  # compacts soon: older chunks are recalled
    shades = [10 * i for i in range(24)]  # one grey a second: a thumbnail says which second it shows
    for i in range(48):
        remote.send(wire.frame_message(np.full((112, 160, 3), shades[i // 2], np.uint8), i * 0.5, 0.5, "png"))
    remote.end(keep_open=True)
    events = remote.events()
    ended = next(e for e in events if isinstance(e, StreamEnded))
    answer = list(remote.answer("What was there at first?"))[-1]
    assert ended.time == 24.0 and answer.done and answer.recalled
    assert len(answer.thumbnails) == len(answer.recalled)
    for (start, end), picture in zip(answer.recalled, answer.thumbnails):
        assert picture.ndim == 3 and picture.shape[1] <= 96  # a thumbnail, not a frame
        assert any(abs(int(picture.mean()) - shade) <= 2 for shade in shades[int(start):int(math.ceil(end))])
    assert running.hub.replica.active == 1  # still open for the next question
    remote.close()
    wait_idle(running)


def test_a_seek_restarts_the_conversation_where_the_client_says(server):
    """`input_video_buffer.clear` with a `time`: the server answers `cleared`, and the frames sent
    right after it (the new position's) are all narrated from that time on."""
    url, running = server
    remote = RemoteSession.connect(url, "s3cret")
    remote.update("Describe it.", {"max_pixels": 20000, "min_pixels": 20000})
    frame = wire.frame_message(np.full((112, 160, 3), 90, np.uint8), 0.0, 0.5, "png")
    for i in range(6):
        remote.send(frame | {"timestamp": i * 0.5})
    events = remote.events()
    first = next(e for e in events if isinstance(e, Commentary))
    remote.seek(10.0)
    for i in range(6):
        remote.send(frame | {"timestamp": 10.0 + i * 0.5})
    remote.end()
    after = list(events)
    assert first.start == 0.0
    assert Seek(10.0) in after
    comments = [e for e in after[after.index(Seek(10.0)):] if isinstance(e, Commentary)]
    assert [(c.start, c.end) for c in comments] == [(10.0, 13.0)]
    wait_idle(running)


def test_a_connection_storm_leaks_no_session(server):
    from websockets.sync.client import connect

    url, running = server
    admitted = 0
    for i in range(200):
        ws = connect(url + wire.PATH, additional_headers={"Authorization": "Bearer s3cret"}, legacy=True)
        first = json.loads(ws.recv(30))
        assert first["type"] == "session.created" or first == wire.closed("busy")  # a slot frees once its engine stops
        if first["type"] == "session.created" and i % 3 == 0:  # some start a session's engine before leaving
            ws.send(wire.dumps(wire.frame_message(np.zeros((112, 160, 3), np.uint8), 0.0, 0.5, "jpeg")))
        admitted += first["type"] == "session.created"
        ws.close()
    wait_idle(running)
    assert admitted > 0 and running.hub.replica.active == 0 and not running.hub.connections
    assert not [t for t in threading.enumerate() if t.name.startswith("livecc-session-")]
    raw_session(url).close()  # and the replica still admits
    wait_idle(running)


class StalledSocket:
    """A client that never reads: every send waits forever."""

    headers: dict = {}

    async def send_text(self, text):
        await asyncio.Event().wait()


def test_a_client_that_stops_reading_is_dropped(tiny_loaded, tiny_model_dir):
    from livecc.server.connection import Connection
    from livecc.server.replica import Replica

    replica = Replica(ServerSettings(str(tiny_model_dir), max_pending_messages=2, send_timeout_s=0.2), tiny_loaded)

    async def scenario(fill_queue: bool):
        connection = Connection(StalledSocket(), replica, asyncio.Event())
        if fill_queue:  # the queue for a slow reader is bounded
            for _ in range(3):
                connection._send({"type": "stats"})
        else:  # one message that is not taken within the send timeout
            connection._send({"type": "stats"})
            await connection._write()
        return connection.ended.result()[:2]

    try:
        for fill in (True, False):
            assert asyncio.run(scenario(fill)) == (wire.POLICY, "client is not reading")
    finally:
        replica.close()
    assert not replica.core.running


def test_a_session_the_core_opens_as_its_connection_ends_ends_too(tiny_loaded, tiny_model_dir):
    """The core opens a session on a worker thread; when the connection ends meanwhile (the client
    left, a drain) and the wait for it is cancelled, that session still ends and gives back its slab
    before the connection gives back its slot."""
    from livecc.server.connection import Connection
    from livecc.server.replica import Replica

    replica = Replica(ServerSettings(str(tiny_model_dir)), tiny_loaded)
    opening, go = threading.Event(), threading.Event()
    open_now = replica.open

    def held_open(*args):
        opening.set()
        go.wait(30)
        return open_now(*args)

    replica.open = held_open

    async def scenario() -> bool:
        connection = Connection(StalledSocket(), replica, asyncio.Event())
        engine = asyncio.ensure_future(connection._engine())
        assert await asyncio.to_thread(opening.wait, 30)
        connection.finish(wire.NORMAL, "client left")  # as _run does, then it cancels what is pending
        engine.cancel()
        go.set()
        with pytest.raises(asyncio.CancelledError):
            await engine
        await connection._stop_engine()  # as serve() does before it gives the slot back
        return connection.engine_done.is_set()  # the core ended that session first: its slab is free

    try:
        assert asyncio.run(scenario())
    finally:
        replica.close()
    assert not replica.core.running


def test_a_session_on_a_replica_whose_engine_stopped_ends_with_a_server_error(tiny_loaded, tiny_model_dir):
    """Not a warning the client goes on after: the session ends, and the client's line says why."""
    from engine.core import EngineStopped
    from livecc.server.connection import Connection, _Refused
    from livecc.server.replica import Replica

    replica = Replica(ServerSettings(str(tiny_model_dir)), tiny_loaded)

    def stopped(*args):
        raise EngineStopped("the engine stopped (RuntimeError('the GPU failed'))", "restart it")

    replica.open = stopped

    async def scenario():
        connection = Connection(StalledSocket(), replica, asyncio.Event())
        with pytest.raises(_Refused):
            await connection._engine()
        return connection.ended.result()

    try:
        code, reason, last = asyncio.run(scenario())
    finally:
        replica.close()
    assert (code, reason) == (wire.SERVER_ERROR, "engine error")
    assert last[0]["error"]["type"] == "server_error" and "the GPU failed" in last[0]["error"]["message"]
    assert last[-1] == wire.closed("engine error")


def test_a_silent_connection_is_closed_and_its_slot_given_back(tiny_loaded, tiny_model_dir):
    """A client that connects and sends nothing holds no slot for longer than the idle timeout: the
    session closes saying why, and the one slot is free again."""
    with running_server(tiny_loaded, tiny_model_dir, sessions=1, idle_timeout_s=0.5) as (url, running):
        silent = raw_session(url)
        try:
            closed = json.loads(silent.recv(30))  # a TimeoutError here: the server kept the silent session
        finally:
            silent.close()
        assert (closed["type"], closed["reason"]) == ("session.closed", "idle timeout")
        wait_idle(running)
        RemoteSession.connect(url).close()  # admitted: the slot was given back
        wait_idle(running)


def test_refused_messages_do_not_keep_a_session_from_its_idle_timeout(tiny_loaded, tiny_model_dir):
    """A client whose every message is refused (an unknown type, each sent as soon as the last was
    answered: far more often than the timeout) is closed as idle all the same: only accepted
    messages hold a slot."""
    from websockets.exceptions import ConnectionClosed

    with running_server(tiny_loaded, tiny_model_dir, sessions=1, idle_timeout_s=1.0) as (url, running):
        ws = raw_session(url)
        seen, give_up = [], time.monotonic() + 60  # (a bound for a server that never closes it)
        try:
            while time.monotonic() < give_up and not (seen and seen[-1]["type"] == "session.closed"):
                ws.send(json.dumps({"type": "noise"}))
                seen.append(json.loads(ws.recv(30)))
        except ConnectionClosed:  # closed as we sent: what came before the close is still read
            seen += drained(ws)
        finally:
            ws.close()
        assert all(m["type"] == "error" and "unknown message type" in m["error"]["message"] for m in seen[:-1])
        assert (seen[-1]["type"], seen[-1].get("reason")) == ("session.closed", "idle timeout")
        wait_idle(running)


def test_sigterm_drains_with_server_stopping(tiny_model_dir):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "livecc", "serve", "--no-ray", "--model", str(tiny_model_dir),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        remote = RemoteSession.connect(json.loads(proc.stdout.readline())["serving"])
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(RemoteError, match="server stopping"):
            list(remote.events())
        assert proc.wait(30) == 0  # the spec: drained and gone within 30 s; a drained stop is a clean exit
    finally:
        proc.kill()
        proc.wait(30)


def test_frame_rate_throttles_past_its_rate():
    now = [0.0]
    rate = FrameRate(2.0, clock=lambda: now[0])
    assert [rate.delay(), rate.delay()] == [0.0, 0.0]  # a second's burst
    assert rate.delay() == pytest.approx(0.5)
    now[0] += 10.0
    assert rate.delay() == 0.0


def test_only_loopback_may_serve_without_a_token():
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "t")
    for host in ("0.0.0.0", "192.168.1.5", "example.org"):
        with pytest.raises(ServerConfigError, match="--token"):
            check_bind(host, None)
    assert main(["serve", "--host", "0.0.0.0", "--no-ray", "--model", "x"]) == 2


def test_a_port_in_use_is_refused_in_one_line_before_anything_starts(capsys):
    """Another server on the port: exit 2 with one line naming --port, before Ray or the model (the
    model "x" does not exist, so getting that far would fail differently)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for ray in (["--no-ray"], []):
            assert main(["serve", *ray, "--model", "x", "--port", str(port)]) == 2
            err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            assert len(err) == 1 and f"port {port} on 127.0.0.1 is in use" in err[0] and "--port" in err[0], err


@pytest.mark.parametrize("flags, says", [
    (["--idle-timeout", "0"], "--idle-timeout 0.0 must be a finite number over 0"),
    (["--max-frames-per-s", "-1"], "--max-frames-per-s -1.0 must be a finite number over 0"),
    (["--max-frames-per-s", "nan"], "--max-frames-per-s nan must be a finite number over 0"),
    (["--ssl-certfile", "cert.pem"], "--ssl-certfile is served by --no-ray only"),
    (["--no-ray", "--ssl-certfile", "missing.pem"], "cannot read --ssl-certfile missing.pem"),
    (["--no-ray", "--ssl-keyfile", "key.pem"], "--ssl-keyfile needs --ssl-certfile"),
    (["--kv-budget", "2048"], "--kv-budget 2048 is too small for the default comments, answers and text memory: "
                              "use at least 2049"),
    (["--video-window", "0"], "--video-window 0.0 must be a finite number of seconds over 0"),
    (["--video-window", "inf"], "--video-window inf must be a finite number of seconds over 0"),
])
def test_serve_options_it_cannot_use_are_one_line_before_anything_starts(flags, says, capsys):
    """A 0 idle timeout would end every session at once, a 0 frame rate divide by zero on the first
    frame, TLS on Ray Serve be ignored, a missing certificate fail after the model loaded (the model
    "x" does not exist, so getting that far would fail differently)."""
    assert main(["serve", "--model", "x", "--port", "0", *flags]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and says in err[0], err


def test_the_servers_budget_and_window_are_each_sessions_unless_it_asks(tiny_loaded, tiny_model_dir):
    """`livecc serve --kv-budget 4096 --video-window 3`: the pool's slabs hold 4096 tokens, a session
    starts with both (its client sees them), may choose another window, and may not ask more KV."""
    with running_server(tiny_loaded, tiny_model_dir, kv_budget=4096, video_window_s=3.0) as (url, running):
        assert running.hub.replica.core.kv_budget == 4096
        remote = RemoteSession.connect(url)
        try:
            assert remote.created["session"]["limits"]["kv_budget"] == 4096
            assert (remote.settings["kv_budget"], remote.settings["video_window_s"]) == (4096, 3.0)
            assert remote.update(settings={"video_window_s": 5.0})["video_window_s"] == 5.0
            with pytest.raises(RemoteError, match="kv_budget 8192 is over this server's 4096"):
                remote.update(settings={"kv_budget": 8192})
        finally:
            remote.close()
        wait_idle(running)
    with running_server(tiny_loaded, tiny_model_dir) as (url, running):  # none given: the engine's
        remote = RemoteSession.connect(url)
        try:
            assert remote.created["session"]["limits"]["kv_budget"] == KV_BUDGET == remote.settings["kv_budget"]
            assert remote.settings["video_window_s"] == VIDEO_WINDOW_S
            with pytest.raises(RemoteError, match=f"kv_budget 20000 is over this server's {KV_BUDGET}"):
                remote.update(settings={"kv_budget": 20000})  # not cut to fit in silence
        finally:
            remote.close()
        wait_idle(running)


def test_cli_clients_take_the_servers_budget_and_window_unless_given(tiny_loaded, tiny_model_dir, video, tmp_path):
    """`narrate --server` against `serve --kv-budget 4096 --video-window 3`: a client left at the
    defaults is not refused for asking the engine's 16384 tokens, and sends neither (the server's
    apply); one given --video-window sends it."""
    from livecc.cli.main import build_parser
    from livecc.cli.options import config_fields
    from livecc.cli.remote import server_settings

    with running_server(tiny_loaded, tiny_model_dir, kv_budget=4096, video_window_s=3.0) as (url, running):
        assert narrate([str(video), "--server", url, "--srt", str(tmp_path / "r.srt")]) == 0
        assert (tmp_path / "r.srt").read_text().count(" --> ") == 4
        wait_idle(running)
    parse = build_parser().parse_args
    sent = server_settings(config_fields(parse(["narrate", str(video)]), live=False, local=False))
    assert "kv_budget" not in sent and "video_window_s" not in sent and sent["max_new_tokens"] == 16
    given = parse(["narrate", str(video), "--video-window", "5", "--kv-budget", "4096"])
    sent = server_settings(config_fields(given, live=False, local=False))
    assert (sent["video_window_s"], sent["kv_budget"]) == (5.0, 4096)


def test_the_token_is_compared_whole():
    settings = ServerSettings("m", token="abc")
    assert settings.allows("abc") and not settings.allows("ab") and not settings.allows(None)
    assert ServerSettings("m").allows(None)


def test_the_client_imports_no_torch():
    code = ("import sys; sys.modules['torch'] = None; import livecc.client, livecc.client.session, "
            "livecc.client.narrate, livecc.protocol; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == "ok", out.stderr


def through_gate(app, scope_type: str = "websocket", client_leaves: bool = False) -> list[dict]:
    """What reaches the client when Ray Serve's proxy runs `app` behind the gate (livecc/server/gate.py)."""
    from livecc.server.gate import PlacementGate

    sent: list[dict] = []

    async def receive() -> dict:
        if client_leaves:
            return {"type": "websocket.disconnect", "code": 1000}
        await asyncio.Event().wait()  # a client that says nothing

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(PlacementGate(app, place_s=0.01)({"type": scope_type, "path": wire.PATH}, receive, send))
    return sent


def texts(sent: list[dict]) -> list[dict]:
    return [json.loads(m["text"]) for m in sent if m["type"] == "websocket.send"]


def test_the_gate_refuses_what_serve_cannot_place():
    """Every replica full: Serve would queue the connection; the gate cancels it and says busy."""
    cancelled = []

    async def queued(scope, receive, send):
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(scope["type"])
            raise

    sent = through_gate(queued)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert texts(sent) == [wire.closed("busy")] and sent[-1]["code"] == wire.TRY_LATER
    reply = through_gate(queued, "http")
    assert reply[0]["status"] == 503 and (b"retry-after", b"5") in reply[0]["headers"]
    assert json.loads(reply[1]["body"])["status"] == "busy"
    assert cancelled == ["websocket", "http"]  # out of Serve's queue, so it never takes a slot later


def test_the_gate_tells_a_session_its_replica_is_lost():
    """Serve ends the call without the app's close when the replica dies."""
    async def dies(scope, receive, send):
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": wire.dumps({"type": "session.created"})})

    sent = through_gate(dies)
    assert [m["type"] for m in texts(sent)] == ["session.created", "error"]
    error = texts(sent)[-1]["error"]
    assert (error["type"], error["code"]) == ("server_error", "replica_lost") and "replica" in error["message"]
    assert sent[-1] == {"type": "websocket.close", "code": wire.SERVER_ERROR, "reason": "replica lost"}


def test_the_gate_adds_nothing_to_a_session_that_ends_as_usual():
    async def closes(scope, receive, send):
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": wire.NORMAL, "reason": "stream ended"})

    async def client_left(scope, receive, send):
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"

    assert [m["type"] for m in through_gate(closes)] == ["websocket.accept", "websocket.close"]
    assert [m["type"] for m in through_gate(client_left, client_leaves=True)] == ["websocket.accept"]


def test_a_lost_replica_is_one_line_for_the_client():
    from livecc.server.gate import REPLICA_LOST

    remote = RemoteSession(None, {"session": {"settings": {}}})
    with pytest.raises(RemoteError, match="replica holding this session stopped"):
        remote._handle(wire.error(*REPLICA_LOST, kind="server_error"))


def test_a_jpeg_header_decoy_behind_fill_bytes_does_not_pass_the_size_check():
    """0xFF fill bytes before a marker are legal and skipped by libjpeg; a size check that took
    0xFF 0xFF for a marker jumped 57 KB ahead to a decoy 16x16 header and let the real (here 64x64,
    in the audit 8192x8192) image be decoded."""
    real = cv2.imencode(".jpg", np.full((64, 64, 3), 128, np.uint8))[1].tobytes()
    assert real[2:4] == b"\xff\xe0"  # SOI, then the APP0 segment
    app0_end = 4 + int.from_bytes(real[4:6], "big")
    jump = 2 + 2 + int.from_bytes(b"\xe0" + real[4:5], "big")  # where the fill byte sent the old check
    payload = bytearray(jump - (1 + app0_end + 4) + 32)  # a comment segment that holds the decoy
    decoy = b"\xff\xc0\x00\x11\x08\x00\x10\x00\x10"  # start of frame: 16x16
    payload[jump - (1 + app0_end + 4):jump - (1 + app0_end + 4) + len(decoy)] = decoy
    comment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + bytes(payload)
    crafted = real[:2] + b"\xff" + real[2:app0_end] + comment + real[app0_end:]
    assert crafted[jump:jump + len(decoy)] == decoy
    decoded = cv2.imdecode(np.frombuffer(crafted, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[:2] == (64, 64)  # what a decoder makes of it
    assert wire.image_size(crafted, "jpeg") == (64, 64)
    with pytest.raises(wire.FrameError, match="over 1000 pixels"):
        wire.decode_frame(base64.b64encode(crafted).decode(), "jpeg", max_pixels=1000)
    assert wire.image_size(real, "jpeg") == (64, 64)


def test_healthz_is_open_and_the_model_list_needs_the_token(server):
    """/v1/models names the model, which may be a path on the server (a user name in it): with a token
    set only its holders see it. /healthz stays open for load balancers and names nothing."""
    import urllib.error
    import urllib.request

    base = server[0].replace("ws://", "http://")
    health = json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=30).read())
    assert health["status"] == "ok" and set(health) == {"status", "sessions", "capacity"}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/v1/models", timeout=30)
    assert refused.value.code == 401
    asked = urllib.request.Request(f"{base}/v1/models", headers={"Authorization": "Bearer s3cret"})
    listed = json.loads(urllib.request.urlopen(asked, timeout=30).read())
    assert listed["data"][0]["protocol"] == wire.PROTOCOL


def test_settings_are_typed_as_their_fields_and_whole_doubles_are_whole_numbers():
    """JSON has one number type: 16.0 is a whole number (clients that keep doubles send it); 2.5, a
    bool or a 400-digit integer is refused before the engine thread would trip on it."""
    from engine.session.session import SessionConfig
    from livecc.server.settings import client_config

    budget = SessionConfig().kv_budget
    config = client_config(SessionConfig(), {"max_new_tokens": 16.0, "temperature": 1, "seed": None}, budget)
    assert config.max_new_tokens == 16 and isinstance(config.max_new_tokens, int) and config.temperature == 1.0
    for refused in ({"max_new_tokens": 2.5}, {"max_new_tokens": True}, {"eos_step": 10**400}, {"topk": 2**31},
                    {"live": 1}, {"seed": float("nan")}):
        with pytest.raises(LiveCCError, match="must be"):
            client_config(SessionConfig(), refused, budget)


def test_a_frame_whose_rounded_size_is_past_200_to_1_is_left_to_preprocessing():
    """9000x50 is 180:1, but the capture resize rounds it to 7336x28 (262:1), which the model's own
    resize refuses: the capture leaves it (None) and preprocessing resizes the original."""
    from engine.model.sizes import capture_size, smart_resize

    assert capture_size(50, 9000) is None and smart_resize(50, 9000) == (28, 7336)
