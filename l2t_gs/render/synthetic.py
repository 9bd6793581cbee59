"""Deterministic head-like splat scenes for benchmarks, tests and demos (no assets needed).

Splats lie on and just under an ellipsoidal head (FLAME axes: metres, +y up, face toward +z), oriented
flat along the surface, with hair, eyes and lips coloured so that renders read as a head. Splat size
shrinks with their number so that the surface stays covered about twice over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from l2t_gs.core.rotation import quat_multiply
from l2t_gs.render.sh import num_sh_bases, rgb_to_sh

#: Semi-axes (x, y, z) of the head ellipsoid in metres.
HEAD_SEMI_AXES = (0.075, 0.10, 0.09)


@dataclass
class SplatScene:
    """Activated splat parameters for :func:`l2t_gs.render.rasterize`."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz, unit
    scales: Tensor  # [N, 3]
    opacities: Tensor  # [N]
    colors: Tensor  # [N, 3] RGB in [0, 1]
    sh: Tensor  # [N, K, 3] SH coefficients (DC matches ``colors``)
    sh_degree: int

    def bbox(self) -> Tensor:
        """[2, 3] min and max corners of the means."""
        return torch.stack([self.means.min(0).values, self.means.max(0).values])


def _align_z_to(normals: Tensor) -> Tensor:
    """Unit quaternions [N, 4] rotating +z onto each unit normal [N, 3]."""
    z = torch.zeros_like(normals)
    z[:, 2] = 1.0
    axis = torch.linalg.cross(z, normals)
    s = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(s[:, 0], normals[:, 2])
    axis = torch.where(s > 1e-9, axis / s.clamp_min(1e-12), torch.tensor([1.0, 0.0, 0.0]))
    return torch.cat([torch.cos(angle / 2)[:, None], torch.sin(angle / 2)[:, None] * axis], dim=-1)


def head_scene(n: int, seed: int = 0, sh_degree: int = 3, dtype: torch.dtype = torch.float32) -> SplatScene:
    """A head-like scene of ``n`` splats (deterministic for a given seed)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.tensor(HEAD_SEMI_AXES, dtype=torch.float64)
    dirs = torch.randn(n, 3, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    surf = dirs * a
    normals = surf / a**2
    normals = normals / normals.norm(dim=-1, keepdim=True)
    depth = torch.randn(n, generator=g, dtype=torch.float64).abs() * 0.003
    means = surf - normals * depth[:, None]

    # Surface area of the ellipsoid (Knud Thomsen's approximation) sets the splat size.
    p = 1.6075
    ab, ac, bc = (a[0] * a[1]) ** p, (a[0] * a[2]) ** p, (a[1] * a[2]) ** p
    area = 4 * math.pi * float(((ab + ac + bc) / 3) ** (1 / p))
    s0 = math.sqrt(2.0 * area / (n * math.pi))
    size = s0 * torch.exp(0.35 * torch.randn(n, generator=g, dtype=torch.float64))
    scales = torch.stack([size, size * (0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)), 0.25 * size], -1)

    spin = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    q_spin = torch.stack([torch.cos(spin), torch.zeros_like(spin), torch.zeros_like(spin), torch.sin(spin)], -1)
    quats = quat_multiply(_align_z_to(normals), q_spin)
    opacities = torch.sigmoid(2.0 + 1.5 * torch.randn(n, generator=g, dtype=torch.float64))

    x, y, z = surf.unbind(-1)
    rgb = torch.tensor([0.86, 0.64, 0.52], dtype=torch.float64).expand(n, 3).clone()
    hair = (y > 0.035) | (z < -0.02) & (y > -0.04)
    rgb[hair] = torch.tensor([0.25, 0.15, 0.08], dtype=torch.float64)
    eye = ((x.abs() - 0.032) ** 2 / 0.012**2 + (y - 0.012) ** 2 / 0.007**2 < 1) & (z > 0.05)
    rgb[eye] = torch.tensor([0.12, 0.1, 0.1], dtype=torch.float64)
    lips = (x**2 / 0.025**2 + (y + 0.05) ** 2 / 0.008**2 < 1) & (z > 0.05)
    rgb[lips] = torch.tensor([0.72, 0.3, 0.32], dtype=torch.float64)
    rgb = (rgb + 0.04 * torch.randn(n, 3, generator=g, dtype=torch.float64)).clamp(0, 1)

    k = num_sh_bases(sh_degree)
    sh = 0.05 * torch.randn(n, k, 3, generator=g, dtype=torch.float64)
    sh[:, 0] = rgb_to_sh(rgb)
    return SplatScene(
        means=means.to(dtype),
        quats=quats.to(dtype),
        scales=scales.to(dtype),
        opacities=opacities.to(dtype),
        colors=rgb.to(dtype),
        sh=sh.to(dtype),
        sh_degree=sh_degree,
    )
