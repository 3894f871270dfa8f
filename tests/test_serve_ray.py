"""`livecc serve` on a real local Ray Serve cluster (2 CPUs): 2 replicas of the tiny model, 2 sessions
each (issue 22, acceptance 1)."""

from __future__ import annotations

import json
import socket
import threading
import time
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_sigterm_drains_the_ray_server(tiny_model_dir):
    """Runs before the module's cluster starts: `livecc serve` starts its own local Ray."""
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "livecc", "serve", "--model", str(tiny_model_dir), "--device", "cpu",
                             "--num-cpus", "2", "--port", str(free_port())], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        remote = RemoteSession.connect(json.loads(proc.stdout.readline())["serving"])
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(RemoteError, match="server stopping"):
            list(remote.events())
        assert proc.wait(30) == 0  # the spec: drained and gone within 30 s
    finally:
        proc.kill()
        proc.wait(30)


@pytest.mark.ray_cluster
def test_four_clients_narrate_as_locally_and_a_fifth_is_busy(cluster, videos, tiny_model_dir, tmp_path, monkeypatch):
    for i, video in enumerate(videos):
        assert main(["narrate", str(video), "--model", str(tiny_model_dir), "--srt", str(tmp_path / f"l{i}.srt"),
                     *SMALL]) == 0
    connected = threading.Semaphore(0)
    connect = RemoteSession.connect.__func__

    def connect_and_say(cls, *args, **kwargs):
        try:
            return connect(cls, *args, **kwargs)
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
    with pytest.raises(RemoteError, match="busy"):
        RemoteSession.connect(cluster, TOKEN)
    refused_in = time.monotonic() - started
    for thread in threads:
        thread.join(600)
    assert codes == {0: 0, 1: 0, 2: 0, 3: 0}
    for i in range(4):
        assert (tmp_path / f"r{i}.srt").read_bytes() == (tmp_path / f"l{i}.srt").read_bytes(), i
    assert refused_in < 2.0  # the bound: a full deployment refuses at once, it does not queue


@pytest.mark.ray_cluster
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


@pytest.mark.ray_cluster
def test_a_connection_storm_leaves_every_slot_free(cluster):
    from websockets.sync.client import connect

    for _ in range(200):
        ws = connect(cluster + wire.PATH, additional_headers={"Authorization": f"Bearer {TOKEN}"}, legacy=True)
        first = json.loads(ws.recv(60))
        assert first["type"] == "session.created" or first == wire.closed("busy")
        ws.close()
    # A slot frees once its handler has seen the close, a moment after the client's close returns.
    sessions = [connect_when_free(cluster) for _ in range(4)]
    assert len({remote.created["session"]["id"] for remote in sessions}) == 4
    for remote in sessions:
        remote.close()


def connect_when_free(url: str, tries: int = 300) -> RemoteSession:
    for _ in range(tries):
        try:
            return RemoteSession.connect(url, TOKEN)
        except RemoteError as exc:
            assert "busy" in str(exc)
            threading.Event().wait(0.1)
    pytest.fail("a slot stayed taken after its client left")
