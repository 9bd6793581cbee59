"""World-space export: one frame of an avatar as a plain INRIA 3DGS PLY for generic viewers.

Positions, log-scales (``s + log k``) and rotations (``q_tri * normalize(q)``) are transformed
with the frame's triangle frames; opacities stay logits; no ``binding_0`` is written.

SH coefficients are written **unchanged**. GaussianAvatars does not rotate them either (its
renderer evaluates the SH with world-space view directions, ``gaussian_renderer/__init__.py``),
and neither does l2t-gs' rasterizer, so the exported file renders exactly like the avatar does in
both. (View-dependent colour therefore does not turn with the head; it is a small effect.)
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.gaussians.avatar import GaussianAvatar
from l2t_gs.gaussians.binding import local_to_world, triangle_frames
from l2t_gs.gaussians.ply import GaussianPly, write_gaussian_ply


def world_space_ply(avatar: GaussianAvatar, vertices: Tensor | None = None) -> GaussianPly:
    """The splats of one frame in world space, raw values (as a PLY stores them).

    Args:
        vertices: ``[V, 3]`` (or ``[1, V, 3]``) mesh of the frame; ``None`` for the neutral frame.
    """
    if vertices is None:
        vertices = avatar.neutral_vertices()
    if vertices.dim() == 3:
        if vertices.shape[0] != 1:
            raise L2TError(f"export takes one frame, got {vertices.shape[0]}")
        vertices = vertices[0]
    if vertices.dim() != 2 or vertices.shape[-1] != 3:
        raise L2TError(f"vertices must have shape [V, 3], got {list(vertices.shape)}")
    avatar.check_topology(int(vertices.shape[0]))
    with torch.no_grad():
        verts = vertices.detach().cpu().float()
        frames = triangle_frames(verts, avatar.faces)
        means, quats, log_scales = local_to_world(
            frames,
            avatar.binding.cpu(),
            avatar.means.detach().cpu().float(),
            avatar.log_scales.detach().cpu().float(),
            avatar.quats.detach().cpu().float(),
        )
    return GaussianPly(
        means=means[0].numpy(),
        log_scales=log_scales[0].numpy(),
        quats=quats[0].numpy(),
        opacity_logits=avatar.opacity_logits.detach().cpu().float().numpy(),
        sh=avatar.sh.detach().cpu().float().numpy(),
        binding=None,
    )


def world_ply_bytes(avatar: GaussianAvatar) -> int:
    """Size in bytes of one frame written by :func:`export_world_ply` (header included)."""
    k = int(avatar.sh.shape[1])
    props = 3 + 3 + 3 + 3 * (k - 1) + 1 + 3 + 4  # xyz, normals, f_dc, f_rest, opacity, scale, rot
    header = 64 + 24 * props
    return header + 4 * props * avatar.num_splats


def export_world_ply(avatar: GaussianAvatar, path: str | os.PathLike, vertices: Tensor | None = None) -> GaussianPly:
    """Write one frame (default: neutral) as a plain world-space 3DGS PLY, atomically."""
    ply = world_space_ply(avatar, vertices)
    write_gaussian_ply(path, ply)
    return ply
