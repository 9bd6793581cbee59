"""The compiled CPU rasterizer's shortcuts (box-visited small splats, o*exp(-sigma) walked between
rows, per-row early termination, wide tiles) against the pure PyTorch path at float64 tolerances.

The pure path is itself checked against a brute-force renderer in tests/test_raster_render.py; here
the scenes are built so that every shortcut is taken: small round splats (box-visited), long thin
splats crossing several tiles (rows solved and walked), opaque layers (rows and splats skipped
once their pixels ran out of transmittance), and tiny splats with a small eps2d (steep conics: no walk).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2t_gs.render import look_at, rasterize
from l2t_gs.render.backend_cpu import fast_cpu_available

pytestmark = pytest.mark.skipif(not fast_cpu_available(), reason="no numba")

W, H = 150, 110


def _scene(seed: int, n: int, scale: float, spread: float) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = spread * torch.randn(n, 3, generator=g, dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = scale * torch.exp(0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64))
    scales[: n // 10, 0] *= 12.0  # long thin splats over several tiles
    opacities = torch.rand(n, generator=g, dtype=torch.float64)
    opacities[::3] = 1.0  # opaque layers: pixels run out of transmittance
    rgb = torch.rand(n, 3, generator=g, dtype=torch.float64)
    vm = look_at((0.1, 0.05, 1.2), (0.0, 0.0, 0.0), dtype=torch.float64)[None]
    K = torch.tensor([[[130.0, 0, 75.0], [0, 130.0, 55.0], [0, 0, 1]]], dtype=torch.float64)
    return dict(means=means, quats=quats, scales=scales, opacities=opacities, colors=rgb, viewmats=vm, Ks=K)


def _both(s: dict[str, torch.Tensor], **kw) -> list[tuple[torch.Tensor, torch.Tensor]]:
    bg = torch.tensor([[0.2, 0.4, 0.9]], dtype=torch.float64)
    out = []
    with torch.no_grad():
        for be in ("torch-pure", "cpu-fast"):
            img, alpha, meta = rasterize(**s, width=W, height=H, backgrounds=bg, render_mode="RGB+D", backend=be, **kw)
            assert meta["backend"] == be
            out.append((img, alpha))
    return out


def _records(s: dict[str, torch.Tensor], eps2d: float) -> np.ndarray:
    """The compiled path's per-splat records [M, 16] (conic a, b, c in columns 2..4; box flag in 15)."""
    from l2t_gs.render import cpu_fast

    cap = {}
    pack = cpu_fast._pack

    def spy(*args):
        pack(*args)
        cap.setdefault("rec", args[6])  # the record array the chunks fill (shared by every chunk)

    cpu_fast._pack = spy
    try:
        with torch.no_grad():
            rasterize(**s, width=W, height=H, backend="cpu-fast", eps2d=eps2d)
    finally:
        cpu_fast._pack = pack
    return cap["rec"].copy()


@pytest.mark.parametrize("seed", [0, 1])
def test_mixed_scene_matches_the_pure_path(seed):
    s = _scene(seed, 3000, 0.006, 0.12)
    frac = float(_records(s, 0.3)[:, 15].mean())
    assert 0.1 < frac < 0.95, f"both visiting modes should occur, box share {frac:.2f}"
    (a, aa), (b, ba) = _both(s)
    assert float(ba.mean()) > 0.2 and float((ba > 0.999).float().mean()) > 0.03  # opaque areas exist
    np.testing.assert_allclose(ba.numpy(), aa.numpy(), atol=1e-9, rtol=0)
    np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-8, rtol=1e-8)


def test_steep_conics_with_a_small_eps2d_match_the_pure_path():
    s = _scene(2, 2000, 0.0004, 0.25)  # sub-pixel splats: conic entries far above the walk's bound
    steep = (np.abs(_records(s, 0.01)[:, 2:5]) >= 30.0).any(1).mean()
    assert steep > 0.5
    (a, aa), (b, ba) = _both(s, eps2d=0.01)
    assert float(ba.max()) > 0.5
    np.testing.assert_allclose(ba.numpy(), aa.numpy(), atol=1e-9, rtol=0)
    np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-8, rtol=1e-8)


def test_float32_output_is_the_float64_render_rounded():
    s = _scene(3, 1500, 0.004, 0.2)
    with torch.no_grad():
        b64, a64, _ = rasterize(**s, width=W, height=H, backend="cpu-fast")
        s32 = {k: v.float() for k, v in s.items()}
        b32, a32, _ = rasterize(**s32, width=W, height=H, backend="cpu-fast")
    assert b32.dtype == torch.float32
    # inputs rounded to float32 move the image by float32 noise only
    assert float((b32.double() - b64).abs().max()) < 1e-4
    assert float((a32.double() - a64).abs().max()) < 1e-4


@pytest.mark.parametrize("degree", [1, 3])
def test_float32_sh_coefficients_are_read_as_given(degree):
    """SH coefficients are passed to the kernel in their own dtype (no per-frame float64 copy): float32
    coefficients render exactly what the same values given as float64 render."""
    s = _scene(4, 1200, 0.005, 0.15)
    g = torch.Generator().manual_seed(5)
    sh32 = (0.3 * torch.randn(1200, (degree + 1) ** 2, 3, generator=g)).float()
    with torch.no_grad():
        outs = [
            rasterize(**{**s, "colors": sh}, width=W, height=H, sh_degree=degree, backend="cpu-fast")
            for sh in (sh32, sh32.double())
        ]
    assert float(outs[0][0].std()) > 0.01  # a real image
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_scratch_reused_across_scenes_leaves_no_trace():
    """Scratch buffers kept from frame to frame (sized by the largest scene so far) must not leak a
    previous frame's records: a small scene drawn after a big one (two cameras, then one; SH, then plain
    colours with depth) equals the same scene drawn with fresh buffers, bit for bit."""
    from l2t_gs.render import cpu_fast

    big, small = _scene(6, 4000, 0.005, 0.15), _scene(7, 700, 0.006, 0.12)
    g = torch.Generator().manual_seed(8)
    sh = 0.3 * torch.randn(4000, 9, 3, generator=g, dtype=torch.float64)
    two = {**big, "colors": sh, "viewmats": big["viewmats"].repeat(2, 1, 1), "Ks": big["Ks"].repeat(2, 1, 1)}

    def draw_small():
        with torch.no_grad():
            return rasterize(**small, width=W, height=H, backend="cpu-fast", render_mode="RGB+D")[:2]

    cpu_fast.release_scratch()
    fresh = draw_small()
    with torch.no_grad():
        rasterize(**two, width=W, height=H, sh_degree=2, backend="cpu-fast")
    after = draw_small()
    assert float(fresh[1].mean()) > 0.1  # a real image
    assert torch.equal(fresh[0], after[0]) and torch.equal(fresh[1], after[1])
