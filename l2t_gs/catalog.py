"""What ships with the package: head models, avatars and trained models, addressable by name."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _package_dir(package: str) -> Path | None:
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        return None


def list_head_models() -> list[str]:
    """Names of shipped head models (``builtin`` is the project's FLAME-format head)."""
    root = _package_dir("l2t_gs.assets")
    if root is None or not (root / "head" / "l2t_head.npz").is_file():
        return []
    return ["builtin"]


def list_avatars() -> list[str]:
    """Names of shipped avatars: sub-folders of ``avatars/`` holding an avatar."""
    root = _package_dir("l2t_gs.avatars")
    if root is None:
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "avatar.json").is_file())


def list_models() -> list[str]:
    """Names of shipped trained models."""
    root = _package_dir("l2t_gs.assets")
    if root is None or not (root / "models").is_dir():
        return []
    return sorted(p.name for p in (root / "models").iterdir() if (p / "model.pt").is_file())
