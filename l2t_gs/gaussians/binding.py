"""Gaussian-to-triangle binding (the GaussianAvatars scheme), batched over frames.

Every splat has a parent triangle ``(v0, v1, v2)`` and lives in that triangle's local frame:

- ``a0 = normalize(v1 - v0)``, ``a1 = normalize(a0 x (v2 - v0))`` (the face normal),
  ``a2 = -normalize(a1 x a0)`` (= ``a0 x a1``); ``R = [a0 a1 a2]`` as *columns*, a proper rotation.
- scale ``k = (|v1 - v0| + |a2 . (v2 - v0)|) / 2`` (mean of the base length and the height).
- origin: the triangle centroid ``c = (v0 + v1 + v2) / 3``.

Local -> world, for a splat with local mean ``mu``, log-scales ``s`` and quaternion ``q`` (wxyz):

- position ``x = k * R @ mu + c``
- scales ``exp(s) * k`` (log-space: ``s + log k``)
- rotation ``q_world = q_tri * normalize(q)`` (Hamilton product, triangle on the left), where
  ``q_tri`` is the unit quaternion of ``R``.

These conventions match GaussianAvatars: ``utils/graphics_utils.py::compute_face_orientation``
(axes, scale, normalisation with ``eps = 1e-20`` on the squared length), and
``scene/flame_gaussian_model.py::update_mesh_properties`` (centroid = mean of the three corners)
with ``scene/gaussian_model.py::get_xyz / get_scaling / get_rotation`` (the formulas above, the
triangle quaternion normalised and multiplied on the left of the normalised local one).

Degenerate triangles (zero area) give a degenerate frame exactly as in GaussianAvatars, but never
NaN: normalisation is guarded and the matrix-to-quaternion conversion falls back to the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from l2t_gs.core.rotation import matrix_to_quat, quat_conjugate, quat_multiply

#: Guard on squared lengths before a square root (GaussianAvatars uses the same value).
NORM_EPS = 1e-20


def safe_normalize(x: Tensor, eps: float = NORM_EPS) -> Tensor:
    """``x / |x|`` along the last axis, with ``|x|^2`` clamped at ``eps`` (no NaN, finite gradients)."""
    return x / torch.sqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=eps))


def frame_quats(matrix: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` -> unit quaternions ``[..., 4]`` (wxyz, ``w >= 0``).

    :func:`l2t_gs.core.rotation.matrix_to_quat` (Shepperd's method, accurate for every rotation,
    half-turns included); non-rotations such as the zero matrix of a degenerate triangle map to
    the identity instead of a non-unit result.
    """
    q = matrix_to_quat(matrix)
    identity = torch.zeros_like(q)
    identity[..., 0] = 1.0
    return torch.where((q * q).sum(-1, keepdim=True) < 0.5, identity, q)


@dataclass
class TriangleFrames:
    """Per-triangle local frames of a batch of meshes.

    Attributes:
        rotations: ``[B, F, 3, 3]`` columns ``a0, a1, a2``.
        quats: ``[B, F, 4]`` the same rotations as unit quaternions (wxyz, ``w >= 0``).
        scales: ``[B, F]`` the isotropic scale ``k``.
        centroids: ``[B, F, 3]`` triangle centroids (the frame origins).
    """

    rotations: Tensor
    quats: Tensor
    scales: Tensor
    centroids: Tensor


def triangle_frames(vertices: Tensor, faces: Tensor) -> TriangleFrames:
    """Local frames of every triangle.

    Args:
        vertices: ``[B, V, 3]`` (or ``[V, 3]``, treated as ``B = 1``).
        faces: ``[F, 3]`` integer vertex indices.
    """
    if vertices.dim() == 2:
        vertices = vertices[None]
    tri = vertices[:, faces.long()]  # [B, F, 3 corners, 3]
    v0, v1, v2 = tri.unbind(-2)
    e1 = v1 - v0
    e2 = v2 - v0
    a0 = safe_normalize(e1)
    a1 = safe_normalize(torch.cross(a0, e2, dim=-1))
    a2 = -safe_normalize(torch.cross(a1, a0, dim=-1))
    rotations = torch.stack([a0, a1, a2], dim=-1)  # columns
    base = torch.sqrt(torch.clamp((e1 * e1).sum(-1), min=NORM_EPS))
    height = (a2 * e2).sum(-1).abs()
    return TriangleFrames(
        rotations=rotations,
        quats=frame_quats(rotations),
        scales=(base + height) / 2,
        centroids=tri.mean(dim=-2),
    )


def local_to_world(
    frames: TriangleFrames, binding: Tensor, means: Tensor, log_scales: Tensor, quats: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Splats from their parent triangles' frames to world space.

    Args:
        frames: triangle frames of ``B`` meshes (``[B, F, ...]``).
        binding: ``[N]`` parent triangle of each splat.
        means: ``[N, 3]`` local positions. log_scales: ``[N, 3]``. quats: ``[N, 4]`` local wxyz.

    Returns:
        ``(means [B, N, 3], quats [B, N, 4] unit wxyz, log_scales [B, N, 3])`` in world space;
        world scales are ``exp(log_scales)``.
    """
    b = binding.long()
    rot = frames.rotations[:, b]  # [B, N, 3, 3]
    k = frames.scales[:, b, None]  # [B, N, 1]
    world_means = torch.einsum("bnij,nj->bni", rot, means) * k + frames.centroids[:, b]
    world_quats = quat_multiply(safe_normalize(frames.quats[:, b]), safe_normalize(quats)[None])
    world_log_scales = log_scales[None] + torch.log(k)
    return world_means, world_quats, world_log_scales


def world_to_local(
    frames: TriangleFrames, binding: Tensor, means: Tensor, log_scales: Tensor, quats: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`local_to_world` for one mesh (``B = 1``).

    Args:
        frames: frames of a single mesh (``[1, F, ...]``).
        binding: ``[N]``; means ``[N, 3]``, log_scales ``[N, 3]``, quats ``[N, 4]`` in world space.

    Returns:
        ``(means [N, 3], quats [N, 4], log_scales [N, 3])`` in the parent triangles' frames.
    """
    if frames.rotations.shape[0] != 1:
        raise ValueError("world_to_local takes the frames of a single mesh")
    b = binding.long()
    rot = frames.rotations[0, b]  # [N, 3, 3]
    k = frames.scales[0, b, None]  # [N, 1]
    local_means = torch.einsum("nji,nj->ni", rot, means - frames.centroids[0, b]) / k
    local_quats = quat_multiply(quat_conjugate(safe_normalize(frames.quats[0, b])), safe_normalize(quats))
    return local_means, local_quats, log_scales - torch.log(k)
