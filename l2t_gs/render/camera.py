"""Camera helpers in the OpenCV convention used by :func:`l2t_gs.render.rasterize`.

A view matrix maps world to camera coordinates with +x right, +y down and +z forward (the viewing
direction). World coordinates follow FLAME: metres, +y up, the face looking toward +z; so the
"front" camera sits on +z, looks toward -z, and world +y appears upward in the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.render.views import HEAD_CAMERA_PRESETS

ArrayLike = Tensor | np.ndarray | Sequence[float] | Sequence[Sequence[float]]


def _as_tensor(x: Any, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    if isinstance(x, Tensor):
        return x.to(dtype=dtype, device=device if device is not None else x.device)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype, device=device)


def look_at(
    eye: ArrayLike,
    target: ArrayLike = (0.0, 0.0, 0.0),
    up: ArrayLike = (0.0, 1.0, 0.0),
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """World-to-camera matrix [..., 4, 4] of a camera at ``eye`` [..., 3] looking at ``target``.

    ``up`` [3] is the world direction that appears upward in the image (image -y).
    """
    eye = _as_tensor(eye, torch.float64, device)
    target = _as_tensor(target, torch.float64, eye.device)
    up = _as_tensor(up, torch.float64, eye.device)
    fwd = target - eye
    if bool((fwd.norm(dim=-1) < 1e-12).any()):
        raise L2TError("look_at: eye and target coincide")
    fwd = fwd / fwd.norm(dim=-1, keepdim=True)
    right = torch.linalg.cross(fwd, up.expand_as(fwd))
    if bool((right.norm(dim=-1) < 1e-9).any()):
        raise L2TError("look_at: the view direction is parallel to up")
    right = right / right.norm(dim=-1, keepdim=True)
    down = torch.linalg.cross(fwd, right)
    rot = torch.stack([right, down, fwd], dim=-2)  # rows: camera axes in world coordinates
    view = torch.zeros(eye.shape[:-1] + (4, 4), dtype=torch.float64, device=eye.device)
    view[..., :3, :3] = rot
    view[..., :3, 3] = -(rot @ eye[..., None])[..., 0]
    view[..., 3, 3] = 1.0
    return view.to(dtype)


def intrinsics(
    fov_y_deg: float | None,
    width: int,
    height: int,
    *,
    focal: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Pinhole intrinsics K [3, 3] from a vertical field of view (degrees) or a focal length (pixels).

    Square pixels; the principal point defaults to the image centre (width / 2, height / 2).
    """
    if (fov_y_deg is None) == (focal is None):
        raise L2TError("intrinsics: give exactly one of fov_y_deg and focal")
    if fov_y_deg is not None:
        if not 0.0 < fov_y_deg < 180.0:
            raise L2TError(f"intrinsics: fov_y_deg must be in (0, 180), got {fov_y_deg}")
        focal = 0.5 * height / math.tan(math.radians(fov_y_deg) / 2.0)
    assert focal is not None
    if focal <= 0:
        raise L2TError(f"intrinsics: focal must be positive, got {focal}")
    k = torch.tensor(
        [
            [focal, 0.0, width / 2.0 if cx is None else cx],
            [0.0, focal, height / 2.0 if cy is None else cy],
            [0.0, 0.0, 1.0],
        ],
        dtype=torch.float64,
        device=device,
    )
    return k.to(dtype)


def _direction(azimuth_deg: Tensor, elevation_deg: Tensor) -> Tensor:
    """Unit vectors [..., 3] from the target toward the camera (azimuth 0 = +z, 90 = +x)."""
    az, el = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    return torch.stack([torch.sin(az) * torch.cos(el), torch.sin(el), torch.cos(az) * torch.cos(el)], dim=-1)


