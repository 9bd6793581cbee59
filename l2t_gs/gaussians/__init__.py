"""Gaussian splats bound to head-mesh triangles: binding math, avatars, PLY and avatar folders.

The names below load with their modules on first use (:func:`l2t_gs.core.lazy.lazy_exports`), so that a
light submodule (``frame_options``) imports without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from l2t_gs.core.lazy import lazy_exports

#: exported name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "GaussianAvatar": "avatar",
    "GaussianPly": "ply",
    "SplatFrames": "avatar",
    "TriangleFrames": "binding",
    "default_neutral_params": "avatar",
    "export_world_ply": "export",
    "import_gaussian_avatars": "avatar_io",
    "load_avatar": "avatar_io",
    "local_to_world": "binding",
    "read_gaussian_ply": "ply",
    "save_avatar": "avatar_io",
    "triangle_frames": "binding",
    "world_space_ply": "export",
    "world_to_local": "binding",
    "write_gaussian_ply": "ply",
}

__all__ = [
    "GaussianAvatar",
    "GaussianPly",
    "SplatFrames",
    "TriangleFrames",
    "default_neutral_params",
    "export_world_ply",
    "import_gaussian_avatars",
    "load_avatar",
    "local_to_world",
    "read_gaussian_ply",
    "save_avatar",
    "triangle_frames",
    "world_space_ply",
    "world_to_local",
    "write_gaussian_ply",
]

if TYPE_CHECKING:
    from l2t_gs.gaussians.avatar import GaussianAvatar, SplatFrames, default_neutral_params
    from l2t_gs.gaussians.avatar_io import import_gaussian_avatars, load_avatar, save_avatar
    from l2t_gs.gaussians.binding import (
        TriangleFrames,
        local_to_world,
        triangle_frames,
        world_to_local,
    )
    from l2t_gs.gaussians.export import export_world_ply, world_space_ply
    from l2t_gs.gaussians.ply import GaussianPly, read_gaussian_ply, write_gaussian_ply

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
