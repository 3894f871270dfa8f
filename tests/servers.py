"""A `livecc serve` for tests: the ASGI app under uvicorn in this process, on a free loopback port,
with the tiny model (no Ray: the Ray cluster tests have their own)."""

from __future__ import annotations

import asyncio
import base64
import threading
from contextlib import contextmanager

import numpy as np

from livecc import protocol as wire
from livecc.client.session import RemoteSession
from livecc.server.settings import ServerSettings
from tts.synth import Synthesizer


class TextTone(Synthesizer):
    """A voice for tests: `ms_per_char` of a tone a character, its pitch set by the text, in two pieces."""

    name = "tone"
    sample_rate = 24000

    def __init__(self, ms_per_char: int = 10):
        self.samples_per_char = self.sample_rate * ms_per_char // 1000

    def synthesize(self, text: str) -> np.ndarray:
        step = 0.02 + sum(map(ord, text)) % 97 / 1000
        return (0.5 * np.sin(np.arange(self.samples_per_char * len(text.strip())) * step)).astype(np.float32)

    def stream(self, text: str):
        audio = self.synthesize(text)
        if audio.size:
            yield from (audio[:len(audio) // 2], audio[len(audio) // 2:])


@contextmanager
def running_server(loaded, model_dir, voice=None, **limits):
    """The app under uvicorn on a free loopback port, in a thread; yields (url, hub). `voice`: the
    replica's speech (a livecc.server.speech.ReplicaVoice), None for none."""
    from livecc.server.local import uvicorn_server
    from livecc.server.replica import Replica

    limits.setdefault("idle_timeout_s", 3600.0)  # a connection a test leaves open fails wait_idle, never closes by itself
    ready = threading.Event()
    port: list[int] = []
    replica = Replica(ServerSettings(str(model_dir), **limits), loaded=loaded, voice=voice)
    server = uvicorn_server(replica, "127.0.0.1", 0, on_ready=lambda p: (port.append(p), ready.set()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert ready.wait(60), "the server did not start"
    try:
        yield f"ws://127.0.0.1:{port[0]}", server
    finally:
        server.should_exit = True
        thread.join(30)
    assert not replica.core.running, "the replica's engine thread outlived the server"


def wait_idle(server, timeout: float = 60) -> None:
    """Until every session on the server has closed (its slot released, its engine thread ended)."""
    loop = server._loop
    asyncio.run_coroutine_threadsafe(asyncio.wait_for(server.hub.idle.wait(), timeout), loop).result()


def record_frames(monkeypatch) -> list[tuple[float, tuple[int, int]]]:
    """(timestamp, (height, width)) of each frame a RemoteSession sends from now on, the size read
    from the image's header; filled as the frames go up."""
    sent, send = [], RemoteSession.send

    def record(self, message):
        if message["type"] == "input_video_buffer.append":
            sent.append((message["timestamp"], wire.image_size(base64.b64decode(message["frame"]), message["format"])))
        send(self, message)

    monkeypatch.setattr(RemoteSession, "send", record)
    return sent
