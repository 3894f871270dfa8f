"""Shared fixtures: the tiny random Qwen2-VL (built once per run) and generated videos."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/videos.py

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
ASOUNDRC = 'pcm.!default {type plug; slave.pcm "nullout"}\npcm.nullout {type null}\n'


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from engine.model.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen2-vl")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    from engine.model.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(autouse=True)
def qt_garbage_collected_here(request):
    """After a Qt test, Python's cyclic garbage is collected on the main (GUI) thread. A closed
    window left in a reference cycle is otherwise freed by whichever thread next triggers a
    collection: freed on a later test's model-loading thread, its widgets are destroyed off their
    thread and the process can crash (CI, 2026-12-07: a segfault inside that thread's collection).
    Autouse, so it is torn down after qtbot has closed the test's widgets."""
    yield
    if "qtbot" in request.fixturenames:
        import gc

        gc.collect()


@pytest.fixture
def one_thread():
    """Tiny matmuls run fastest on one thread; two fight each other on a loaded 2-core CI machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def null_audio(tmp_path, monkeypatch):
    """Real PortAudio output into an ALSA null device: ALSA's default becomes a null sink (a
    private HOME with an .asoundrc); PortAudio re-reads the config when re-initialised."""
    sd = pytest.importorskip("sounddevice", reason="sounddevice needs libportaudio2 (apt)")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(ASOUNDRC)
    monkeypatch.setenv("HOME", str(home))
    sd._terminate()
    sd._initialize()
    yield
    sd._terminate()
    monkeypatch.undo()
    sd._initialize()
