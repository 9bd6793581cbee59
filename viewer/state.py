"""The viewer's logic without a GUI: playback timeline, splat conversion for viser, cameras, pose sliders.

Nothing here imports viser, so it is unit-tested on its own (``tests/test_viewer.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from l2t_gs.core.rotation import quat_to_matrix
from l2t_gs.errors import L2TError
from l2t_gs.pipeline import default_model_path as pipeline_default_model_path
from l2t_gs.render.camera import head_camera
from l2t_gs.render.sh import SH_C0
from l2t_gs.render.views import RENDER_CAMERAS, STILL_VIEWS

if TYPE_CHECKING:
    from l2t_gs.gaussians import GaussianAvatar
    from l2t_gs.rig import HeadModel

#: Camera presets offered by the viewer: the still ones of ``HEAD_CAMERA_PRESETS`` (all but the orbit).
CAMERA_PRESETS: tuple[str, ...] = STILL_VIEWS
#: Of those, the ones ``l2t-gs render`` accepts (``RENDER_CAMERAS``); "Render MP4" uses the front for any other.
PIPELINE_CAMERAS: tuple[str, ...] = tuple(p for p in CAMERA_PRESETS if p in RENDER_CAMERAS)
#: Vertical field of view of the viewer's camera, degrees.
VIEW_FOV_DEG = 30.0
#: Fraction of the view's height the head spans in a preset.
VIEW_FILL = 0.7
#: viser stores covariances as float16, whose normal range starts at 6e-5: splats of a head in metres
#: (variances around 1e-6) are sent scaled by this factor and the scene node is scaled back by its inverse.
SPLAT_SCALE = 32.0
#: Expression sliders shown at most (the leading components of the head model).
MAX_EXPR_SLIDERS = 12
#: Range of the jaw-opening slider (rotation about x, radians).
JAW_RANGE = (0.0, 0.5)


# --------------------------------------------------------------------------- splats
def covariances_from_quats_scales(quats: np.ndarray | torch.Tensor, scales: np.ndarray | torch.Tensor) -> np.ndarray:
    """World covariances ``R diag(s^2) R^T`` [N, 3, 3] (float32) of splats.

    ``quats`` [N, 4] are wxyz rotations (need not be normalised), ``scales`` [N, 3] activated scales.
    """
    q = torch.as_tensor(quats).detach().to("cpu", torch.float32)
    s = torch.as_tensor(scales).detach().to("cpu", torch.float32)
    if q.ndim != 2 or q.shape[1] != 4 or s.shape != (q.shape[0], 3):
        raise L2TError(f"expected quats [N, 4] and scales [N, 3], got {list(q.shape)} and {list(s.shape)}")
    m = quat_to_matrix(q) * s[:, None, :]  # R @ diag(s)
    return (m @ m.transpose(1, 2)).numpy()


def rgb_from_sh(sh: np.ndarray | torch.Tensor) -> np.ndarray:
    """View-independent colours [N, 3] in [0, 1] from SH coefficients [N, K, 3]: ``clamp(C0 * dc + 0.5, 0, 1)``."""
    c = np.asarray(sh.detach().cpu() if isinstance(sh, torch.Tensor) else sh, dtype=np.float32)
    if c.ndim != 3 or c.shape[2] != 3:
        raise L2TError(f"expected SH coefficients [N, K, 3], got {list(c.shape)}")
    return np.clip(c[:, 0, :] * SH_C0 + 0.5, 0.0, 1.0)


@dataclass
class SplatArrays:
    """One frame in viser's ``add_gaussian_splats`` layout (already multiplied by :data:`SPLAT_SCALE`)."""

    centers: np.ndarray  # [N, 3]
    covariances: np.ndarray  # [N, 3, 3]
    rgbs: np.ndarray  # [N, 3]
    opacities: np.ndarray  # [N, 1]


def splat_arrays(avatar: GaussianAvatar, vertices: torch.Tensor, rgbs: np.ndarray | None = None) -> SplatArrays:
    """Deform ``avatar`` onto mesh ``vertices`` [V, 3] and convert the splats for viser (scaled by SPLAT_SCALE)."""
    frames = avatar.deform(vertices.float()[None])
    means = frames.means[0].numpy() * SPLAT_SCALE
    cov = covariances_from_quats_scales(frames.quats[0], frames.scales[0] * SPLAT_SCALE)
    if rgbs is None:
        rgbs = rgb_from_sh(frames.sh)
    return SplatArrays(means, cov, rgbs, frames.opacities.numpy()[:, None])


def mesh_edges(faces: np.ndarray | torch.Tensor) -> np.ndarray:
    """Unique undirected edges [E, 2] (int64, smaller index first) of triangles [F, 3]."""
    f = np.asarray(faces.cpu() if isinstance(faces, torch.Tensor) else faces, dtype=np.int64)
    pairs = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    return np.unique(np.sort(pairs, axis=1), axis=0)


