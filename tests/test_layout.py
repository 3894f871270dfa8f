"""engine/ is laid out as the data flows: each subpackage imports only the ones below it, nothing imports Qt."""

import ast
import sys
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "engine"

# What each subpackage may import, besides itself and the shared leaves (engine.errors, engine.jsonl, engine._exports).
ALLOWED = {
    "capture": set(),
    "model": {"capture"},
    "runtime": {"capture", "model"},
    "session": {"capture", "model", "runtime"},
    "eval": {"capture", "model", "runtime", "session"},
    "cli": {"capture", "model", "runtime", "session", "eval"},
}
SHARED = {"errors", "jsonl", "_exports"}
QT = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "qtpy", "superqt")


def _module_name(path: Path) -> list[str]:
    parts = list(path.relative_to(ENGINE.parent).with_suffix("").parts)
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


def _violations(path: Path) -> list[str]:
    found = []
    parts = _module_name(path)
    own = parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None
    for line, target in _imports(path):
        where = f"{path.relative_to(ENGINE.parent)}:{line} imports {'.'.join(target)}"
        if target[0] in QT:
            found.append(where + " (no Qt in engine/)")
        if target[0] == "tts" and own != "cli":
            found.append(where + " (only engine.cli may import tts)")
        if target[0] != "engine" or len(target) < 2 or own is None:
            continue
        dest = target[1]
        if dest in SHARED or dest == own:
            continue
        if dest not in ALLOWED[own]:
            found.append(where + f" (engine.{own} may import {sorted(ALLOWED[own]) or 'none of ours'})")
    return found


def test_every_engine_module_sits_in_a_subpackage():
    loose = [p.name for p in ENGINE.glob("*.py") if p.stem not in SHARED | {"__init__"}]
    assert loose == []
    for pkg in ALLOWED:
        init = ENGINE / pkg / "__init__.py"
        if init.exists():
            assert ast.get_docstring(ast.parse(init.read_text())), f"engine/{pkg} needs a docstring saying what it owns"


def test_imports_follow_the_data_flow_and_avoid_qt():
    violations = [v for path in sorted(ENGINE.rglob("*.py")) for v in _violations(path)]
    assert violations == []


def test_the_rule_checker_catches_a_bad_import(tmp_path, monkeypatch):
    """The checker itself: an upward import and a Qt import are both reported."""
    fake = tmp_path / "engine"
    (fake / "capture").mkdir(parents=True)
    bad = fake / "capture" / "bad.py"
    bad.write_text("from engine.session.session import StreamingSession\nfrom ..model import loading\n"
                   "import PySide6.QtCore\nfrom engine.errors import LiveCCError\nfrom .frames import Frame\n")
    monkeypatch.setattr(sys.modules[__name__], "ENGINE", fake)
    assert len(_violations(bad)) == 3


def test_package_exports_resolve_inside_their_package():
    """Lazy exports (engine._exports) name modules of their own package; every name imports."""
    import importlib

    for init in [ENGINE / "__init__.py", *sorted(ENGINE.glob("*/__init__.py"))]:
        name = ".".join(_module_name(init))
        package = importlib.import_module(name)
        for export in getattr(package, "__all__", []):
            assert getattr(package, export) is not None, f"{name}.{export}"
