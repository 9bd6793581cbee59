"""Functional core of FLAME: blendshapes, joint regression, the kinematic chain and linear blend skinning.

Notation: B batch, V vertices, J joints, K blendshape components, P = 9 * (J - 1) pose correctives.
All functions are vectorised over vertices; only the kinematic chain loops (over the J joints).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from l2t_gs.core.rotation import axis_angle_to_matrix

__all__ = [
    "batch_rigid_transform",
    "blend_shapes",
    "lbs",
    "pose_feature",
    "skin_vertices",
    "vertices2joints",
]


def blend_shapes(coeffs: Tensor, dirs: Tensor) -> Tensor:
    """Blendshape displacement ``sum_k coeffs[..., k] * dirs[:, :, k]``.

    coeffs [..., K], dirs [V, 3, K] -> [..., V, 3]. K may be 0 (gives zeros).
    """
    v, _, k = dirs.shape
    if coeffs.shape[-1] != k:
        raise ValueError(f"blend_shapes: {coeffs.shape[-1]} coefficients for {k} components")
    flat = coeffs.reshape(-1, k) @ dirs.reshape(v * 3, k).transpose(0, 1)
    return flat.reshape(*coeffs.shape[:-1], v, 3)


def vertices2joints(J_regressor: Tensor, vertices: Tensor) -> Tensor:
    """Regress joint locations: J_regressor [J, V], vertices [..., V, 3] -> [..., J, 3]."""
    return torch.matmul(J_regressor, vertices)


def pose_feature(rot_mats: Tensor) -> Tensor:
    """FLAME pose-corrective feature: (R_j - I) flattened for joints 1..J-1 (the root is excluded).

    rot_mats [..., J, 3, 3] -> [..., 9 * (J - 1)].
    """
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[..., 1:, :, :] - eye).flatten(-3)


def _as_int_list(parents: Tensor | Sequence[int]) -> list[int]:
    return [int(p) for p in (parents.tolist() if isinstance(parents, Tensor) else parents)]


def batch_rigid_transform(rot_mats: Tensor, joints: Tensor, parents: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
    """Pose the kinematic tree.

    Args:
        rot_mats: [B, J, 3, 3] local joint rotations (relative to the parent joint).
        joints: [B, J, 3] rest-pose joint locations.
        parents: [J] parent index of every joint, ``parents[0] == -1`` and ``parents[j] < j``.

    Returns:
        posed_joints [B, J, 3] and the skinning transforms [B, J, 4, 4]: ``A_j`` maps a rest-pose
        point rigidly attached to joint j to its posed location (``G_j`` composed with a translation
        by ``-joints_j``, where ``G_j`` is the world transform of the joint frame).

    ``A_j`` is accumulated as ``A_parent`` composed with "rotate by R_j about the rest joint j", i.e.
    ``A_j = A_p [R_j | (I - R_j) J_j]``, which equals the usual ``G_j [I | -J_j]`` but yields exact
    identities (no rounding in the translation) at the zero pose.
    """
    par = _as_int_list(parents)
    n_joints = joints.shape[-2]
    if len(par) != n_joints or rot_mats.shape[-3] != n_joints:
        raise ValueError(
            f"batch_rigid_transform: {len(par)} parents, {n_joints} joints, {rot_mats.shape[-3]} rotations"
        )
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    # Translation of "rotate by R_j about J_j": (I - R_j) J_j, [B, J, 3].
    pivot_t = ((eye - rot_mats) @ joints[..., None])[..., 0]
    rots: list[Tensor] = []
    trans: list[Tensor] = []
    for j, p in enumerate(par):
        if j == 0:
            if p != -1:
                raise ValueError(f"batch_rigid_transform: parents[0] must be -1, got {p}")
            rots.append(rot_mats[:, 0])
            trans.append(pivot_t[:, 0])
            continue
        if not 0 <= p < j:
            raise ValueError(f"batch_rigid_transform: parents[{j}] = {p} must be in [0, {j})")
        r_p, t_p = rots[p], trans[p]
        rots.append(r_p @ rot_mats[:, j])
        trans.append((r_p @ pivot_t[:, j, :, None])[..., 0] + t_p)
    rot = torch.stack(rots, dim=1)  # [B, J, 3, 3]
    tr = torch.stack(trans, dim=1)  # [B, J, 3]
    posed_joints = (rot @ joints[..., None])[..., 0] + tr
    top = torch.cat([rot, tr[..., None]], dim=-1)  # [B, J, 3, 4]
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return posed_joints, torch.cat([top, bottom], dim=-2)


def skin_vertices(vertices: Tensor, transforms: Tensor, lbs_weights: Tensor) -> Tensor:
    """Linear blend skinning: ``v' = (sum_j w_vj A_j) v``.

    vertices [B, V, 3], transforms [B, J, 4, 4], lbs_weights [V, J] -> [B, V, 3].
    """
    b, n_joints = transforms.shape[:2]
    a34 = transforms[..., :3, :].reshape(b, n_joints, 12)
    t = torch.matmul(lbs_weights, a34).reshape(b, -1, 3, 4)  # [B, V, 3, 4]
    return (t[..., :3] @ vertices[..., None])[..., 0] + t[..., 3]


def lbs(
    pose: Tensor,
    v_shaped: Tensor,
    posedirs: Tensor,
    J_regressor: Tensor,
    parents: Tensor | Sequence[int],
    lbs_weights: Tensor,
    pose2rot: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """FLAME/SMPL linear blend skinning of already shaped vertices.

    Args:
        pose: [B, J, 3] (or [B, J * 3]) axis-angle per joint, or [B, J, 3, 3] rotation matrices when
            ``pose2rot`` is False. Joint 0 is the global rotation (about joint 0).
        v_shaped: [B, V, 3] (or [1, V, 3], broadcast) template plus blendshapes and offsets.
        posedirs: [P, V * 3] pose-corrective basis, P = 9 * (J - 1).
        J_regressor: [J, V]. parents: [J]. lbs_weights: [V, J].

    Returns:
        vertices [B, V, 3], posed joints [B, J, 3], skinning transforms [B, J, 4, 4].

    Steps: J = J_regressor v_shaped; v_posed = v_shaped + posedirs^T (R_1..J-1 - I);
    transforms along the kinematic tree; v = sum_j w_j A_j v_posed. Translation is the caller's.
    """
    n_joints = J_regressor.shape[0]
    if pose2rot:
        rot_mats = axis_angle_to_matrix(pose.reshape(pose.shape[0], n_joints, 3))
    else:
        rot_mats = pose
    b = rot_mats.shape[0]
    if v_shaped.shape[0] not in (1, b):
        raise ValueError(f"lbs: v_shaped batch {v_shaped.shape[0]} does not match pose batch {b}")
    v_shaped = v_shaped.expand(b, -1, -1)
    joints = vertices2joints(J_regressor, v_shaped)
    pose_offsets = (pose_feature(rot_mats) @ posedirs).reshape(b, -1, 3)
    v_posed = v_shaped + pose_offsets
    posed_joints, transforms = batch_rigid_transform(rot_mats, joints, parents)
    verts = skin_vertices(v_posed, transforms, lbs_weights)
    return verts, posed_joints, transforms
