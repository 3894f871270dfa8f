"""The tree is laid out as the data flows, and imports go one way:
engine (capture <- model <- runtime <- session <- core <- output <- eval) <- tts <- livecc, desktop_app.
Only desktop_app imports Qt; tts uses only the engine's public names; the app does not reach into
the CLI."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = ("engine", "tts", "livecc", "desktop_app")

# What each engine subpackage may import, besides itself and the shared leaves.
ALLOWED = {
    "capture": set(),
    "model": {"capture"},
    "runtime": {"capture", "model"},
    "session": {"capture", "model", "runtime"},
    "core": {"capture", "model", "runtime", "session"},
    "output": {"capture", "model", "runtime", "session", "core"},
    "eval": {"capture", "model", "runtime", "session", "core", "output"},
}
SHARED = {"errors", "flags", "defaults", "_exports"}
# The top-level packages each package may import (besides itself).
LAYERS = {"engine": set(), "tts": {"engine"}, "livecc": {"engine", "tts"}, "desktop_app": {"engine", "tts", "livecc"}}
QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy", "superqt")


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: Path):
    """(line, imported module as a dotted list) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            yield node.lineno, target
            if node.module is None:  # `from . import x`: each name is a module of that package
                for alias in node.names:
                    yield node.lineno, target + [alias.name]


def _engine_public(target: list[str]) -> bool:
    """`engine`, a subpackage's front (`engine.runtime`) or a shared leaf (`engine.errors`)."""
    return len(target) == 1 or (len(target) == 2 and (target[1] in ALLOWED or target[1] in SHARED))


def _engine_rule(own: str | None, target: list[str]) -> str | None:
    if own is None or len(target) < 2 or target[0] != "engine":
        return None
    dest = target[1]
    if dest in SHARED or dest == own or dest in ALLOWED[own]:
        return None
    return f"engine.{own} may import {sorted(ALLOWED[own]) or 'none of ours'}"


def _violations(path: Path) -> list[str]:
    found = []
    parts = _module_name(path)
    top = parts[0]
    own = parts[1] if top == "engine" and len(parts) > 1 and parts[1] in ALLOWED else None
    for line, target in _imports(path):
        where = f"{path.relative_to(ROOT)}:{line} imports {'.'.join(target)}"
        if target[0] in QT and top != "desktop_app":
            found.append(where + " (Qt lives in desktop_app only)")
        if target[0] in TOP and target[0] != top and target[0] not in LAYERS[top]:
            found.append(where + f" ({top} may import {sorted(LAYERS[top]) or 'none of ours'})")
        if top == "tts" and target[0] == "engine" and not _engine_public(target):
            found.append(where + " (tts uses the engine's public names only)")
        if top == "desktop_app" and target[:2] == ["livecc", "cli"]:
            found.append(where + " (the app does not import the CLI)")
        rule = _engine_rule(own, target)
        if rule:
            found.append(f"{where} ({rule})")
    return found


def _sources() -> list[Path]:
    return sorted(p for top in TOP for p in (ROOT / top).rglob("*.py"))


def test_every_engine_module_sits_in_a_subpackage():
    loose = [p.name for p in (ROOT / "engine").glob("*.py") if p.stem not in SHARED | {"__init__"}]
    assert loose == []
    for pkg in ALLOWED:
        init = ROOT / "engine" / pkg / "__init__.py"
        assert init.exists(), f"engine/{pkg} is missing"
        assert ast.get_docstring(ast.parse(init.read_text())), f"engine/{pkg} needs a docstring saying what it owns"


def test_imports_follow_the_data_flow_and_keep_qt_in_the_app():
    violations = [v for path in _sources() for v in _violations(path)]
    assert violations == []


def test_the_rule_checker_catches_planted_back_imports(tmp_path, monkeypatch):
    """The checker itself: each planted back-import in each layer is reported, the allowed ones are not."""
    planted = {
        "engine/capture/bad.py": "from engine.session.session import StreamingSession\nfrom ..model import loading\n"
                                 "import PySide6.QtCore\nfrom engine.errors import LiveCCError\nfrom .frames import Frame\n"
                                 "import tts\nfrom livecc.cli import main\n",
        "tts/bad.py": "from engine.runtime.fast import StaticRunner\nfrom engine.runtime import CAPTURE_LOCK\n"
                      "from engine import Commentary\nfrom desktop_app import main\n",
        "livecc/bad.py": "from desktop_app.main_window import MainWindow\nfrom tts import SpeechPlayer\n",
        "desktop_app/bad.py": "from livecc.cli.narrate import cmd_narrate\nfrom PySide6 import QtCore\n",
    }
    expected = {"engine/capture/bad.py": 5, "tts/bad.py": 2, "livecc/bad.py": 1, "desktop_app/bad.py": 1}
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    for name, text in planted.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        assert len(_violations(path)) == expected[name], (name, _violations(path))


def test_package_exports_resolve_inside_their_package():
    """Lazy exports (engine._exports) name modules of their own package; every name imports."""
    import importlib

    for init in [ROOT / "engine" / "__init__.py", *sorted((ROOT / "engine").glob("*/__init__.py")),
                 *sorted((ROOT / "livecc").glob("**/__init__.py"))]:
        name = ".".join(_module_name(init))
        package = importlib.import_module(name)
        for export in getattr(package, "__all__", []):
            assert getattr(package, export) is not None, f"{name}.{export}"


def test_the_license_file_is_the_one_pyproject_names():
    """pyproject and About say Apache-2.0: the release carries its full text."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    text = (ROOT / "LICENSE").read_text()
    assert declared == "Apache-2.0"
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) == 201


MAX_CLASS_LINES = 400


def long_classes(paths) -> list[str]:
    """Classes over MAX_CLASS_LINES lines: a class that long holds several concerns."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                found.append(f"{path.relative_to(path.parents[1])}: {node.name}")
    return found


def test_no_class_is_over_400_lines(tmp_path):
    assert long_classes(_sources()) == []
    planted = tmp_path / "pkg" / "big.py"
    planted.parent.mkdir()
    planted.write_text("class Big:\n" + "    x = 1\n" * MAX_CLASS_LINES)
    assert long_classes([planted]) == ["pkg/big.py: Big"]
