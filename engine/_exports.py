"""Lazy package exports (PEP 562): `from engine import StreamingSession` imports the defining module on
first use, so importing a light name (an event, a source) never drags in torch or transformers."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """A module `__getattr__` for `package` that resolves each name from its module (relative to it)."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    return __getattr__