def orbit_viewmats(
    n: int,
    radius: float,
    elevation: float = 0.0,
    target: ArrayLike = (0.0, 0.0, 0.0),
    *,
    start_azimuth: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` cameras [n, 4, 4] evenly spaced on a circle around ``target`` (world +y up).

    Elevation is in degrees; the first camera sits at ``start_azimuth`` (0 = in front, on +z) and
    the orbit turns toward +x.
    """
    if n <= 0 or radius <= 0:
        raise L2TError(f"orbit_viewmats: need n > 0 and radius > 0, got n={n}, radius={radius}")
    target_t = _as_tensor(target, torch.float64, device)
    az = start_azimuth + 360.0 * torch.arange(n, dtype=torch.float64, device=target_t.device) / n
    eye = target_t + radius * _direction(az, torch.full_like(az, float(elevation)))
    return look_at(eye, target_t, dtype=dtype)


def _points(vertices_or_bbox: ArrayLike) -> Tensor:
    """[P, 3] float64 points from vertices [..., V, 3] or a bbox [2, 3] (min, max corners)."""
    pts = _as_tensor(vertices_or_bbox, torch.float64, "cpu").detach()
    if pts.dim() < 2 or pts.shape[-1] != 3 or pts.numel() == 0:
        raise L2TError(f"head_camera: expected points [V, 3] or a bbox [2, 3], got shape {list(pts.shape)}")
    pts = pts.reshape(-1, 3)
    if not bool(torch.isfinite(pts).all()):
        raise L2TError("head_camera: the points contain NaN or inf")
    if pts.shape[0] == 2:  # a bbox: use its 8 corners
        lo, hi = pts.min(0).values, pts.max(0).values
        corners = [[(lo, hi)[(i >> k) & 1][k] for k in range(3)] for i in range(8)]
        pts = torch.tensor(corners, dtype=torch.float64)
    return pts


def _framing_distance(pts: Tensor, center: Tensor, direction: Tensor, tan_x: float, tan_y: float) -> float:
    """Smallest distance from ``center`` along ``direction`` that keeps every point within the tangents."""
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    right = torch.linalg.cross(-direction, up)
    right = right / right.norm()
    true_up = torch.linalg.cross(right, -direction)
    rel = pts - center
    along = rel @ direction  # toward the camera
    need = torch.maximum((rel @ right).abs() / tan_x, (rel @ true_up).abs() / tan_y) + along
    return float(need.max())


def head_camera(
    preset: str,
    vertices_or_bbox: ArrayLike,
    width: int,
    height: int,
    frame: float = 0.0,
    *,
    fov_y_deg: float = 20.0,
    fill: float = 0.8,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A camera that frames a head: returns (viewmats [1, 4, 4], Ks [1, 3, 3]).

    Args:
        preset: one of :data:`HEAD_CAMERA_PRESETS` ("front", "three-quarter", "side", "orbit").
        vertices_or_bbox: head points [..., V, 3] (e.g. FLAME vertices, metres) or a bbox [2, 3].
        width, height: image size in pixels.
        frame: position on the orbit in [0, 1] (0 and 1 = front) for "orbit"; ignored otherwise.
        fov_y_deg: vertical field of view.
        fill: fraction of the image (in its tighter dimension) the head spans.
    """
    if preset not in HEAD_CAMERA_PRESETS:
        raise L2TError(f"head_camera: unknown preset {preset!r}; choose from {sorted(HEAD_CAMERA_PRESETS)}")
    if not 0.0 < fill <= 1.0:
        raise L2TError(f"head_camera: fill must be in (0, 1], got {fill}")
    if not 0.0 <= frame <= 1.0:
        raise L2TError(f"head_camera: frame must be in [0, 1], got {frame}")
    pts = _points(vertices_or_bbox)
    center = 0.5 * (pts.min(0).values + pts.max(0).values)
    k = intrinsics(fov_y_deg, width, height, dtype=torch.float64)
    tan_y = fill * 0.5 * height / float(k[1, 1])
    tan_x = fill * 0.5 * width / float(k[0, 0])

    azimuth, elevation = HEAD_CAMERA_PRESETS[preset]
    el = torch.tensor(elevation, dtype=torch.float64)
    if preset == "orbit":
        # One distance for the whole orbit, so that an orbit video does not zoom.
        ring = torch.arange(24, dtype=torch.float64) * 15.0
        dist = max(_framing_distance(pts, center, _direction(a, el), tan_x, tan_y) for a in ring)
        azimuth = 360.0 * frame
    else:
        dist = _framing_distance(pts, center, _direction(torch.tensor(azimuth, dtype=torch.float64), el), tan_x, tan_y)
    direction = _direction(torch.tensor(azimuth, dtype=torch.float64), el)
    eye = center + dist * direction
    view = look_at(eye, center, dtype=dtype, device=device)
    return view[None], k.to(dtype=dtype, device=device)[None]


def camera_from_json(path: str, width: int | None = None, height: int | None = None) -> tuple[Tensor, Tensor, int, int]:
    """A camera from a JSON file with ``width``, ``height``, ``K`` (3x3) and ``viewmat`` (4x4 world-to-camera,
    OpenCV), as ``l2t-gs avatar from-photo`` writes in ``fit.json``: (viewmats [1, 4, 4], Ks [1, 3, 3], W, H).

    With ``width`` and ``height`` the view is scaled to fit that frame, centred (letterboxed).
    """
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise L2TError(f"--camera-json not found: {path}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        w0, h0 = int(data["width"]), int(data["height"])
        k = np.asarray(data["K"], dtype=np.float64)
        view = np.asarray(data["viewmat"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise L2TError(
            f"--camera-json {path}: expected width, height, K and viewmat ({type(exc).__name__}: {exc})"
        ) from None
    if k.shape != (3, 3) or view.shape != (4, 4) or not (np.isfinite(k).all() and np.isfinite(view).all()):
        raise L2TError(f"--camera-json {path}: K must be 3x3 and viewmat 4x4, finite")
    if w0 <= 0 or h0 <= 0 or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise L2TError(f"--camera-json {path}: width, height and the focal lengths must be positive")
    if width is not None and height is not None:
        s = min(width / w0, height / h0)
        k = k.copy()
        k[:2] *= s
        k[0, 2] += (width - s * w0) / 2
        k[1, 2] += (height - s * h0) / 2
        w0, h0 = width, height
    return torch.as_tensor(view, dtype=torch.float32)[None], torch.as_tensor(k, dtype=torch.float32)[None], w0, h0
