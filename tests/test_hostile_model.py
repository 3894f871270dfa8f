"""Hostile model folders and checkpoints (issue 24): each is one line and exit 2, never a traceback
and never a model of random weights. Each case is one row of a table, built by writing files into
a copy of the tiny model: the next finding is one line to add."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from livecc.cli.main import main
from test_cli import SMALL
from videos import write_video

WEIGHTS = "model.safetensors"


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "two.mp4", seconds=2, fps=10)


def _header(folder: Path, header: bytes) -> None:
    (folder / WEIGHTS).write_bytes(struct.pack("<Q", len(header)) + header)


def _tensors(folder: Path, change) -> None:
    tensors = load_file(folder / WEIGHTS)
    save_file(change(tensors), folder / WEIGHTS, metadata={"format": "pt"})


def _config(folder: Path, change) -> None:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


# (case, what is written into a copy of the tiny model, what the one error line says)
BROKEN = [
    ("an empty safetensors header", lambda d: _header(d, b"{}"), "58 weights missing (lm_head.weight, "),
    ("no vision tower", lambda d: _tensors(d, lambda t: {k: v for k, v in t.items() if not k.startswith("visual.")}),
     "31 weights missing (model.visual."),
    ("one tensor left out", lambda d: _tensors(d, lambda t: {k: v for k, v in t.items() if k != "lm_head.weight"}),
     "1 weight missing (lm_head.weight)"),
    ("a tensor of another model", lambda d: _tensors(d, lambda t: t | {"extra.weight": torch.zeros(2)}),
     "1 weight not Qwen2-VL's (extra.weight)"),
    ("a tensor of another shape", lambda d: _tensors(d, lambda t: t | {"lm_head.weight": torch.zeros(3, 64)}),
     "1 weight of another shape (lm_head.weight)"),
    ("a safetensors header that is a JSON list", lambda d: _header(d, b"[]"), "header is a JSON list"),
    ("a safetensors header that is a number", lambda d: _header(d, b"5"), "header is a JSON int"),
    ("a config int given as a string", lambda d: _config(d, lambda c: c["text_config"].update(hidden_size="64")),
     "'hidden_size' expected int, got str"),
    ("a config list where an int goes",
     lambda d: _config(d, lambda c: c["text_config"].update(num_hidden_layers=[2])), "'num_hidden_layers'"),
    ("a vision config that is a number", lambda d: _config(d, lambda c: c.update(vision_config=5)),
     "'vision_config'"),
]


@pytest.mark.parametrize("breaks, says", [row[1:] for row in BROKEN], ids=[row[0] for row in BROKEN])
def test_a_broken_checkpoint_is_one_line_not_random_weights(breaks, says, video, tiny_model_dir, tmp_path, capsys):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    breaks(folder)
    srt = tmp_path / "out.srt"
    assert main(["narrate", str(video), "--model", str(folder), "--srt", str(srt), *SMALL]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("livecc: error: ")]
    assert len(errors) == 1 and says in errors[0], err
    assert "Traceback" not in err and not srt.exists()


def test_the_tiny_model_we_build_is_complete(tiny_model_dir):
    """The one model that may be random: every weight is in its checkpoint, so it loads as any other."""
    from engine.model.loading import load_model

    assert load_model(str(tiny_model_dir), device="cpu").model is not None


class _Hub:
    """Stands in for huggingface_hub.snapshot_download: records each id tried, finds none."""

    def __init__(self):
        self.tried: list[str] = []

    def __call__(self, repo_id, **kwargs):
        from huggingface_hub.errors import LocalEntryNotFoundError

        self.tried.append(repo_id)
        raise LocalEntryNotFoundError("offline")


# (case, --model as typed, folders that exist in the working folder, what the line says, hub tried)
MISSING = [
    ("a mistyped folder under one that exists", "audit/tiny", ["audit"], "since audit/ is a folder here", False),
    ("a relative folder with ./", "./audit/tiny", [], "those look like owner/name", False),
    ("three levels", "runs/audit/tiny", [], "those look like owner/name", False),
    ("one name", "tiny-model", [], "those look like owner/name", False),
    ("an absolute folder", "/nonexistent-livecc/tiny", [], "those look like owner/name", False),
    ("what looks like a hub id", "nobody/no-such-model", [], "no folder 'nobody/no-such-model' here", True),
]


@pytest.mark.parametrize("name, folders, says, hub", [row[1:] for row in MISSING], ids=[row[0] for row in MISSING])
def test_a_missing_model_folder_says_whether_the_hub_was_tried(name, folders, says, hub, video, tmp_path,
                                                             monkeypatch, capsys):
    import huggingface_hub

    fake = _Hub()
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.chdir(tmp_path)
    for folder in folders:
        (tmp_path / folder).mkdir()
    assert main(["narrate", str(video), "--model", name, *SMALL]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("livecc: error: ")]
    assert len(errors) == 1 and errors[0].startswith("livecc: error: no folder") and says in errors[0], err
    assert "Traceback" not in err
    assert fake.tried == ([name] if hub else [])


def test_the_app_asks_to_download_only_what_the_loader_would_fetch(tmp_path, monkeypatch):
    """A mistyped relative folder (`audit/tiny` beside an `audit` folder) is not a hub id to the app either."""
    from desktop_app.model_source import needs_download

    monkeypatch.chdir(tmp_path)
    (tmp_path / "audit").mkdir()
    assert needs_download("audit/tiny") is False
    assert needs_download("./nowhere/tiny") is False
