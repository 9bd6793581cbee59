"""Shipped data files (the built-in head model)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """Path of a shipped asset file, e.g. ``asset_path("head", "l2t_head.npz")``."""
    return Path(str(resources.files("l2t_gs.assets").joinpath(*parts)))
