"""Camera helpers: OpenCV conventions, intrinsics, orbits and head framing presets."""

from __future__ import annotations

import math

import pytest
import torch

from l2t_gs.errors import L2TError
from l2t_gs.render import HEAD_CAMERA_PRESETS, head_camera, intrinsics, look_at, orbit_viewmats


def _project(view: torch.Tensor, k: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pc = pts @ view[:3, :3].T + view[:3, 3]
    uv = pc @ k.T
    return uv[:, :2] / uv[:, 2:], pc[:, 2]


def test_look_at_opencv_convention():
    view = look_at((0.0, 0.0, 2.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0), dtype=torch.float64)
    rot = view[:3, :3]
    torch.testing.assert_close(rot @ rot.T, torch.eye(3, dtype=torch.float64))
    assert torch.linalg.det(rot) == pytest.approx(1.0)
    k = intrinsics(60.0, 100, 80, dtype=torch.float64)
    pts = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]], dtype=torch.float64)
    uv, z = _project(view, k, pts)
    assert z[0] == pytest.approx(2.0)  # the target is 2 m ahead (+z forward)
    assert uv[0].tolist() == pytest.approx([50.0, 40.0])  # ... at the image centre
    assert uv[1, 0] > 50  # world +x appears to the right (front camera on +z)
    assert uv[2, 1] < 40  # world +y appears upward (image +y is down)
    torch.testing.assert_close(torch.linalg.inv(view)[:3, 3], torch.tensor([0.0, 0, 2], dtype=torch.float64))


def test_look_at_batched_and_errors():
    eyes = torch.tensor([[0.0, 0, 1], [1.0, 0, 0], [0, 0.5, -1]])
    views = look_at(eyes, (0.0, 0.0, 0.0))
    assert views.shape == (3, 4, 4) and views.dtype == torch.float32
    for v, e in zip(views, eyes, strict=True):
        torch.testing.assert_close(torch.linalg.inv(v)[:3, 3], e, atol=1e-6, rtol=0)
    with pytest.raises(L2TError, match="coincide"):
        look_at((1.0, 1, 1), (1.0, 1, 1))
    with pytest.raises(L2TError, match="parallel"):
        look_at((0.0, 2, 0), (0.0, 0, 0))


def test_intrinsics():
    k = intrinsics(90.0, 200, 100)
    assert k[1, 1].item() == pytest.approx(50.0) and k[0, 0] == k[1, 1]
    assert k[0, 2].item() == 100.0 and k[1, 2].item() == 50.0 and k[2, 2].item() == 1.0
    k2 = intrinsics(None, 200, 100, focal=321.0, cx=90.0, cy=40.0)
    assert k2[0, 0].item() == 321.0 and k2[0, 2].item() == 90.0 and k2[1, 2].item() == 40.0
    with pytest.raises(L2TError, match="exactly one"):
        intrinsics(40.0, 10, 10, focal=5.0)
    with pytest.raises(L2TError, match="fov_y_deg"):
        intrinsics(180.0, 10, 10)


def test_orbit_viewmats():
    views = orbit_viewmats(8, 2.0, elevation=10.0, target=(0.0, 0.1, 0.0))
    assert views.shape == (8, 4, 4)
    centres = torch.linalg.inv(views.double())[:, :3, 3]
    dist = (centres - torch.tensor([0.0, 0.1, 0.0], dtype=torch.float64)).norm(dim=-1)
    torch.testing.assert_close(dist, torch.full((8,), 2.0, dtype=torch.float64), atol=1e-5, rtol=0)
    assert centres[0, 2] > 1.9 and abs(centres[0, 0]) < 1e-5  # first camera in front (+z)
    assert centres[2, 0] > 1.9  # a quarter turn later it is on +x
    expected_y = 0.1 + 2.0 * math.sin(math.radians(10.0))
    torch.testing.assert_close(centres[:, 1], torch.full((8,), expected_y, dtype=torch.float64), atol=1e-5, rtol=0)


def _head_points() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(3000, 3, generator=g, dtype=torch.float64)
    return d / d.norm(dim=-1, keepdim=True) * torch.tensor([0.08, 0.11, 0.1], dtype=torch.float64) + torch.tensor(
        [0.0, 0.02, 0.01], dtype=torch.float64
    )


@pytest.mark.parametrize("preset", sorted(HEAD_CAMERA_PRESETS))
def test_head_camera_frames_the_points(preset):
    pts = _head_points()
    w, h, fill = 160, 120, 0.8
    for frame in (0.0, 0.3, 0.75):
        views, ks = head_camera(preset, pts, w, h, frame=frame, fill=fill, dtype=torch.float64)
        assert views.shape == (1, 4, 4) and ks.shape == (1, 3, 3)
        uv, z = _project(views[0], ks[0], pts)
        assert (z > 0).all()
        assert (uv[:, 0] >= 0).all() and (uv[:, 0] <= w).all() and (uv[:, 1] >= 0).all() and (uv[:, 1] <= h).all()
        span = max((uv[:, 0].max() - uv[:, 0].min()) / w, (uv[:, 1].max() - uv[:, 1].min()) / h)
        assert 0.6 * fill < span <= fill + 1e-6  # tight framing (the limiting extent touches the fill box)
        # world +y (top of the head) stays up in the image
        top, bottom = pts[:, 1].argmax(), pts[:, 1].argmin()
        assert uv[top, 1] < uv[bottom, 1]


def test_head_camera_presets_look_from_the_right_side():
    pts = _head_points()
    mid = 0.5 * (pts.min(0).values + pts.max(0).values)  # the cameras aim at the bbox centre

    def offset(preset: str, frame: float = 0.0) -> torch.Tensor:
        view = head_camera(preset, pts, 64, 64, frame=frame, dtype=torch.float64)[0][0]
        return torch.linalg.inv(view)[:3, 3] - mid

    front, side, three = offset("front"), offset("side"), offset("three-quarter")
    assert front[2] > 0.3 and abs(front[0]) < 1e-9 and abs(front[1]) < 1e-9
    assert side[0] > 0.3 and abs(side[2]) < 1e-9
    assert three[0] > 0 and three[2] > three[0] and three[1] > 0
    # the orbit keeps its distance (no zoom) and returns to the front at frame 1
    d = [float(offset("orbit", f).norm()) for f in (0.0, 0.4, 0.9)]
    assert max(d) - min(d) < 1e-9
    torch.testing.assert_close(offset("orbit", 1.0), offset("orbit", 0.0))


def test_head_camera_accepts_a_bbox_and_rejects_bad_input():
    bbox = torch.tensor([[-0.08, -0.1, -0.1], [0.08, 0.12, 0.11]])
    views, ks = head_camera("front", bbox, 128, 128)
    assert views.dtype == torch.float32
    with pytest.raises(L2TError, match="unknown preset"):
        head_camera("top", bbox, 64, 64)
    with pytest.raises(L2TError, match="points"):
        head_camera("front", torch.zeros(5), 64, 64)
    with pytest.raises(L2TError, match="frame"):
        head_camera("orbit", bbox, 64, 64, frame=1.5)
