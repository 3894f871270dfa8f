"""Hostile flag values (issues 23 and 24): each case is one row of a table. A bad value is refused
before the model loads, in one line that names the flag the user typed (never an internal name),
with exit 2; a mistyped flag shows the usage of the subcommand it was typed into."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from livecc.cli.main import main
from test_cli_safety import no_model_load, one_error_line  # noqa: F401  (a fixture, used by name)
from videos import write_video

INTERNAL_NAME = re.compile(r"\b[a-z]+_[a-z_]+\b")  # top_p, video_window_s, kv_budget, ...

# (command, flags, what the one error line must say)
BAD_VALUES = [
    ("narrate", ["--temperature", "-1"], "--temperature -1 "),
    ("narrate", ["--top-p", "0"], "--top-p 0 "),
    ("narrate", ["--repetition-penalty", "0"], "--repetition-penalty 0 "),
    ("narrate", ["--temperature", "1e-300"], "--temperature 1e-300 "),  # 24.12: inf/nan in softmax
    ("narrate", ["--temperature", "1e300"], "--temperature 1e+300 "),
    ("narrate", ["--repetition-penalty", "1e-300", "--temperature", "1"], "--repetition-penalty 1e-300 "),
    ("narrate", ["--repetition-penalty", "1e300"], "--repetition-penalty 1e+300 "),
    ("narrate", ["--video-window", "0"], "--video-window 0 "),
    ("narrate", ["--video-window", "-5"], "--video-window -5 "),
    ("narrate", ["--video-window", "nan"], "--video-window nan "),  # 24.18: not --video-window-s
    ("narrate", ["--recall-k", "-1"], "--recall-k -1 "),
    ("narrate", ["--memory-mb", "0"], "--memory-mb 0 "),
    ("narrate", ["--memory-tokens", "-3"], "--memory-tokens -3 "),
    ("narrate", ["--max-pixels", "0"], "--max-pixels 0 "),
    ("ask", ["--temperature", "-1"], "--temperature -1 "),
    ("ask", ["--recall-k", "-2"], "--recall-k -2 "),
    ("ask", ["--at", "1:30"], "--at 90 s is outside the video"),  # parsed as m:ss; the video is 3 s
    ("ask", ["--at", "0:01:30"], "--at 90 s is outside the video"),
]

# (argv after the video, the usage line's start): a typo shows its own subcommand's usage
TYPOS = [
    (["narrate", "{v}", "--srtt", "x.srt"], "usage: livecc narrate"),
    (["ask", "{v}", "hi", "--att", "3"], "usage: livecc ask"),
    (["ask", "{v}", "hi", "--at", "1:75"], "usage: livecc ask"),
    (["eval", "ovobench", "--limitt", "3"], "usage: livecc eval ovobench"),
]


@pytest.fixture(scope="module")
def video3(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "three.mp4", seconds=3, fps=10)


def _argv(command: str, video: Path, flags: list[str]) -> list[str]:
    return [command, str(video), *(["what?"] if command == "ask" else []), *flags]


@pytest.mark.parametrize("command, flags, says", BAD_VALUES, ids=[" ".join([c, *f]) for c, f, _ in BAD_VALUES])
def test_a_bad_value_is_one_line_naming_its_flag(command, flags, says, video3, capsys, no_model_load):
    assert main(_argv(command, video3, flags)) == 2
    line = one_error_line(capsys)
    assert says in line, line
    assert not INTERNAL_NAME.search(line), line


@pytest.mark.parametrize("argv, usage", TYPOS, ids=[" ".join(a[2:] if a[0] != "eval" else a) for a, _ in TYPOS])
def test_a_mistyped_flag_shows_its_subcommands_usage(argv, usage, video3, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([str(video3) if a == "{v}" else a for a in argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(usage), err
    assert "Traceback" not in err


@pytest.mark.parametrize("text, seconds", [("90", 90.0), ("90.5", 90.5), ("1:30", 90.0), ("01:30.5", 90.5),
                                           ("1:02:03", 3723.0), ("0:00:07.25", 7.25)])
def test_at_takes_seconds_and_clock_times(text, seconds):
    from livecc.cli.checks import video_time

    assert video_time(text) == seconds


def test_sampling_at_the_bounds_stays_finite():
    """The smallest temperature and penalty accepted, on logits far apart and a banned token."""
    from engine.session.decoding import PENALTY_RANGE, TEMPERATURE_RANGE, SamplingConfig, SelectRule, TokenSampler

    logits = torch.tensor([80.0, -80.0, 5.0, 0.0, -3.0, 79.0])
    for temperature in TEMPERATURE_RANGE:
        for penalty in PENALTY_RANGE:
            sampler = TokenSampler(6, torch.device("cpu"), SamplingConfig(temperature, 1.0, penalty, seed=0))
            sampler.observe([0, 1, 3])
            scores = sampler.scores(logits, SelectRule(banned=(2,)), 0)
            probs = torch.softmax(scores / temperature, dim=-1)
            assert torch.isfinite(probs).all() and probs[2] == 0, (temperature, penalty, probs)
            assert int(sampler.choose(logits, SelectRule(banned=(2,)), 0)) != 2


# -- make-tiny-model: (where it is asked to write, what the one line says) ----------------------

def _a_file(tmp: Path) -> Path:
    (tmp / "plain.txt").write_text("x")
    return tmp / "plain.txt"


def _a_folder_with_files(tmp: Path) -> Path:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("keep me")
    return tmp / "mine"


TINY_MODEL_TARGETS = [
    ("an existing file", _a_file, "is a file"),
    ("a folder under a file", lambda tmp: _a_file(tmp) / "model", "cannot create"),
    ("a folder that holds files", _a_folder_with_files, "is not empty"),
    ("nowhere writable", lambda tmp: Path("/proc/livecc-test/model"), "cannot create"),
]


@pytest.mark.parametrize("target, says", [(t[1], t[2]) for t in TINY_MODEL_TARGETS],
                         ids=[t[0] for t in TINY_MODEL_TARGETS])
def test_make_tiny_model_refuses_to_write_over_anything(target, says, tmp_path, capsys):
    path = target(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["make-tiny-model", str(path)]) == 2
    assert says in one_error_line(capsys)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_make_tiny_model_builds_again_over_its_own_folder(tmp_path, capsys):
    """The README's quick start can be run twice; a folder with anything else in it stays refused."""
    path = tmp_path / "tiny"
    assert main(["make-tiny-model", str(path)]) == 0
    assert main(["make-tiny-model", str(path)]) == 0
    (path / "notes.txt").write_text("mine")
    assert main(["make-tiny-model", str(path)]) == 2
    assert (path / "notes.txt").read_text() == "mine"


def test_make_tiny_model_says_what_it_wrote_in_a_sentence(tmp_path, capsys):
    path = tmp_path / "tiny"
    assert main(["make-tiny-model", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Wrote a tiny Qwen2-VL") and f"--model {path}" in out and out.count("\n") == 1, out
    assert err == "", err  # no third-party "Writing model shards" bar
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
