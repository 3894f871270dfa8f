"""Every LIVECC_* switch goes through one registry (engine/flags.py): read there and nowhere else,
validated at start-up with one line naming the variable, documented in docs/configuration.md."""

import ast
import logging
import sys
from pathlib import Path

import pytest

from engine import flags

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "tts", "livecc", "desktop_app", "benchmarks", "tests")
READERS = {"get", "getenv", "__getitem__", "__contains__"}


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def _direct_reads(path: Path) -> list[str]:
    """Places that read a LIVECC_* variable without the registry: os.environ.get/[]/in, os.getenv."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args and (
                (node.func.attr == "get" and _is_environ(node.func.value)) or node.func.attr == "getenv"):
            key = node.args[0]
        elif isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load):
            key = node.slice
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            key = node.left
        if isinstance(key, ast.Constant) and str(key.value).startswith(flags.PREFIX):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} reads {key.value}")
    return found


def _sources():
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if p.name != "flags.py")


def test_no_module_reads_a_livecc_variable_directly():
    assert [hit for path in _sources() for hit in _direct_reads(path)] == []


def test_the_checker_catches_a_planted_direct_read(tmp_path, monkeypatch):
    bad = tmp_path / "engine" / "bad.py"
    bad.parent.mkdir()
    bad.write_text('import os\nA = os.environ.get("LIVECC_NO_FAST") == "1"\nB = os.getenv("LIVECC_FAST")\n'
                   'C = os.environ["LIVECC_MODEL"]\nD = "LIVECC_QUANTIZE" in os.environ\n'
                   'os.environ["LIVECC_NO_TRITON"] = "1"\nE = os.environ.get("HOME")\n')
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert len(_direct_reads(bad)) == 4  # setting a variable and reading others are fine


def test_every_livecc_name_in_the_code_is_registered():
    """A typo in a switch's name (in code, tests or benchmarks) would silently do nothing."""
    known = set(flags.REGISTRY) | {f.old_name for f in flags.REGISTRY.values() if f.old_name}
    unknown = set()
    for path in (p for p in _sources() if p.name != Path(__file__).name):  # this file plants unknown names
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                word = node.value.split("=")[0].strip()
                if word.startswith(flags.PREFIX) and word.isupper() and word not in known and word != flags.PREFIX:
                    unknown.add(f"{path.relative_to(ROOT)}: {word}")
    assert unknown == set()


def test_the_configuration_page_is_generated_from_the_registry():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == flags.markdown(), "run: python -m engine.flags > docs/configuration.md"
    assert all(f"`{name}`" in page for name in flags.REGISTRY)


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("Yes", True), ("on", True),
                                             ("0", False), ("false", False), ("off", False), ("", False)])
def test_a_switch_takes_the_usual_spellings(value, expected, monkeypatch):
    monkeypatch.setenv("LIVECC_NO_FAST", value)
    assert flags.get("LIVECC_NO_FAST") is expected


@pytest.mark.parametrize("name, value, accepts", [
    ("LIVECC_NO_FAST", "maybe", "one of 1, 0 (or true, false, yes, no, on, off)"),
    ("LIVECC_QUANTIZE", "int9", "one of auto, none, int8, int4"),
    ("LIVECC_SPEECH_MAX_PENDING", "0", "a whole number >= 1"),
    ("LIVECC_SPEECH_MAX_RATE", "nan", "a number from 1 to 2"),
    ("LIVECC_TTS_CUDA_GRAPH", "2", "one of 1, 0 (or true, false, yes, no, on, off)"),  # old names too
])
def test_a_bad_value_names_the_variable_and_what_it_takes(name, value, accepts, monkeypatch):
    monkeypatch.setenv(name, value)
    with pytest.raises(flags.FlagError) as error:
        flags.check_environment()
    assert str(error.value) == f"bad environment setting: {name}={value!r} is not {accepts}"
    assert error.value.code == "bad-setting"


def test_an_old_name_still_works_inverted_with_a_deprecation_line(monkeypatch, caplog):
    monkeypatch.setattr(flags, "_cache", {})  # the line comes once per setting: another test may have read it
    monkeypatch.setenv("LIVECC_TTS_CUDA_GRAPH", "0")  # the old "off"
    with caplog.at_level(logging.WARNING, logger="engine.flags"):
        assert flags.get("LIVECC_TTS_NO_CUDA_GRAPH") is True
    assert "LIVECC_TTS_CUDA_GRAPH is deprecated: use LIVECC_TTS_NO_CUDA_GRAPH=1" in caplog.text
    monkeypatch.setenv("LIVECC_TTS_NO_CUDA_GRAPH", "0")  # the new name wins
    assert flags.get("LIVECC_TTS_NO_CUDA_GRAPH") is False


def test_an_unknown_name_is_a_warning_with_the_closest_switch(monkeypatch):
    monkeypatch.setenv("LIVECC_NO_FASTT", "1")
    assert flags.check_environment() == ["LIVECC_NO_FASTT is not a LiveCC setting and is ignored "
                                         "(did you mean LIVECC_NO_FAST?)"]


@pytest.mark.parametrize("name, value", [("LIVECC_QUANTIZE", "int9"), ("LIVECC_NO_FAST", "maybe")])
def test_the_cli_says_a_bad_value_in_one_line_and_exits_2(name, value, tmp_path, monkeypatch, capsys):
    from livecc.cli.main import main

    monkeypatch.setenv(name, value)
    code = main(["narrate", str(tmp_path / "missing.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"livecc: error: bad environment setting: {name}={value!r} is not "
                                        f"{flags.REGISTRY[name].accepts()}"]


def test_the_app_shows_a_bad_value_and_exits_2(monkeypatch, capsys):
    import desktop_app.main as app_main

    shown = []
    monkeypatch.setattr(app_main, "_show_error", shown.append)
    monkeypatch.setenv("LIVECC_NO_TRITON", "sometimes")
    assert app_main.main([]) == 2
    assert shown == ["bad environment setting: LIVECC_NO_TRITON='sometimes' is not one of 1, 0 "
                     "(or true, false, yes, no, on, off)"]
    assert "livecc-desktop: error: bad environment setting: LIVECC_NO_TRITON" in capsys.readouterr().err


def test_an_error_carries_a_code_and_a_fix_each_front_end_words_its_own_way():
    from desktop_app.speech import APP_DEVICE_FIX, app_wording, speech_notice
    from tts.player import DEVICE_FIX
    from tts.synth import SpeechError

    error = SpeechError("no audio output device: 'card' has no output channels", DEVICE_FIX, "audio-device")
    assert str(error) == f"no audio output device: 'card' has no output channels; {DEVICE_FIX}"  # the CLI's line
    assert app_wording(error) == f"no audio output device: 'card' has no output channels; {APP_DEVICE_FIX}"
    assert speech_notice(error, None)[0] == f"Speech is off: no audio output device; {APP_DEVICE_FIX}."
    unknown = SpeechError("espeak-ng wrote a WAV without audio data")  # no code the app knows: kept as is
    assert app_wording(unknown) == "espeak-ng wrote a WAV without audio data"
