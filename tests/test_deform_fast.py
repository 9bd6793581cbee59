"""The compiled deformation (l2t_gs.gaussians.deform_fast) against the torch binding code it mirrors."""

from __future__ import annotations

import pytest
import torch

from l2t_gs.gaussians.binding import local_to_world, triangle_frames

deform_fast = pytest.importorskip("l2t_gs.gaussians.deform_fast")
pytestmark = pytest.mark.skipif(not deform_fast.AVAILABLE, reason="no numba")


def _mesh(dtype: torch.dtype, seed: int = 0, n_splats: int = 3000):
    g = torch.Generator().manual_seed(seed)
    verts = torch.randn(400, 3, generator=g, dtype=dtype)
    faces = torch.randint(0, 400, (700, 3), generator=g)
    faces[:5, 1] = faces[:5, 0]  # degenerate (zero-area) triangles
    faces[5:10, 2] = faces[5:10, 1]
    # rotations that pick every Shepperd pivot: random frames cover them; add half-turns
    binding = torch.randint(0, 700, (n_splats,), generator=g)
    binding[:20] = torch.arange(20)
    means = torch.randn(n_splats, 3, generator=g, dtype=dtype)
    log_scales = torch.randn(n_splats, 3, generator=g, dtype=dtype) - 3
    quats = 3.0 * torch.randn(n_splats, 4, generator=g, dtype=dtype)  # not unit on purpose
    return verts, faces, binding, means, log_scales, quats


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_compiled_deformation_matches_the_torch_path(dtype, tol):
    verts, faces, binding, means, log_scales, quats = _mesh(dtype)
    ref = local_to_world(triangle_frames(verts, faces), binding, means, log_scales, quats)
    got = deform_fast.deform_one(verts, faces, binding, means, log_scales, quats)
    # zero-area triangles have no frame: both paths give finite values there (rounding residues
    # normalised, so not comparable); every other splat must agree to float rounding
    f = faces
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    ok = ~degenerate[binding]
    assert int((~ok).sum()) >= 10
    for name, r, x in zip(("means", "quats", "log_scales"), ref, got, strict=True):
        assert x.dtype == dtype and x.shape == r[0].shape, name
        assert torch.isfinite(x).all(), name
        scale = float(r[0][ok].abs().max())
        assert float((x[ok] - r[0][ok]).abs().max()) <= tol * max(scale, 1.0), name
    norms = got[1][ok].norm(dim=-1)
    assert float((norms - 1).abs().max()) < 10 * tol


def test_avatar_takes_the_compiled_path_only_without_gradients(monkeypatch):
    from l2t_gs.gaussians import load_avatar

    avatar = load_avatar("default")
    verts = avatar.neutral_vertices()[None].repeat(2, 1, 1)
    verts[1] += 0.001 * torch.randn_like(verts[1])
    calls = []
    real = deform_fast.deform_one
    monkeypatch.setattr(deform_fast, "deform_one", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        fast = avatar.deform(verts)
    assert len(calls) == 2
    slow_verts = verts.clone().requires_grad_(True)
    slow = avatar.deform(slow_verts)
    assert len(calls) == 2  # gradients wanted: the torch path
    assert slow.means.requires_grad
    for key in ("means", "quats", "scales"):
        a, b = getattr(fast, key), getattr(slow, key).detach()
        assert float((a - b).abs().max()) <= 2e-5 * max(float(b.abs().max()), 1.0), key
