"""`livecc serve` on a real local Ray Serve cluster (2 CPUs): 2 replicas of the tiny model, 2 sessions
each (issue 22, acceptance 1). The test that kills a replica runs last: Serve then starts another."""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import threading
import time
from urllib.parse import urlsplit
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve")

from livecc import protocol as wire  # noqa: E402
from livecc.cli.main import main  # noqa: E402
from livecc.client.session import RemoteError, RemoteSession  # noqa: E402
from livecc.server.settings import ServerSettings  # noqa: E402
from videos import write_video  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--max-pixels", "20000"]
TOKEN = "ray-s3cret"


def free_port() -> int:
    """A free port that Ray's own processes will not take before Serve's proxy binds it. A port the
    kernel hands out (bind to 0) is one Ray's GCS, raylet or workers may bind next, and once did (CI,
    2026-12-06: "Failed to bind to address"); so one between Ray's worker ports (10002-19999) and
    the kernel's ephemeral range."""
    ranges = Path("/proc/sys/net/ipv4/ip_local_port_range")
    ephemeral = int(ranges.read_text().split()[0]) if ranges.exists() else 32768
    candidates = list(range(20000, ephemeral)) or [0]  # (an unusual kernel range: any free port)
    for port in random.sample(candidates, k=min(200, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port below the kernel's ephemeral range")


@pytest.fixture(scope="module")
def cluster(tiny_model_dir):
    import ray
    from ray import serve

    from livecc.server.ray_app import deploy, init_ray

    init_ray(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        port = free_port()
        settings = ServerSettings(str(tiny_model_dir), token=TOKEN, sessions=2, device="cpu")
        deploy(settings, replicas=2, host="127.0.0.1", port=port, num_cpus=0.5)
        yield f"ws://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("v")
    return [write_video(folder / f"clip{i}.mp4", seconds=4 + i, fps=30, width=160 + 16 * i) for i in range(4)]


def test_sigterm_drains_the_ray_server(tiny_model_dir, tmp_path):
    """Runs before the module's cluster starts: `livecc serve` starts its own local Ray."""
    import os
    import signal
    import subprocess
    import sys

    log = tmp_path / "serve.err"  # a file, not a pipe: Ray's output cannot fill it and block the server
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "livecc", "serve", "--model", str(tiny_model_dir), "--device",
                                 "cpu", "--num-cpus", "2", "--port", str(free_port())], stdout=subprocess.PIPE,
                                stderr=err, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        line = proc.stdout.readline()
        assert line, f"livecc serve ended before serving:\n{log.read_text()[-3000:]}"
        remote = RemoteSession.connect(json.loads(line)["serving"])
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(RemoteError, match="server stopping"):
            list(remote.events())
        assert proc.wait(30) == 0  # the spec: drained and gone within 30 s
    finally:
        proc.kill()
        proc.wait(30)


def test_four_clients_narrate_as_locally_and_a_fifth_is_busy(cluster, videos, tiny_model_dir, tmp_path, monkeypatch):
    for i, video in enumerate(videos):
        assert main(["narrate", str(video), "--model", str(tiny_model_dir), "--srt", str(tmp_path / f"l{i}.srt"),
                     *SMALL]) == 0
    connected, fifth_refused = threading.Semaphore(0), threading.Event()
    connect = RemoteSession.connect.__func__

    def connect_and_say(cls, *args, **kwargs):
        try:
            remote = connect(cls, *args, **kwargs)
            hold_after_frames(remote, 2, fifth_refused)  # each keeps its slot until the 5th is refused
            return remote
        finally:
            connected.release()

    monkeypatch.setattr(RemoteSession, "connect", classmethod(connect_and_say))
    codes: dict[int, int] = {}

    def narrate(i: int) -> None:
        codes[i] = main(["narrate", str(videos[i]), "--server", cluster, "--token", TOKEN, "--frames", "png",
                         "--srt", str(tmp_path / f"r{i}.srt"), *SMALL])

    threads = [threading.Thread(target=narrate, args=(i,)) for i in range(4)]
    for thread in threads:  # connect one after another, then all four narrate at once
        thread.start()
        assert connected.acquire(timeout=120)
    monkeypatch.undo()
    started = time.monotonic()
    try:
        with pytest.raises(RemoteError, match="busy"):
            RemoteSession.connect(cluster, TOKEN)
        refused_in = time.monotonic() - started
    finally:
        fifth_refused.set()
    for thread in threads:
        thread.join(600)
    assert codes == {0: 0, 1: 0, 2: 0, 3: 0}
    for i in range(4):
        assert (tmp_path / f"r{i}.srt").read_bytes() == (tmp_path / f"l{i}.srt").read_bytes(), i
    assert refused_in < 2.0  # the bound: a full deployment refuses at once, it does not queue


def test_bad_clients_get_their_errors_and_the_others_go_on(cluster):
    from websockets.sync.client import connect

    good = RemoteSession.connect(cluster, TOKEN)
    with pytest.raises(RemoteError, match="token"):
        RemoteSession.connect(cluster, "wrong")
    bad = connect(cluster + wire.PATH, additional_headers={"Authorization": f"Bearer {TOKEN}"}, legacy=True)
    assert json.loads(bad.recv(60))["type"] == "session.created"
    not_jpeg = wire.frame_message(np.zeros((112, 160, 3), np.uint8), 0.0, 0.5, "png") | {"format": "jpeg"}
    for text in ("{oops", "x" * (4 * 2**20 + 1), wire.dumps(not_jpeg)):
        bad.send(text)
    assert [json.loads(bad.recv(60))["error"]["code"] for _ in range(3)] == ["bad_json", "message_too_large",
                                                                             "bad_frame"]
    bad.close()
    frame = wire.frame_message(np.full((112, 160, 3), 90, np.uint8), 0.0, 0.5, "png")
    good.update(None, {"max_pixels": 20000, "min_pixels": 20000})
    for i in range(6):
        good.send(frame | {"timestamp": i * 0.5})
    good.end()
    kinds = [type(e).__name__ for e in good.events()]
    assert kinds == ["Commentary", "Stats", "StreamEnded"]


def test_a_connection_storm_leaves_every_slot_free(cluster):
    """200 connections: closed after session.created, dropped mid-handshake (whole or half a request),
    or dropped without a close frame once accepted. Afterwards all four slots take a session."""
    from websockets.sync.client import connect

    port = urlsplit(cluster).port
    for i in range(200):
        if i % 4 == 0:
            ws = connect(cluster + wire.PATH, additional_headers={"Authorization": f"Bearer {TOKEN}"}, legacy=True)
            first = json.loads(ws.recv(60))
            assert first["type"] == "session.created" or first == wire.closed("busy")
            ws.close()
        else:
            drop_mid_handshake(port, i % 4)
    sessions = [connect_when_free(cluster) for _ in range(4)]
    assert len({remote.created["session"]["id"] for remote in sessions}) == 4
    for remote in sessions:
        remote.close()


def drop_mid_handshake(port: int, how: int) -> None:
    """1: the whole upgrade request, then gone; 2: half of it; 3: read the 101, then drop the TCP
    connection without a close frame."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {wire.PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Authorization: Bearer {TOKEN}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(request if how != 2 else request[:len(request) // 2])
        if how == 3:
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += sock.recv(4096)
            assert reply.startswith(b"HTTP/1.1 101")


def connect_when_free(url: str, tries: int = 300) -> RemoteSession:
    """A slot frees once its handler has seen the close, a moment after the client's close returns."""
    for _ in range(tries):
        try:
            return RemoteSession.connect(url, TOKEN)
        except RemoteError as exc:
            assert "busy" in str(exc)
            threading.Event().wait(0.1)
    pytest.fail("a slot stayed taken after its client left")


def test_autoscaling_targets_the_sessions_of_a_replica(monkeypatch):
    import ray

    from livecc.server import ray_app

    settings = ServerSettings("m", sessions=3)
    fixed = ray_app.LiveCCDeployment.options(**ray_app.deployment_options(settings, 2))
    assert (fixed.num_replicas, fixed.max_ongoing_requests) == (2, 3)
    scaled = ray_app.LiveCCDeployment.options(**ray_app.deployment_options(settings, 1, max_replicas=4))
    config = scaled._deployment_config.autoscaling_config
    assert (config.min_replicas, config.max_replicas, config.target_ongoing_requests) == (1, 4, 3)
    assert scaled.max_ongoing_requests == 3  # Serve never sends a replica more sessions than it holds
    deployed = {}

    def deploy(settings, replicas, host, port, num_gpus=0.0, max_replicas=None):
        deployed.update(sessions=settings.sessions, replicas=replicas, max_replicas=max_replicas)
        raise KeyboardInterrupt  # what a stop signal raises while `livecc serve` waits

    monkeypatch.setattr(ray_app, "init_ray", lambda **options: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)  # the module's cluster may be running here
    monkeypatch.setattr(ray_app, "deploy", deploy)
    assert main(["serve", "--model", "m", "--sessions-per-replica", "3", "--max-replicas", "4"]) == 0
    assert deployed == {"sessions": 3, "replicas": 1, "max_replicas": 4}


@pytest.mark.parametrize("args", [["--replicas", "3", "--max-replicas", "2"], ["--no-ray", "--max-replicas", "2"]])
def test_max_replicas_needs_ray_and_at_least_the_replicas(args, capsys):
    assert main(["serve", "--model", "m", *args]) == 2
    assert capsys.readouterr().err.strip().endswith("give at least --replicas, without --no-ray")


def test_a_killed_replica_tells_its_sessions_and_the_others_go_on(cluster, videos, tiny_model_dir, tmp_path,
                                                                   monkeypatch, capsys):
    import ray

    assert main(["narrate", str(videos[0]), "--model", str(tiny_model_dir), "--srt", str(tmp_path / "l.srt"),
                 *SMALL]) == 0
    (kept, spare), (doomed, other_spare) = sessions_on_each_replica(cluster)
    spare.close()
    other_spare.close()
    killed, streaming, victim_done = threading.Event(), threading.Event(), threading.Event()
    hold_after_frames(kept, 3, killed)  # the survivor is mid-stream when the other replica dies
    doomed.events = tell_first_event(doomed.events, streaming)
    sessions = {"survivor": kept, "victim": doomed}
    monkeypatch.setattr(RemoteSession, "connect", classmethod(lambda cls, *a, **k: sessions[
        threading.current_thread().name]))
    codes: dict[str, int] = {}
    long = write_video(tmp_path / "long.mp4", seconds=30, fps=30, width=160)
    runs = {"survivor": [str(videos[0]), "--frames", "png", "--srt", str(tmp_path / "r.srt")],
            "victim": [str(long), "--realtime"]}

    def narrate(name: str, done: threading.Event | None = None) -> None:
        codes[name] = main(["narrate", *runs[name], "--server", cluster, "--token", TOKEN, *SMALL])
        done is not None and done.set()

    survivor = threading.Thread(target=narrate, args=("survivor",), name="survivor")
    victim = threading.Thread(target=narrate, args=("victim", victim_done), name="victim")
    survivor.start()
    victim.start()
    try:
        assert streaming.wait(120)
        ray.kill(ray.get_actor(doomed.created["session"]["replica"], namespace="serve"), no_restart=True)
    finally:
        killed.set()
    assert victim_done.wait(5)  # the bound: its client hears of it within 5 s
    survivor.join(600)
    assert codes == {"victim": 2, "survivor": 0}
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("livecc: error:")]
    assert len(errors) == 1 and "replica holding this session stopped" in errors[0]
    assert (tmp_path / "r.srt").read_bytes() == (tmp_path / "l.srt").read_bytes()


def sessions_on_each_replica(url: str) -> list[list[RemoteSession]]:
    """Every slot taken: with 2 sessions a replica, Serve puts exactly 2 on each."""
    placed: dict[str, list[RemoteSession]] = {}
    for _ in range(4):
        remote = connect_when_free(url)
        placed.setdefault(remote.created["session"]["replica"], []).append(remote)
    assert sorted(map(len, placed.values())) == [2, 2]
    return list(placed.values())


def hold_after_frames(remote: RemoteSession, frames: int, until: threading.Event) -> None:
    send, sent = remote.send, []

    def held(message: dict) -> None:
        if message["type"] == "input_video_buffer.append":
            sent.append(message)
            if len(sent) == frames + 1:
                until.wait(120)
        send(message)

    remote.send = held


def tell_first_event(events, seen: threading.Event):
    def watched():
        for event in events():
            seen.set()
            yield event

    return watched
