"""Differentiable mouth crops (``training.data.mouth``): framing, fidelity to full renders, batching, gradients."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from l2t_gs.errors import L2TError
from l2t_gs.gaussians import load_avatar
from l2t_gs.render import rasterize
from l2t_gs.training.data.mouth import LUMA, MouthCropSpec, MouthRenderer, mouth_camera

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def avatar():
    return load_avatar("default")


@pytest.fixture(scope="module")
def talking(avatar) -> torch.Tensor:
    """Four meshes [4, V, 3]: neutral, jaw half open, jaw wide open with spread lips, puckered."""
    names = list(avatar.head_model.expr_names)
    expr = torch.zeros(4, avatar.head_model.n_expr)
    expr[2, names.index("spread")] = 1.0
    expr[3, names.index("pucker")] = 1.0
    jaw = torch.zeros(4, 3)
    jaw[:, 0] = torch.tensor([0.0, 0.12, 0.25, 0.05])
    return avatar.vertices_from_params({"expr": expr, "jaw_pose": jaw})


def _project(cam, points: torch.Tensor) -> torch.Tensor:
    p = points.double() @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
    return p[:, :2] / p[:, 2:] * cam.K[0, 0] + cam.K[:2, 2]


def test_the_window_frames_the_lips_of_the_template(avatar):
    spec = MouthCropSpec(height=32, width=48)
    tpl = avatar.neutral_vertices()
    lips = avatar.head_model.masks["lips"]
    cam = mouth_camera(tpl, lips, spec)
    uv = _project(cam, tpl[lips])
    lo, hi = uv.min(0).values, uv.max(0).values
    # lips span 1 / window_scale of the width, centred; the window sits `drop` of its height lower
    assert float(hi[0] - lo[0]) == pytest.approx(48 / spec.window_scale, rel=0.05)
    assert float(lo[0] + hi[0]) / 2 == pytest.approx(24, abs=0.5)
    assert float(lo[1] + hi[1]) / 2 == pytest.approx(16 - spec.drop * 32, abs=0.5)
    assert abs(float(cam.window_width) * 32 / 48 - float(cam.window_height)) < 1e-9
    # another subject's template moves the window with its lips
    moved = tpl + torch.tensor([0.01, -0.02, 0.0])
    cam2 = mouth_camera(moved, lips, spec)
    assert torch.allclose(cam2.center - cam.center, torch.tensor([0.01, -0.02, 0.0], dtype=torch.float64), atol=1e-6)


def test_crops_equal_a_full_render_of_the_avatar_and_show_the_mouth_move(avatar, talking):
    spec = MouthCropSpec(height=24, width=24)
    renderer = MouthRenderer(avatar, spec, backend="torch")
    crops = renderer.render(talking)
    assert crops.shape == (4, 1, 24, 24) and crops.dtype == torch.float32
    assert 0.0 <= float(crops.min()) and float(crops.max()) <= 1.0
    assert renderer.num_window_splats() < avatar.num_splats // 2  # the back of the head is not rendered
    cam = renderer.camera()
    splats = avatar.deform(talking)
    for i in range(4):
        rgb, _, _ = rasterize(
            **splats.frame(i), viewmats=cam.viewmat[None].float(), Ks=cam.K[None].float(), width=24, height=24,
            backgrounds=torch.zeros(1, 3), backend="torch",
        )  # fmt: skip
        full = (rgb[0] @ torch.tensor(LUMA)).clamp(0, 1)
        diff = (full - crops[i, 0]).abs()
        assert float(diff.max()) < 0.03 and float(diff.mean()) < 2e-3, i
    # the mouth opens: frames differ clearly from the neutral one, mostly in the middle rows
    change = (crops[1:] - crops[:1]).abs().mean(dim=(1, 2, 3))
    assert bool((change > 0.01).all())


def test_batching_chunking_and_backends_agree(avatar, talking):
    renderer = MouthRenderer(avatar, MouthCropSpec(height=16, width=16), backend="torch-pure", chunk_frames=3)
    a = renderer.render(talking)
    renderer.chunk_frames = 1
    torch.testing.assert_close(renderer.render(talking), a)
    renderer.backend = "torch"  # the compiled CPU path (no gradient)
    torch.testing.assert_close(renderer.render(talking), a, atol=2e-3, rtol=0)
    tpl = avatar.neutral_vertices()
    batched = renderer.render(torch.stack([talking[:2], talking[2:]]), torch.stack([tpl, tpl]))
    assert batched.shape == (2, 2, 1, 16, 16)
    torch.testing.assert_close(batched.reshape(4, 1, 16, 16), a, atol=2e-3, rtol=0)
    assert renderer.render(talking[:0]).shape == (0, 1, 16, 16)


def test_gradients_reach_the_vertices_and_match_finite_differences(avatar, talking):
    """Directional derivatives of a weighted crop sum (float64, 10 x 10 crop) vs central differences.

    Splatting is only piecewise smooth: two overlapping splats swap their compositing order when their
    depths cross, and with ~19k splats a step of 1e-6 m already crosses some pairs. A step of 1e-9 m
    crosses none (in float64 that still leaves ~1e-7 relative rounding error).
    """
    av64 = avatar.to(dtype=torch.float64)
    renderer = MouthRenderer(av64, MouthCropSpec(height=10, width=10), backend="torch-pure")
    verts = talking[1:2].double()
    weights = torch.randn(1, 1, 10, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(v: torch.Tensor) -> torch.Tensor:
        return (renderer.render(v) * weights).sum()

    leaf = verts.clone().requires_grad_(True)
    loss(leaf).backward()
    grad = leaf.grad[0]
    lips = avatar.head_model.masks["lips"]
    assert float(grad[lips].abs().sum()) > 0
    far = avatar.head_model.masks["scalp"]
    assert float(grad[far].abs().max()) == 0.0  # the back of the head is outside the window
    gen = torch.Generator().manual_seed(1)
    h = 1e-9
    for _ in range(2):
        direction = torch.zeros_like(verts)
        direction[0, lips] = torch.randn(len(lips), 3, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            numeric = float(loss(verts + h * direction) - loss(verts - h * direction)) / (2 * h)
        analytic = float((grad * direction[0]).sum())
        assert abs(numeric) > 1e-3
        assert analytic == pytest.approx(numeric, rel=1e-5)


def test_user_errors_are_one_line(avatar):
    model = avatar.head_model
    bare = dataclasses.replace(avatar, head_model=dataclasses.replace(model, masks={}))
    with pytest.raises(L2TError, match="no 'lips' region mask"):
        MouthRenderer(bare)
    renderer = MouthRenderer(avatar, MouthCropSpec(height=8, width=8))
    with pytest.raises(L2TError, match="topology mismatch"):
        renderer.render(torch.zeros(2, 10, 3))
    with pytest.raises(L2TError, match=r"\[T, V, 3\]"):
        renderer.render(torch.zeros(10, 3))
    with pytest.raises(L2TError, match="integer in 4..1024"):
        MouthCropSpec(height=2)
    with pytest.raises(L2TError, match="unknown key"):
        MouthCropSpec.from_dict({"hieght": 4})
    assert MouthCropSpec.from_dict(MouthCropSpec(height=20).to_dict()) == MouthCropSpec(height=20)
