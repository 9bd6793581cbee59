"""Gaussian splats bound to head-mesh triangles: binding math, avatars, PLY and avatar folders."""

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
