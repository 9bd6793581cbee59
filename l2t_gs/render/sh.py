"""Real spherical harmonics (degrees 0..3) with the constants and sign convention of the INRIA 3DGS code.

Colours from SH follow the 3DGS convention: ``rgb = max(sum_k c_k * Y_k(dir) + 0.5, 0)``; the DC
coefficient therefore relates to a base colour as ``c_0 = (rgb - 0.5) / C0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)

MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per colour channel for ``degree`` (1, 4, 9, 16)."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"SH degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis functions at unit directions.

    Args:
        degree: 0..3.
        dirs: [..., 3] unit vectors.

    Returns:
        [..., (degree+1)**2] basis values in the INRIA ordering.
    """
    n = num_sh_bases(degree)
    out = [torch.full_like(dirs[..., 0], SH_C0)]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    bases = torch.stack(out, dim=-1)
    assert bases.shape[-1] == n
    return bases


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH colours (without the +0.5 offset).

    Args:
        degree: SH degree to use (0..3); only the first (degree+1)**2 coefficients are read.
        dirs: [..., 3] view directions (normalised here; zero vectors give the DC term only).
        coeffs: [..., K, 3] coefficients with K >= (degree+1)**2.

    Returns:
        [..., 3]
    """
    n = num_sh_bases(degree)
    if coeffs.shape[-2] < n:
        raise ValueError(f"SH degree {degree} needs {n} coefficients, got {coeffs.shape[-2]}")
    if degree == 0:
        return SH_C0 * coeffs[..., 0, :]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    bases = sh_bases(degree, dirs)  # [..., n]
    return (bases[..., None] * coeffs[..., :n, :]).sum(dim=-2)


def sh_to_color(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """3DGS colour from SH: ``max(eval_sh + 0.5, 0)``. Shapes as :func:`eval_sh`."""
    return torch.clamp_min(eval_sh(degree, dirs, coeffs) + 0.5, 0.0)


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """DC coefficient [..., 3] that reproduces ``rgb`` [..., 3] (view independent)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: Tensor) -> Tensor:
    """Colour [..., 3] of a DC coefficient [..., 3] (before the clamp at 0)."""
    return sh0 * SH_C0 + 0.5
