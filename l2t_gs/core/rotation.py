"""Rotation helpers: axis-angle, rotation matrices and unit quaternions (w, x, y, z).

Every function is batched over arbitrary leading dimensions (``...``), differentiable, and safe at
the zero rotation: near zero the trigonometric ratios switch to their Taylor series, so values and
gradients stay finite and accurate there (``torch.autograd.gradcheck`` passes at exactly zero).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "axis_angle_to_matrix",
    "axis_angle_to_quat",
    "matrix_to_axis_angle",
    "matrix_to_quat",
    "quat_conjugate",
    "quat_multiply",
    "quat_normalize",
    "quat_rotate",
    "quat_to_axis_angle",
    "quat_to_matrix",
    "skew",
]

# Below this squared angle (angle < 0.1 rad) the series branch is used. With the terms kept below
# the truncation error is < 1e-17 relative, i.e. exact in float64.
_SMALL_SQ = 1e-2


def _poly(x: Tensor, coeffs: tuple[float, ...]) -> Tensor:
    """Evaluate ``sum_k coeffs[k] * x**k`` (Horner)."""
    out = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out = out * x + c
    return out


def _split_small(sq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Split squared magnitudes into (small mask, sq for the series branch, norm for the closed form).

    Both branches receive inputs that keep their values and gradients finite everywhere, so the
    unselected branch of ``torch.where`` never injects NaN into the backward pass.
    """
    small = sq < _SMALL_SQ
    sq_small = torch.where(small, sq, torch.zeros_like(sq))
    norm_large = torch.sqrt(torch.where(small, torch.ones_like(sq), sq))
    return small, sq_small, norm_large


def skew(v: Tensor) -> Tensor:
    """Cross-product matrices: ``skew(v) @ u == cross(v, u)``. ``v`` [..., 3] -> [..., 3, 3]."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Rodrigues' formula. ``axis_angle`` [..., 3] (direction * angle in radians) -> [..., 3, 3].

    R = I + a K + b K^2 with K = skew(r), a = sin(t)/t, b = (1 - cos t)/t^2, t = |r|. The zero
    vector maps to the identity exactly.
    """
    sq = (axis_angle * axis_angle).sum(-1)
    small, sq_s, t = _split_small(sq)
    # sin(t)/t and (1-cos t)/t^2 as power series in t^2, and in closed (cancellation-free) form.
    a_series = _poly(sq_s, (1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880))
    b_series = _poly(sq_s, (0.5, -1 / 24, 1 / 720, -1 / 40320, 1 / 3628800))
    half_sin = torch.sin(0.5 * t)
    a_closed = torch.sin(t) / t
    b_closed = 2.0 * half_sin * half_sin / (t * t)
    a = torch.where(small, a_series, a_closed)[..., None, None]
    b = torch.where(small, b_series, b_closed)[..., None, None]
    k = skew(axis_angle)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + a * k + b * (k @ k)


def axis_angle_to_quat(axis_angle: Tensor) -> Tensor:
    """Axis-angle [..., 3] -> unit quaternion (w, x, y, z) [..., 4] with w >= 0 for angles <= pi."""
    sq = (axis_angle * axis_angle).sum(-1)
    small, sq_s, t = _split_small(sq)
    x2 = 0.25 * sq_s  # (t/2)^2
    # sin(t/2)/t = 0.5 * sinc(t/2); cos(t/2); both as series in (t/2)^2 near zero.
    s_series = 0.5 * _poly(x2, (1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880))
    c_series = _poly(x2, (1.0, -1 / 2, 1 / 24, -1 / 720, 1 / 40320))
    s = torch.where(small, s_series, torch.sin(0.5 * t) / t)
    c = torch.where(small, c_series, torch.cos(0.5 * t))
    return torch.cat([c[..., None], s[..., None] * axis_angle], dim=-1)


def quat_to_axis_angle(quat: Tensor) -> Tensor:
    """Quaternion (w, x, y, z) [..., 4], any non-zero norm -> axis-angle [..., 3] with angle in [0, pi]."""
    q = quat_normalize(quat)
    q = torch.where(q[..., :1] < 0, -q, q)  # same rotation; w >= 0 gives the angle in [0, pi]
    w, v = q[..., 0], q[..., 1:]
    n2 = (v * v).sum(-1)
    # angle / |v| = 2 atan2(|v|, w) / |v|; near |v| = 0 (so w ~ 1) use the atan series in (|v|/w)^2.
    small = n2 < _SMALL_SQ * (w * w)
    w_safe = torch.where(small, w, torch.ones_like(w))
    u = torch.where(small, n2 / (w_safe * w_safe), torch.zeros_like(n2))
    ratio_series = 2.0 / w_safe * _poly(u, (1.0, -1 / 3, 1 / 5, -1 / 7, 1 / 9, -1 / 11, 1 / 13, -1 / 15, 1 / 17))
    n = torch.sqrt(torch.where(small, torch.ones_like(n2), n2))
    ratio_closed = 2.0 * torch.atan2(n, w) / n
    ratio = torch.where(small, ratio_series, ratio_closed)
    return v * ratio[..., None]


def quat_normalize(quat: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale quaternions [..., 4] to unit norm (norm clamped below by ``eps``)."""
    return quat / quat.norm(dim=-1, keepdim=True).clamp_min(eps)


def quat_conjugate(quat: Tensor) -> Tensor:
    """(w, x, y, z) -> (w, -x, -y, -z); the inverse rotation of a unit quaternion."""
    return torch.cat([quat[..., :1], -quat[..., 1:]], dim=-1)


def quat_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of quaternions [..., 4] (broadcasting): rotate by b, then by a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_to_matrix(quat: Tensor, eps: float = 1e-12) -> Tensor:
    """Quaternion (w, x, y, z) [..., 4] -> rotation matrix [..., 3, 3]; the input need not be unit.

    The one quaternion-to-matrix conversion of the project (binding, rasterizers, viewer): ``quat`` is
    normalised first (norm clamped below by ``eps``, so a zero quaternion gives the identity, not NaN).
    """
    w, x, y, z = (quat / quat.norm(dim=-1, keepdim=True).clamp_min(eps)).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*quat.shape[:-1], 3, 3)


def matrix_to_quat(matrix: Tensor) -> Tensor:
    """Rotation matrix [..., 3, 3] -> unit quaternion (w, x, y, z) [..., 4] with w >= 0.

    Shepperd's method: of the four algebraically equivalent extractions, each sample uses the one
    with the largest pivot, so no division by a small number happens.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    # 4 * q_i^2 for i = w, x, y, z.
    pivots = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)
    # Row i holds 4 * q_i * (w, x, y, z); the diagonal entry is the pivot itself.
    rows = torch.stack(
        [
            torch.stack([pivots[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, pivots[..., 1], m01 + m10, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m01 + m10, pivots[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, pivots[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    best = pivots.argmax(dim=-1)
    index = best[..., None, None].expand(*best.shape, 1, 4)
    chosen = torch.gather(rows, -2, index).squeeze(-2)  # 4 q_best * q
    q = quat_normalize(chosen)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Rotation matrix [..., 3, 3] -> axis-angle [..., 3] with angle in [0, pi]."""
    return quat_to_axis_angle(matrix_to_quat(matrix))


def quat_rotate(quat: Tensor, vec: Tensor) -> Tensor:
    """Rotate vectors [..., 3] by quaternions [..., 4] (broadcasting; the quaternion need not be unit)."""
    q = quat_normalize(quat)
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * torch.linalg.cross(u, vec, dim=-1)
    return vec + w * t + torch.linalg.cross(u, t, dim=-1)
