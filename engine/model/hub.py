"""Whether a model name is a Hugging Face id or a local folder: one rule for the loader and the app's
download question. Torch-free."""

from __future__ import annotations

from pathlib import Path


def looks_like_path(name: str) -> bool:
    """Hub ids are exactly 'owner/name'; anything else is meant as a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") != 1 or "\\" in name


def is_hub_id(name: str) -> bool:
    """`name` will be fetched from the hub: no such path here, it has a hub id's shape, and 'owner' is not
    a folder here (then it was a mistyped path)."""
    path = Path(name).expanduser()
    return not path.exists() and not looks_like_path(name) and not path.parent.is_dir()
