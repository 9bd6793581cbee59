"""The pure torch backend against gsplat's CUDA rasterizer on a GPU (skipped without CUDA + gsplat kernels).

Scenes: the deterministic synthetic head (:func:`l2t_gs.render.synthetic.head_scene`, 50k splats with
SH degree 3, 512x512) and, when it is shipped, the ``default`` avatar in its neutral frame
(loaded with :func:`l2t_gs.gaussians.load_avatar`; that case skips while no such avatar exists).
Both backends get the same inputs and must agree at PSNR >= 40 dB in colour, alpha and expected depth;
their gradients must point the same way.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from l2t_gs.errors import L2TError
from l2t_gs.render import gsplat_status, head_camera, rasterize
from l2t_gs.render.synthetic import head_scene

pytestmark = pytest.mark.gpu

SIZE = 512


@pytest.fixture(scope="module", autouse=True)
def _needs_gsplat_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ok, why = gsplat_status()
    if not ok:
        pytest.skip(why)


def _synthetic() -> tuple[dict[str, Any], torch.Tensor]:
    s = head_scene(50_000, seed=0, sh_degree=3)
    kw = dict(means=s.means, quats=s.quats, scales=s.scales, opacities=s.opacities, colors=s.sh, sh_degree=3)
    return kw, s.means


def _default_avatar() -> tuple[dict[str, Any], torch.Tensor]:
    try:
        from l2t_gs.gaussians import load_avatar

        avatar = load_avatar("default")
    except (ImportError, L2TError) as exc:
        pytest.skip(f"no default avatar: {exc}")
    kw = avatar.splat_params()
    return kw, kw["means"]


def _cuda(kw: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().float().cuda() if torch.is_tensor(v) else v for k, v in kw.items()}


def _psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(peak**2 / mse)).item()


@pytest.mark.parametrize("scene", ["synthetic-head", "default-avatar"])
@pytest.mark.parametrize("preset", ["front", "three-quarter"])
def test_torch_and_gsplat_agree(scene, preset):
    kw, pts = _synthetic() if scene == "synthetic-head" else _default_avatar()
    kw = _cuda(kw)
    vm, K = head_camera(preset, pts.detach().cpu(), SIZE, SIZE, fill=0.6, device="cuda")
    bg = torch.tensor([[0.2, 0.4, 0.6]], device="cuda")
    out = {}
    with torch.no_grad():
        for backend in ("gsplat", "torch"):
            img, alpha, meta = rasterize(**kw, viewmats=vm, Ks=K, width=SIZE, height=SIZE, backgrounds=bg,
                                         render_mode="RGB+ED", backend=backend)  # fmt: skip
            out[backend] = (img, alpha, meta)
    (g_img, g_alpha, g_meta), (t_img, t_alpha, t_meta) = out["gsplat"], out["torch"]
    assert t_meta["backend"] == "torch-pure" and g_meta["backend"] == "gsplat"
    assert float(g_alpha.mean()) > 0.1, "the head should cover a good part of the image"
    assert _psnr(t_img[..., :3], g_img[..., :3]) >= 40.0
    assert _psnr(t_alpha, g_alpha) >= 40.0
    depth_peak = float(g_img[..., 3].max())
    mask = g_alpha[..., 0] > 0.5
    assert _psnr(t_img[..., 3][mask], g_img[..., 3][mask], peak=depth_peak) >= 40.0
    # same projection: radii and 2D means of the splats both backends keep
    assert abs(int((t_meta["radii"] > 0).all(-1).sum()) - int((g_meta["radii"] > 0).all(-1).sum())) <= 10


def test_antialiased_mode_agrees():
    kw, pts = _synthetic()
    kw = _cuda(kw)
    vm, K = head_camera("front", pts, 256, 256, fill=0.6, device="cuda")
    with torch.no_grad():
        g, ga, _ = rasterize(**kw, viewmats=vm, Ks=K, width=256, height=256, backend="gsplat",
                             rasterize_mode="antialiased")  # fmt: skip
        t, ta, _ = rasterize(**kw, viewmats=vm, Ks=K, width=256, height=256, backend="torch",
                             rasterize_mode="antialiased")  # fmt: skip
    assert _psnr(t, g) >= 40.0 and _psnr(ta, ga) >= 40.0


def test_gradients_agree():
    s = head_scene(5_000, seed=3, sh_degree=1)
    vm, K = head_camera("three-quarter", s.means, 128, 128, fill=0.6, device="cuda")
    target = torch.rand(1, 128, 128, 3, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    grads = {}
    for backend in ("gsplat", "torch"):
        leaves = {k: getattr(s, k).detach().float().cuda().requires_grad_(True)
                  for k in ("means", "quats", "scales", "opacities", "sh")}  # fmt: skip
        img, _, _ = rasterize(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                              leaves["sh"], vm, K, 128, 128, sh_degree=1, backend=backend)  # fmt: skip
        ((img - target) ** 2).mean().backward()
        grads[backend] = {k: v.grad.flatten() for k, v in leaves.items()}
    for k in grads["torch"]:
        a, b = grads["torch"][k], grads["gsplat"][k]
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        assert cos > 0.98, f"{k}: cosine similarity {cos:.4f}"
