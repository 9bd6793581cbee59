"""Projection, 3D covariance and SH of the torch rasterizer against gsplat's pure-torch reference code.

gsplat's ``gsplat.cuda._torch_impl`` functions run on CPU; tests that need them skip when gsplat is
not importable.
"""

from __future__ import annotations

import math

import pytest
import torch

from l2t_gs.core.rotation import quat_to_matrix
from l2t_gs.render import look_at
from l2t_gs.render.sh import eval_sh, num_sh_bases, rgb_to_sh, sh_to_color, sh_to_rgb
from l2t_gs.render.torch_raster import (
    ALPHA_MIN,
    MAX_EXTENT,
    project_gaussians,
    quat_scale_to_covar,
)

W, H = 96, 72


@pytest.fixture(scope="module")
def ref():
    return pytest.importorskip("gsplat.cuda._torch_impl", reason="gsplat is not importable")


def _scene(n: int = 500, seed: int = 0) -> dict[str, torch.Tensor]:
    """Splats in and around the view of two cameras: behind them, off-screen, near the FOV clamp."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor([1.5, 1.2, 1.0], dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64) * 3.0
    scales = 0.05 * torch.exp(torch.randn(n, 3, generator=g, dtype=torch.float64))
    opacities = torch.rand(n, generator=g, dtype=torch.float64)
    viewmats = torch.stack(
        [
            look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0), dtype=torch.float64),
            look_at((2.0, 1.0, 2.0), (0.1, 0.0, -0.2), dtype=torch.float64),
        ]
    )
    Ks = torch.tensor(
        [[[80.0, 0, 48.0], [0, 80.0, 36.0], [0, 0, 1]], [[120.0, 0, 40.0], [0, 110.0, 30.0], [0, 0, 1]]],
        dtype=torch.float64,
    )
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, viewmats=viewmats, Ks=Ks)


def test_rotmat_is_orthonormal():
    q = torch.randn(100, 4, dtype=torch.float64)
    r = quat_to_matrix(q)
    torch.testing.assert_close(r @ r.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(100, 3, 3))
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(100, dtype=torch.float64))
    # identity quaternion, and a 90 degree turn about +z maps +x to +y
    torch.testing.assert_close(quat_to_matrix(torch.tensor([2.0, 0, 0, 0])), torch.eye(3))
    s = math.sqrt(0.5)
    torch.testing.assert_close(quat_to_matrix(torch.tensor([s, 0, 0, s])) @ torch.tensor([1.0, 0, 0]),
                               torch.tensor([0.0, 1.0, 0.0]))  # fmt: skip


def test_covariance_matches_gsplat(ref):
    s = _scene()
    covars, _ = ref._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    torch.testing.assert_close(quat_scale_to_covar(s["quats"], s["scales"]), covars)


@pytest.mark.parametrize("eps2d,calc_comp", [(0.3, False), (0.3, True), (0.0, False), (1.0, True)])
def test_projection_matches_gsplat(ref, eps2d, calc_comp):
    s = _scene()
    covars, _ = ref._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    # Cameras' world-to-camera step on its own, then the fully fused projection.
    means_c, covars_c = ref._world_to_cam(s["means"], covars, s["viewmats"])
    means2d_ref, _ = ref._persp_proj(means_c, covars_c, s["Ks"], W, H)
    radii, means2d, depths, conics, comps = ref._fully_fused_projection(
        s["means"], covars, s["viewmats"], s["Ks"], W, H, eps2d=eps2d, near_plane=0.01, far_plane=1e10,
        calc_compensations=calc_comp,
    )  # fmt: skip
    proj = project_gaussians(
        s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], W, H, eps2d=eps2d, calc_compensations=calc_comp
    )
    valid = (radii > 0).all(-1)
    assert 0.2 < valid.float().mean() < 0.95, "the scene should have both visible and culled splats"
    torch.testing.assert_close(proj.radii, radii)
    torch.testing.assert_close(proj.depths, depths)
    in_depth = depths > 0.01  # culled by depth: means2d is unspecified there
    torch.testing.assert_close(proj.means2d[in_depth], means2d[in_depth])
    torch.testing.assert_close(proj.means2d[valid], means2d_ref[valid])
    torch.testing.assert_close(proj.conics[valid], conics[valid])
    if calc_comp:
        torch.testing.assert_close(proj.compensations[valid], comps[valid])
    else:
        assert proj.compensations is None


def test_fov_clamp_is_exercised(ref):
    """Some visible splats lie outside the clamp range, so the Jacobian clamp matters there."""
    s = _scene()
    proj = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], W, H)
    mc = torch.einsum("cij,nj->cni", s["viewmats"][:, :3, :3], s["means"]) + s["viewmats"][:, None, :3, 3]
    k = s["Ks"]
    lim = (W - k[:, 0, 2]) / k[:, 0, 0] + 0.3 * 0.5 * W / k[:, 0, 0]
    outside = (mc[..., 0] / mc[..., 2] > lim[:, None]) & (proj.radii > 0).all(-1)
    assert outside.any()


def test_near_far_and_radius_clip():
    s = _scene()
    proj = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], W, H,
                             near_plane=2.5, far_plane=3.2)  # fmt: skip
    vis = (proj.radii > 0).all(-1)
    assert vis.any()
    assert ((proj.depths[vis] >= 2.5) & (proj.depths[vis] <= 3.2)).all()
    clip = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], W, H, radius_clip=3.0)
    kept = (clip.radii > 0).all(-1)
    assert (clip.radii[kept].max(-1).values > 3).all()
    full = (project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], W, H).radii > 0).all(-1)
    assert kept.sum() < full.sum()


def test_opacity_aware_extent_bounds_every_visible_pixel():
    """With opacities, radii = ceil(min(3.33, sqrt(2 ln(255 o))) * sigma) per axis, and every pixel
    where alpha >= 1/255 lies inside that box (this is what lets tiles skip the rest)."""
    s = _scene()
    op = s["opacities"]
    proj = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], W, H, opacities=op)
    base = project_gaussians(s["means"], s["quats"], s["scales"], s["viewmats"], s["Ks"], W, H)
    vis = (proj.radii > 0).all(-1)
    assert vis.any() and (vis <= (base.radii > 0).all(-1)).all()
    low = op[None].expand_as(vis) < ALPHA_MIN
    assert not (vis & low).any()
    # sigma of the blurred 2D covariance from the conic: cov = inv(conic)
    a, b, c = proj.conics.unbind(-1)
    det = a * c - b * b
    sx, sy = torch.sqrt(c / det), torch.sqrt(a / det)
    ext = torch.clamp_max(torch.sqrt(2 * torch.log(torch.clamp_min(op * 255.0, 1.0))), MAX_EXTENT)[None]
    torch.testing.assert_close(proj.radii[vis].double(), torch.ceil(torch.stack([ext * sx, ext * sy], -1))[vis])
    # dense check of the bound on a fine grid around each visible splat of camera 0
    idx = torch.nonzero(vis[0]).flatten()[:60]
    g = torch.linspace(-1.5, 1.5, 121, dtype=torch.float64)
    for i in idx:
        rx, ry = proj.radii[0, i].double()
        dx = g[:, None] * rx
        dy = g[None, :] * ry
        sigma = 0.5 * (a[0, i] * dx * dx + c[0, i] * dy * dy) + b[0, i] * dx * dy
        alpha = op[i] * torch.exp(-sigma)
        outside = (dx.abs() > rx) | (dy.abs() > ry)
        assert not (outside & (alpha >= ALPHA_MIN)).any()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(ref, degree):
    g = torch.Generator().manual_seed(degree)
    dirs = torch.randn(300, 3, generator=g, dtype=torch.float64) * 4.0
    coeffs = torch.randn(300, 16, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(eval_sh(degree, dirs, coeffs), ref._spherical_harmonics(degree, dirs, coeffs))
    torch.testing.assert_close(
        eval_sh(degree, dirs, coeffs[:, : num_sh_bases(degree)]), ref._spherical_harmonics(degree, dirs, coeffs)
    )


def test_sh_helpers_roundtrip():
    rgb = torch.rand(50, 3, dtype=torch.float64)
    sh0 = rgb_to_sh(rgb)
    torch.testing.assert_close(sh_to_rgb(sh0), rgb)
    coeffs = torch.zeros(50, 16, 3, dtype=torch.float64)
    coeffs[:, 0] = sh0
    dirs = torch.randn(50, 3, dtype=torch.float64)
    for d in range(4):
        torch.testing.assert_close(sh_to_color(d, dirs, coeffs), rgb)
    with pytest.raises(ValueError):
        eval_sh(3, dirs, coeffs[:, :9])