# --------------------------------------------------------------------------- timeline
@dataclass
class Timeline:
    """Playback position over ``num_frames`` frames at ``fps``; ``speed`` scales time, ``loop`` wraps at the end."""

    num_frames: int = 0
    fps: float = 30.0
    speed: float = 1.0
    loop: bool = True
    playing: bool = False
    position: float = 0.0  # in frames, fractional

    def load(self, num_frames: int, fps: float) -> None:
        """Replace the sequence: back to frame 0, paused."""
        if num_frames < 0 or not fps > 0:
            raise L2TError(f"timeline needs num_frames >= 0 and fps > 0, got {num_frames} and {fps}")
        self.num_frames, self.fps = int(num_frames), float(fps)
        self.position, self.playing = 0.0, False

    @property
    def frame(self) -> int:
        """The current frame index (0 when empty)."""
        if self.num_frames == 0:
            return 0
        return min(max(int(math.floor(self.position)), 0), self.num_frames - 1)

    def play(self) -> bool:
        """Start playing (from the start if paused on the last frame without looping); False if empty."""
        if self.num_frames == 0:
            return False
        if self.frame >= self.num_frames - 1 and not self.loop:
            self.position = 0.0
        self.playing = True
        return True

    def pause(self) -> None:
        self.playing = False

    def seek(self, frame: int) -> int:
        """Jump to ``frame`` (clamped); returns the frame now shown."""
        self.position = float(min(max(int(frame), 0), max(self.num_frames - 1, 0)))
        return self.frame

    def advance(self, seconds: float) -> int:
        """Move forward by ``seconds`` of wall time when playing; returns the frame now shown.

        At the end: wraps around with ``loop``, otherwise stops on the last frame.
        """
        if not self.playing or self.num_frames == 0:
            return self.frame
        self.position += max(seconds, 0.0) * self.fps * self.speed
        if self.position >= self.num_frames:
            if self.loop:
                self.position %= self.num_frames
            else:
                self.position = float(self.num_frames - 1)
                self.playing = False
        return self.frame


# --------------------------------------------------------------------------- cameras
@dataclass(frozen=True)
class CameraPose:
    """A viewer camera: ``position`` and ``look_at`` in world coordinates (metres), world ``up``, ``fov`` degrees."""

    position: tuple[float, float, float]
    look_at: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    fov_deg: float = VIEW_FOV_DEG


def camera_pose(preset: str, vertices: torch.Tensor | np.ndarray, aspect: float = 1.0) -> CameraPose:
    """The pose of ``head_camera(preset)`` framing ``vertices`` [V, 3] in a view of width/height ``aspect``."""
    if preset not in CAMERA_PRESETS:
        raise L2TError(f"unknown camera preset {preset!r}; choose from {', '.join(CAMERA_PRESETS)}")
    aspect = float(aspect) if aspect and math.isfinite(aspect) and aspect > 0 else 1.0
    height = 1000
    width = max(1, round(height * aspect))
    view, _ = head_camera(preset, vertices, width, height, fov_y_deg=VIEW_FOV_DEG, fill=VIEW_FILL, dtype=torch.float64)
    rot, trans = view[0, :3, :3], view[0, :3, 3]
    eye = -(rot.T @ trans)
    pts = torch.as_tensor(np.asarray(vertices), dtype=torch.float64).reshape(-1, 3)
    center = 0.5 * (pts.min(0).values + pts.max(0).values)
    as_tuple = lambda t: tuple(float(v) for v in t)  # noqa: E731
    return CameraPose(as_tuple(eye), as_tuple(center))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- pose sliders
@dataclass(frozen=True)
class ExprSlider:
    """One expression slider: component ``index``, display ``label`` and value range."""

    index: int
    label: str
    low: float
    high: float


def expression_sliders(head_model: HeadModel, limit: int = MAX_EXPR_SLIDERS) -> list[ExprSlider]:
    """Sliders for the leading expression components: named ones (the built-in head) span 0..1, unnamed ±2."""
    n_expr = int(head_model.exprdirs.shape[-1])
    names = list(getattr(head_model, "expr_names", None) or [])
    out = []
    for i in range(min(n_expr, limit)):
        if i < len(names) and names[i]:
            out.append(ExprSlider(i, str(names[i]), 0.0, 1.0))
        else:
            out.append(ExprSlider(i, f"expr {i}", -2.0, 2.0))
    return out


def slider_params(jaw: float, expr: dict[int, float], n_expr: int) -> dict[str, torch.Tensor]:
    """Rig parameters (unbatched) for the slider values: jaw opening about x and expression components."""
    e = torch.zeros(n_expr)
    for i, v in expr.items():
        if 0 <= i < n_expr:
            e[i] = float(v)
    return {"expr": e, "jaw_pose": torch.tensor([float(jaw), 0.0, 0.0])}


def pose_offset(avatar: GaussianAvatar, jaw: float, expr: dict[int, float]) -> torch.Tensor | None:
    """Vertex offset [V, 3] of the slider pose from the avatar's neutral frame (None when all sliders are 0)."""
    if jaw == 0 and not any(expr.values()):
        return None
    n_expr = int(avatar.head_model.exprdirs.shape[-1])
    params = slider_params(jaw, expr, n_expr)
    base = avatar.neutral_params
    params["expr"] = base["expr"].float() + params["expr"]
    params["jaw_pose"] = base["jaw_pose"].float() + params["jaw_pose"]
    return (avatar.vertices_from_params(params)[0] - avatar.neutral_vertices()).float()


# --------------------------------------------------------------------------- models
def default_model_path() -> Path | None:
    """The shipped default Audio2Mesh checkpoint, or None when this install ships none (the viewer then
    shows the avatar without speech)."""
    try:
        return pipeline_default_model_path()
    except L2TError:
        return None


@dataclass
class Motion:
    """A predicted sequence stored compactly as float16 vertex offsets [T, V, 3] from ``template`` [V, 3]."""

    offsets: torch.Tensor
    template: torch.Tensor
    fps: float

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    def vertices(self, frame: int) -> torch.Tensor:
        """Mesh vertices [V, 3] of ``frame`` (float32)."""
        return self.template + self.offsets[frame].float()
