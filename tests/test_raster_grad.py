"""Gradients of the pure torch rasterizer against central finite differences (float64, tiny scene)."""

from __future__ import annotations

import pytest
import torch

from l2t_gs.render import look_at, rasterize
from l2t_gs.render import torch_raster as tr

W, H = 24, 20


def _scene(sh: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    n = 8
    p = dict(
        means=0.12 * torch.randn(n, 3, generator=g, dtype=torch.float64),
        quats=torch.randn(n, 4, generator=g, dtype=torch.float64),
        scales=0.04 * torch.exp(0.4 * torch.randn(n, 3, generator=g, dtype=torch.float64)),
        opacities=0.2 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64),
        colors=(0.6 * torch.randn(n, 4, 3, generator=g, dtype=torch.float64) if sh
                else torch.rand(n, 3, generator=g, dtype=torch.float64)),
        backgrounds=torch.rand(2, 3, generator=g, dtype=torch.float64),
    )  # fmt: skip
    cams = dict(
        viewmats=torch.stack(
            [
                look_at((0.0, 0.0, 1.0), (0.0, 0.0, 0.0), dtype=torch.float64),
                look_at((0.5, 0.3, 0.8), (0.0, 0.0, 0.0), dtype=torch.float64),
            ]
        ),
        Ks=torch.tensor([[[30.0, 0, 12.0], [0, 30.0, 10.0], [0, 0, 1]]] * 2, dtype=torch.float64),
    )
    return p | cams


def _loss(p: dict[str, torch.Tensor], weights: torch.Tensor, sh: bool) -> torch.Tensor:
    img, alpha, _ = rasterize(
        p["means"], p["quats"], p["scales"], p["opacities"], p["colors"], p["viewmats"], p["Ks"], W, H,
        sh_degree=1 if sh else None, backgrounds=p["backgrounds"], render_mode="RGB+D", backend="torch-pure",
    )  # fmt: skip
    return (img * weights[..., :4]).sum() + (alpha[..., 0] * weights[..., 4]).sum()


@pytest.mark.parametrize("sh", [False, True])
def test_gradients_match_finite_differences(sh):
    p = _scene(sh)
    weights = torch.randn(2, H, W, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    names = ["means", "quats", "scales", "opacities", "colors", "backgrounds"]
    leaves = {k: v.clone().requires_grad_(k in names) for k, v in p.items()}
    loss = _loss(leaves, weights, sh)
    assert loss.requires_grad
    loss.backward()
    h = 1e-6
    with torch.no_grad():
        for name in names:
            analytic = leaves[name].grad
            numeric = torch.zeros_like(p[name])
            flat = numeric.view(-1)
            for i in range(flat.numel()):
                plus = {k: v.clone() for k, v in p.items()}
                minus = {k: v.clone() for k, v in p.items()}
                plus[name].view(-1)[i] += h
                minus[name].view(-1)[i] -= h
                flat[i] = (_loss(plus, weights, sh) - _loss(minus, weights, sh)) / (2 * h)
            assert numeric.abs().max() > 1e-3, f"{name}: the scene should give it a gradient"
            torch.testing.assert_close(analytic, numeric, rtol=1e-4, atol=1e-6 * float(numeric.abs().max()),
                                       msg=lambda m, n=name: f"{n}: {m}")  # fmt: skip


def test_checkpointing_does_not_change_gradients():
    p = _scene(False)
    proj = tr.project_gaussians(p["means"], p["quats"], p["scales"], p["viewmats"], p["Ks"], W, H,
                                opacities=p["opacities"])  # fmt: skip
    vis = (proj.radii > 0).all(-1)
    cam, gid = vis.nonzero(as_tuple=True)
    isect = tr.isect_tiles(proj.means2d[cam, gid], proj.radii[cam, gid], proj.depths[cam, gid], cam, 2, 8, 3, 3)
    grads = []
    for use_ckpt in (False, True):
        m2 = proj.means2d[cam, gid].detach().requires_grad_(True)
        con = proj.conics[cam, gid].detach().requires_grad_(True)
        col = p["colors"][gid].clone().requires_grad_(True)
        op = p["opacities"][gid].clone().requires_grad_(True)
        img, alpha = tr.rasterize_to_pixels(m2, con, col, op, W, H, 8, isect, chunk_elements=256,
                                            use_checkpoint=use_ckpt)  # fmt: skip
        (img.square().sum() + alpha.sum()).backward()
        grads.append([m2.grad, con.grad, col.grad, op.grad])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("packed", [True, False])
def test_meta_means2d_receives_gradients(packed):
    """Densification strategies read meta['means2d'].grad after backward (as with gsplat)."""
    p = _scene(False)
    means = p["means"].clone().requires_grad_(True)
    img, _, meta = rasterize(means, p["quats"], p["scales"], p["opacities"], p["colors"], p["viewmats"],
                             p["Ks"], W, H, packed=packed, backend="torch")  # fmt: skip
    meta["means2d"].retain_grad()
    img.sum().backward()
    g = meta["means2d"].grad
    assert g is not None and g.shape == meta["means2d"].shape and g.abs().sum() > 0
    assert means.grad is not None and torch.isfinite(means.grad).all()
    assert meta["backend"] == "torch-pure"


def test_culled_splats_get_zero_finite_gradients():
    p = _scene(False)
    means = p["means"].clone()
    means[0] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # at camera 0's centre (depth 0)
    means[1] = torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)  # behind camera 0
    means.requires_grad_(True)
    scales = p["scales"].clone().requires_grad_(True)
    img, _, _ = rasterize(means, p["quats"], scales, p["opacities"], p["colors"], p["viewmats"][:1],
                          p["Ks"][:1], W, H, backend="torch-pure")  # fmt: skip
    img.sum().backward()
    assert torch.isfinite(means.grad).all() and torch.isfinite(scales.grad).all()
    assert (means.grad[:2] == 0).all()
