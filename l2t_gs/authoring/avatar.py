"""Procedural default avatar: Gaussian splats painted onto the built-in head's triangles.

:func:`build_default_avatar` places splats on every triangle of a FLAME-format head (the built-in one
by default) and gives them an appearance from smooth analytic colour fields, so that the project has
a complete avatar without any capture or training. The result is an ordinary
:class:`~l2t_gs.gaussians.avatar.GaussianAvatar`; ``l2t-gs avatar build`` writes it as a folder and
the repository ships one as ``avatars/default``.

Placement (vectorised over faces and splats):

* **Counts.** Each triangle gets ``max(1, w_f * A_f * density)`` splats (area ``A_f``, a region
  weight ``w_f`` that spends more splats on the visible eyes, lips, mouth and teeth and fewer on
  the hidden backs of the eyeballs), rounded by largest remainders to hit the requested total.
* **Positions.** A centroidal Voronoi pattern of that many points (one at the centroid), turned by
  a random symmetry of the triangle and slightly jittered, so that a triangle's splats spread
  evenly and each owns a compact ``1/n`` share of it.
* **Shapes.** Flat Gaussians in the triangle's plane (a small scale along the normal) whose in-plane
  covariance is the covariance of that ``1/n`` share (the triangle's own covariance divided by
  ``n``) times :data:`COVER`, so the surface is covered without holes; splats of triangles that
  speech poses stretch unevenly (mouth corners, the mouth bag) are widened along the stretch.

Appearance (display RGB, baked into the SH DC term; higher SH bands hold a faint facing-ratio
term): warm skin with redder cheeks, nose and ears, a hair region above a soft hairline, eyebrows,
lips from an analytic lip outline, eyes with sclera, a streaked iris, a dark pupil and a catchlight
(from the angle to the gaze axis around each eyeball centre), eyelid rims with a dark lash line, a
mouth cavity that darkens with depth (tongue on its floor) and off-white teeth. A soft key light is
baked in, as in captured avatars, plus slight deterministic noise. Materials come from the head's
region masks; facial features are placed relative to landmarks taken from the head (eye joints,
the lips, the nose tip, the teeth), with proportions tuned on the built-in head.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from l2t_gs.errors import L2TError
from l2t_gs.gaussians.avatar import GaussianAvatar, default_neutral_params
from l2t_gs.gaussians.binding import triangle_frames
from l2t_gs.render import head_camera, rasterize, to_uint8
from l2t_gs.render.sh import SH_C1, rgb_to_sh
from l2t_gs.rig import FlameRig, load_head_model

if TYPE_CHECKING:
    from l2t_gs.rig import HeadModel

__all__ = ["DEFAULT_NUM_SPLATS", "build_default_avatar", "render_preview"]

#: Splats of the shipped default avatar.
DEFAULT_NUM_SPLATS = 40_000
#: In-plane Gaussian std over the std of the area each splat covers (> 1: neighbours overlap).
COVER = 2.3
#: Normal-axis std relative to the in-plane minor std.
FLATNESS = 0.12
OPACITY = 0.99
#: Strength of the view-dependent facing-ratio term (SH degree >= 1).
FACING = 0.10
#: Light direction (toward the light) of the baked shading: above, in front, slightly to the left.
KEY_LIGHT = (0.35, 0.55, 0.75)
_PLASTIC = 1.324717957244746  # R2 sequence: x_i = frac(s + i * (1/g, 1/g^2))
_JAW_OPEN = 0.35  # jaw pose (radians) the splat sizes anticipate

SKIN = np.array([0.87, 0.67, 0.56])
SKIN_RED = np.array([0.86, 0.50, 0.46])
HAIR = np.array([0.20, 0.13, 0.09])
BROW = np.array([0.24, 0.16, 0.11])
LIPS = np.array([0.74, 0.37, 0.38])
SCLERA = np.array([0.93, 0.91, 0.87])
IRIS = np.array([0.33, 0.42, 0.30])
IRIS_OUTER = np.array([0.20, 0.26, 0.20])
PUPIL = np.array([0.03, 0.03, 0.035])
RIM_UPPER = np.array([0.16, 0.11, 0.10])
RIM_LOWER = np.array([0.66, 0.44, 0.42])
MOUTH_LIP = np.array([0.62, 0.29, 0.31])
MOUTH_DEEP = np.array([0.10, 0.025, 0.035])
TONGUE = np.array([0.55, 0.24, 0.26])
TEETH = np.array([0.93, 0.91, 0.84])
GUMS = np.array([0.74, 0.40, 0.42])

# materials (priority order: a vertex takes the first region that lists it)
_MATERIALS = ("teeth", "eye", "rim", "mouth", "ear", "skin")
_MATERIAL_MASKS = {
    "teeth": ("teeth_upper", "teeth_lower"),
    "eye": ("eyes", "eye_left", "eye_right"),
    "rim": ("eyelid_rims",),
    "mouth": ("mouth_interior",),
    "ear": ("ears",),
}


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-row blend of colours ``a`` and ``b`` ([N,3] or [3]) by ``t`` [N]."""
    return a + (b - a) * t[:, None]


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _wave_noise(
    rng: np.random.Generator, p: np.ndarray, wavelength: float, n: int = 12, stretch: Sequence[float] = (1, 1, 1)
) -> np.ndarray:
    """Smooth deterministic noise in about [-1, 1] at points ``p`` [N,3] (sum of random plane waves).

    ``stretch`` scales the wave vectors per axis (e.g. small y for vertical streaks).
    """
    k = _normalize(rng.normal(size=(n, 3)) * np.asarray(stretch, dtype=np.float64))
    k *= (2.0 * math.pi / wavelength) * rng.uniform(0.7, 1.4, size=(n, 1))
    phase = rng.uniform(0.0, 2.0 * math.pi, size=n)
    return np.sin(p @ k.T + phase).sum(-1) / math.sqrt(n / 2.0)


@dataclass(frozen=True)
class _Anchors:
    """Landmarks of the rest-pose head that the painted features are placed from (metres)."""

    eye_centers: np.ndarray  # [2,3] left (+x) then right, from the eye joints
    eye_radius: float
    mouth: np.ndarray  # [3] centre of the lips region
    nose_tip: np.ndarray  # [3] the most forward nose vertex
    mouth_front: float  # z of the front of the mouth cavity
    gum_lines: tuple[float, float]  # heights of the top of the upper and the bottom of the lower teeth

    @property
    def eye_y(self) -> float:
        return float(self.eye_centers[:, 1].mean())


@dataclass
class _Surface:
    """Rest-pose surface samples: positions, normals, material weights and per-vertex fields."""

    pos: np.ndarray  # [N,3]
    normal: np.ndarray  # [N,3] unit (interpolated vertex normals)
    material: np.ndarray  # [N,M] weights of _MATERIALS (sum 1)
    upper_face: np.ndarray  # [N] interpolated upper_face-mask weight
    jaw: np.ndarray  # [N] jaw skinning weight
    at: _Anchors

    def subset(self, sel: np.ndarray) -> _Surface:
        return _Surface(
            self.pos[sel], self.normal[sel], self.material[sel], self.upper_face[sel], self.jaw[sel], self.at
        )


# ---------------------------------------------------------------------------------------------
# per-vertex fields of the head


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    fn = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    vn = np.zeros_like(verts)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return _normalize(vn)


def _mask(model: HeadModel, names: Sequence[str], n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    for name in names:
        idx = model.masks.get(name)
        if idx is not None:
            out[np.asarray(idx.cpu(), dtype=np.int64)] = True
    return out


def _vertex_materials(model: HeadModel) -> np.ndarray:
    """One-hot material per vertex [V,M] by region priority (unlisted vertices are skin)."""
    v = model.n_verts
    label = np.full(v, len(_MATERIALS) - 1)
    taken = np.zeros(v, dtype=bool)
    for m, name in enumerate(_MATERIALS[:-1]):
        sel = _mask(model, _MATERIAL_MASKS[name], v) & ~taken
        label[sel] = m
        taken |= sel
    return np.eye(len(_MATERIALS))[label]


def _anchors(model: HeadModel, verts: np.ndarray) -> _Anchors:
    """Landmarks of the rest pose (fallbacks are the built-in head's values)."""
    v = len(verts)
    centers = model.J_regressor.detach().cpu().double().numpy()[3:5] @ verts
    radii = [
        np.linalg.norm(verts[m] - c, axis=-1).mean()
        for m, c in zip((_mask(model, ("eye_left",), v), _mask(model, ("eye_right",), v)), centers, strict=True)
        if m.any()
    ]
    lips, nose = _mask(model, ("lips",), v), _mask(model, ("nose",), v)
    interior = _mask(model, ("mouth_interior",), v)
    upper, lower = _mask(model, ("teeth_upper",), v), _mask(model, ("teeth_lower",), v)
    return _Anchors(
        eye_centers=centers,
        eye_radius=float(np.mean(radii)) if radii else 0.0122,
        mouth=verts[lips].mean(0) if lips.any() else np.array([0.0, -0.0568, 0.0918]),
        nose_tip=verts[nose][np.argmax(verts[nose, 2])] if nose.any() else np.array([0.0, -0.0183, 0.116]),
        mouth_front=float(verts[interior, 2].max()) if interior.any() else 0.0918,
        gum_lines=(
            float(verts[upper, 1].max()) if upper.any() else -0.045,
            float(verts[lower, 1].min()) if lower.any() else -0.066,
        ),
    )


def _density_weights(model: HeadModel, verts: np.ndarray, material: np.ndarray, at: _Anchors) -> np.ndarray:
    """Relative splat density per vertex: more on the visible detail, less on hidden parts."""
    v = len(verts)
    x, y, z = verts.T
    rel = verts - at.mouth
    w = np.ones(v)
    w[(z > 0.02) & (y > at.mouth[1] - 0.065)] = 1.4  # the face
    w[_mask(model, ("eye_region",), v)] = 2.2
    around_lips = (np.abs(rel[:, 0]) < 0.034) & (np.abs(rel[:, 1] - 0.002) < 0.022) & (rel[:, 2] > -0.03)
    w[_mask(model, ("lips",), v) | around_lips] = 3.0
    w[(z < 0.0) & (y < at.mouth[1] - 0.005)] = 0.7  # back of the neck
    mat = material.argmax(1)
    w[mat == _MATERIALS.index("mouth")] = 4.0
    w[mat == _MATERIALS.index("teeth")] = 3.0
    w[mat == _MATERIALS.index("rim")] = 2.5
    eye = mat == _MATERIALS.index("eye")
    if eye.any():
        centers = at.eye_centers
        c = centers[np.argmin(np.linalg.norm(verts[eye, None] - centers[None], axis=-1), axis=1)]
        cos_gaze = _normalize(verts[eye] - c)[:, 2]
        w[eye] = np.where(cos_gaze > math.cos(1.15), 9.0, np.where(cos_gaze > 0.0, 1.0, 0.05))
    return w


# ---------------------------------------------------------------------------------------------
# placement


def _face_counts(
    area: np.ndarray, weight: np.ndarray, total: int | None, per_cm2: float | None, rng: np.random.Generator
) -> np.ndarray:
    """Splats per face: area x weight proportional, >= 1, summing to ``total`` (when given)."""
    wa = area * weight * 1e4  # weighted cm^2
    f = len(area)
    if total is None:
        expect = wa * float(per_cm2)
        return np.maximum(1, np.floor(expect + rng.uniform(size=f))).astype(np.int64)
    if total < f:
        raise L2TError(f"the number of splats must be at least the number of triangles ({f}), got {total}")
    lo, hi = 0.0, total / max(wa.sum(), 1e-12) * 2.0 + 1.0  # density so that sum(max(1, wa * d)) = total
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(1.0, wa * mid).sum() < total else (lo, mid)
    expect = np.maximum(1.0, wa * lo)
    counts = np.floor(expect).astype(np.int64)
    left = total - int(counts.sum())
    if left > 0:  # largest remainders, ties broken by the seed
        order = np.lexsort((rng.uniform(size=f), -(expect - counts)))
        counts[order[:left]] += 1
    return counts


@functools.lru_cache(maxsize=256)
def _triangle_pattern(n: int) -> np.ndarray:
    """``n`` evenly spread points in a triangle as barycentric coordinates [n,3].

    A centroidal Voronoi pattern (Lloyd iterations on a dense sample of an equilateral triangle,
    started from an R2 sequence), so every point owns a compact cell of about ``1/n`` of the area.
    """
    if n == 1:
        return np.full((1, 3), 1.0 / 3.0)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3.0) / 2.0]])

    def to_xy(uv: np.ndarray) -> np.ndarray:
        fold = uv.sum(1) > 1.0
        uv = np.where(fold[:, None], 1.0 - uv, uv)
        return corners[0] + uv[:, :1] * (corners[1] - corners[0]) + uv[:, 1:] * (corners[2] - corners[0])

    step = np.array([1.0 / _PLASTIC, 1.0 / _PLASTIC**2])
    dense = to_xy(np.mod(0.5 + np.arange(max(2000, 60 * n))[:, None] * step, 1.0))
    pts = to_xy(np.mod(0.5 + np.arange(n)[:, None] * step, 1.0))
    for _ in range(40):
        owner = np.argmin(((dense[:, None] - pts[None]) ** 2).sum(-1), axis=1)
        sums = np.zeros_like(pts)
        np.add.at(sums, owner, dense)
        cnt = np.bincount(owner, minlength=n)[:, None]
        pts = np.where(cnt > 0, sums / np.maximum(cnt, 1), pts)
    # barycentric coordinates of the pattern (solve against the corners)
    m = np.stack([corners[1] - corners[0], corners[2] - corners[0]], 1)
    uv = np.linalg.solve(m, (pts - corners[0]).T).T
    return np.stack([1.0 - uv.sum(1), uv[:, 0], uv[:, 1]], -1)


def _sample_barycentric(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Face index [N] and barycentric coordinates [N,3] of the splats of every face.

    Each face takes the spread-out pattern of its count, turned by a random symmetry of the
    triangle (a corner rotation and a mirror) and slightly jittered.
    """
    face = np.repeat(np.arange(len(counts)), counts)
    start = np.repeat(np.cumsum(counts) - counts, counts)
    i = np.arange(len(face)) - start  # index of the splat within its face
    bary = np.zeros((len(face), 3))
    for n in np.unique(counts):  # one pattern per distinct count
        sel = counts[face] == n
        bary[sel] = _triangle_pattern(int(n))[i[sel]]
    perms = np.array([[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 2, 1], [2, 1, 0], [1, 0, 2]])
    perm = perms[rng.integers(0, 6, size=len(counts))][face]
    bary = np.take_along_axis(bary, perm, axis=1)
    jitter = rng.normal(scale=0.06, size=bary.shape) / np.sqrt(counts[face])[:, None]
    bary = np.clip(bary + jitter - jitter.mean(1, keepdims=True), 0.0, None)
    bary[counts[face] == 1] = 1.0 / 3.0  # a lone splat sits at the centroid
    return face, bary / bary.sum(1, keepdims=True)


def _local_shapes(local_corners: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per face: in-plane major/minor std (local units) and angle of the major axis in the local x-z plane.

    ``local_corners`` [F,3,3] are the corners in the triangle's frame (normal along local y).
    """
    d = local_corners[:, :, [0, 2]] - local_corners[:, :, [0, 2]].mean(1, keepdims=True)  # [F,3,2]
    cov = np.einsum("fki,fkj->fij", d, d) / 12.0  # covariance of the uniform triangle
    evals, evecs = np.linalg.eigh(cov / counts[:, None, None])  # a 1/n share of the triangle, same shape
    minor, major = np.sqrt(np.maximum(evals[:, 0], 1e-16)), np.sqrt(np.maximum(evals[:, 1], 1e-16))
    angle = np.arctan2(evecs[:, 1, 1], evecs[:, 0, 1])  # major eigenvector (local x, local z)
    return major, minor, angle


def _pose_growth(
    rig: torch.nn.Module,
    faces: np.ndarray,
    local: np.ndarray,
    major: np.ndarray,
    minor: np.ndarray,
    angle: np.ndarray,
    max_growth: float = 2.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-face growth of the splat axes so that splats still cover their triangle in typical poses.

    Bound splats follow a triangle's rotation and mean scale only; where speech poses stretch a
    triangle unevenly (mouth corners, the mouth bag) they would leave gaps. For a jaw-open pose
    and every expression component at full strength, the triangle's in-plane deformation ``G`` (in
    its own frames, scale-normalised) gives the covariance ``G S G^T`` the splats should have; the
    axes grow (never shrink) to reach it, up to ``max_growth``.
    """
    n_expr = int(getattr(rig, "n_expr", 0))
    jaw = torch.zeros(1 + n_expr, 3, dtype=torch.float64)
    jaw[0, 0] = _JAW_OPEN
    expr = torch.zeros(1 + n_expr, max(n_expr, 1), dtype=torch.float64)[:, :n_expr]
    expr[1:] = torch.eye(n_expr, dtype=torch.float64)
    with torch.no_grad():
        posed = rig(jaw_pose=jaw, expr=expr if n_expr else None)
    frames = triangle_frames(posed, torch.as_tensor(faces))
    tri = posed[:, torch.as_tensor(faces)]  # [P,F,3,3]
    lp = torch.einsum("pfji,pfkj->pfki", frames.rotations, tri - frames.centroids[:, :, None])
    lp = (lp / frames.scales[:, :, None, None]).numpy()[..., [0, 2]]  # [P,F,3,2] posed local x, z
    e0 = np.stack([local[:, 1, [0, 2]] - local[:, 0, [0, 2]], local[:, 2, [0, 2]] - local[:, 0, [0, 2]]], -1)
    e1 = np.stack([lp[:, :, 1] - lp[:, :, 0], lp[:, :, 2] - lp[:, :, 0]], -1)  # [P,F,2,2] columns = edges
    det = e0[:, 0, 0] * e0[:, 1, 1] - e0[:, 0, 1] * e0[:, 1, 0]
    safe = np.abs(det) > 1e-12
    inv = np.stack([np.stack([e0[:, 1, 1], -e0[:, 0, 1]], -1), np.stack([-e0[:, 1, 0], e0[:, 0, 0]], -1)], -2)
    inv /= np.where(safe, det, 1.0)[:, None, None]
    g = e1 @ inv  # [P,F,2,2] rest local -> posed local
    axis1 = np.stack([np.cos(angle), np.sin(angle)], -1)  # [F,2]
    axis2 = np.stack([-np.sin(angle), np.cos(angle)], -1)
    cov = major[:, None, None] ** 2 * axis1[:, :, None] * axis1[:, None, :]
    cov += minor[:, None, None] ** 2 * axis2[:, :, None] * axis2[:, None, :]
    ideal = g @ cov @ np.swapaxes(g, -1, -2)  # [P,F,2,2]
    grow1 = np.sqrt(np.einsum("fi,pfij,fj->pf", axis1, ideal, axis1)).max(0) / major
    grow2 = np.sqrt(np.einsum("fi,pfij,fj->pf", axis2, ideal, axis2)).max(0) / minor
    grow1 = np.where(safe, np.clip(grow1, 1.0, max_growth), 1.0)
    grow2 = np.where(safe, np.clip(grow2, 1.0, max_growth), 1.0)
    return grow1, grow2


# ---------------------------------------------------------------------------------------------
# appearance


def _hairline(pos: np.ndarray, at: _Anchors) -> np.ndarray:
    """Height of the hairline above each point's azimuth around the vertical axis."""
    phi = np.abs(np.arctan2(pos[:, 0], pos[:, 2] + 0.01))
    knots = np.array([0.0, 0.25, 0.50, 0.75, 0.95, 1.10, 1.30, 1.55, 1.85, 2.3, math.pi])
    height = np.array([0.049, 0.047, 0.048, 0.037, 0.015, -0.011, 0.001, 0.009, 0.003, -0.060, -0.085])
    return at.eye_y + np.interp(phi, knots, height)


def _skin_colors(s: _Surface, rng: np.random.Generator, features: bool = True) -> np.ndarray:
    """Skin with warmth variation; with ``features`` also nostrils, lips, lids, brows and hair."""
    at = s.at
    x, y, z = s.pos.T
    ax = np.abs(x)
    n = len(x)
    m = s.pos - at.mouth  # relative to the lips' centre
    tip = s.pos - at.nose_tip
    col = np.broadcast_to(SKIN, (n, 3)).copy()
    front = _smoothstep(0.03, 0.07, z)
    # warmth: cheeks, nose tip, chin
    cheeks = np.exp(-(((ax - 0.040) / 0.016) ** 2) - ((m[:, 1] - 0.045) / 0.017) ** 2) * front
    nose = np.exp(-((x / 0.013) ** 2) - ((tip[:, 1] - 0.0013) / 0.012) ** 2) * _smoothstep(-0.031, -0.016, tip[:, 2])
    chin = np.exp(-((x / 0.016) ** 2) - ((m[:, 1] + 0.031) / 0.012) ** 2) * front
    col = _mix(col, SKIN_RED, np.clip(0.32 * cheeks + 0.3 * nose + 0.12 * chin, 0.0, 1.0))
    col *= 1.0 + 0.025 * _wave_noise(rng, s.pos, 0.05)[:, None]  # large-scale tone variation
    if not features:
        return col
    # nostrils: small dark patches under the nose tip
    nostril = np.exp(-(((ax - 0.0075) / 0.0040) ** 2) - ((tip[:, 1] + 0.0082) / 0.0028) ** 2)
    nostril *= _smoothstep(-0.036, -0.026, tip[:, 2]) * _smoothstep(-0.1, -0.5, s.normal[:, 1])
    col = _mix(col, np.array([0.30, 0.16, 0.14]), 0.85 * nostril)
    # lips: an analytic outline (upper and lower vermilion) around the mouth line
    cupid = 0.0012 * np.exp(-((x / 0.004) ** 2))
    upper = (x / 0.0255) ** 2 + ((m[:, 1] - 0.0078 + cupid) / 0.0068) ** 2
    lower = (x / 0.0230) ** 2 + ((m[:, 1] + 0.0047) / 0.0078) ** 2
    lip = _smoothstep(1.25, 0.75, np.minimum(upper, lower)) * _smoothstep(-0.032, -0.017, m[:, 2])
    lip_col = _mix(np.broadcast_to(LIPS, (n, 3)), LIPS * 0.78, np.exp(-(((m[:, 1] - 0.0018) / 0.0025) ** 2)))
    col = _mix(col, lip_col, lip)
    # eyelids: lash line above the upper lid, soft socket shadow
    ec = at.eye_centers[np.argmin(np.abs(x[:, None] - at.eye_centers[None, :, 0]), axis=1)]
    rel = s.pos - ec
    dist = np.linalg.norm(rel, axis=-1)
    lash = np.exp(-(((dist - at.eye_radius - 0.0018) / 0.0013) ** 2)) * _smoothstep(0.001, 0.004, rel[:, 1])
    lash *= _smoothstep(0.0, 0.006, rel[:, 2]) * _smoothstep(0.2, 0.6, s.upper_face)
    socket = np.exp(-(((dist - at.eye_radius - 0.006) / 0.006) ** 2)) * _smoothstep(-0.004, 0.004, rel[:, 1])
    col = _mix(col, col * np.array([0.80, 0.72, 0.72]), 0.5 * socket * front)
    # eyebrows: an arched band above each eye
    t = np.clip((ax - 0.011) / 0.044, 0.0, 1.0)
    centre_y = at.eye_y + 0.017 + 0.0055 * np.sin(math.pi * np.clip(t * 1.25, 0.0, 1.0))
    half = 0.0036 - 0.0018 * t
    brow = _smoothstep(1.3, 0.6, np.abs(y - centre_y) / half) * _smoothstep(0.0, 0.12, t) * _smoothstep(1.05, 0.85, t)
    brow *= _smoothstep(-0.024, -0.004, rel[:, 2]) * (0.75 + 0.25 * _wave_noise(rng, s.pos, 0.002, stretch=(1, 0.2, 1)))
    col = _mix(col, BROW, np.clip(0.92 * brow, 0.0, 1.0))
    col = _mix(col, RIM_UPPER, 0.9 * lash)
    # hair above a soft, slightly irregular hairline
    edge = y - _hairline(s.pos, at)
    edge += 0.0015 * _wave_noise(rng, s.pos, 0.02) + 0.0008 * _wave_noise(rng, s.pos, 0.005)
    hair = _smoothstep(-0.002, 0.004, edge)
    streak = 0.12 * _wave_noise(rng, s.pos, 0.004, n=16, stretch=(1.0, 0.15, 1.0))
    streak += 0.06 * _wave_noise(rng, s.pos, 0.03)
    return _mix(col, HAIR * (1.0 + streak[:, None]), hair)


def _eye_colors(s: _Surface, rng: np.random.Generator) -> np.ndarray:
    """Sclera, iris with streaks and a darker limbus, pupil and catchlight by the angle from the gaze axis."""
    at = s.at
    k = np.argmin(np.linalg.norm(s.pos[:, None] - at.eye_centers[None], axis=-1), axis=1)
    rel = s.pos - at.eye_centers[k]
    d = _normalize(rel)
    ang = np.arccos(np.clip(d[:, 2], -1.0, 1.0))  # angle from the gaze axis (+z)
    iris_r = math.asin(min(0.0058 / at.eye_radius, 0.95))
    pupil_r = math.asin(min(0.0021 / at.eye_radius, 0.95))
    around = np.arctan2(d[:, 1], d[:, 0])
    streaks = 0.18 * np.sin(37.0 * around + 3.0 * np.sin(11.0 * around)) * rng.uniform(0.7, 1.0, size=len(ang))
    radial = np.clip(ang / iris_r, 0.0, 1.0)
    iris = _mix(np.broadcast_to(IRIS, (len(ang), 3)), IRIS_OUTER, _smoothstep(0.55, 1.0, radial))
    iris *= 1.0 + streaks[:, None] * _smoothstep(0.3, 0.5, radial)[:, None]
    sclera = _mix(
        np.broadcast_to(SCLERA, (len(ang), 3)), np.array([0.85, 0.70, 0.66]), 0.5 * _smoothstep(0.9, 1.4, ang)
    )
    col = _mix(sclera, iris, _smoothstep(iris_r + 0.03, iris_r - 0.03, ang))
    col = _mix(col, PUPIL, _smoothstep(pupil_r + 0.03, pupil_r - 0.03, ang))
    # catchlight up and to the side of the pupil
    glint_dir = _normalize(np.array([0.22, 0.30, 1.0]))
    glint = np.exp(-((np.arccos(np.clip(d @ glint_dir, -1.0, 1.0)) / 0.045) ** 2))
    col = _mix(col, np.array([1.0, 1.0, 1.0]), 0.9 * glint)
    # the upper lid shades the top of the eyeball
    return col * (1.0 - 0.35 * _smoothstep(-0.001, 0.006, rel[:, 1]))[:, None]


def _mouth_colors(s: _Surface) -> np.ndarray:
    """Inner lips to dark throat by depth behind the lips, with a tongue on the jaw side."""
    depth = s.at.mouth_front + 0.0002 - s.pos[:, 2]
    col = _mix(np.broadcast_to(MOUTH_LIP, (len(depth), 3)), MOUTH_DEEP, _smoothstep(0.002, 0.022, depth))
    tongue = _smoothstep(0.5, 0.9, s.jaw) * _smoothstep(0.008, 0.02, depth) * _smoothstep(0.052, 0.035, depth)
    col = _mix(col, TONGUE * 0.75, tongue)
    return col * (1.0 - 0.7 * _smoothstep(0.035, 0.052, depth))[:, None]


def _teeth_colors(s: _Surface) -> np.ndarray:
    """Off-white teeth with darker gaps between them and gums along the root edge."""
    x, y, _ = s.pos.T
    col = np.broadcast_to(TEETH, (len(x), 3)).copy()
    gaps = np.abs(((np.abs(x) + 0.0043) / 0.0072) % 1.0 - 0.5) * 0.0072  # distance to a tooth centre
    col *= (1.0 - 0.22 * _smoothstep(0.0026, 0.0036, gaps))[:, None]
    upper_root, lower_root = s.at.gum_lines
    gums = np.where(s.jaw < 0.5, y - upper_root, lower_root - y)  # > -2.5 mm near the gum line
    return _mix(col, GUMS, _smoothstep(-0.003, -0.0015, gums))


def _rim_colors(s: _Surface) -> np.ndarray:
    """Eyelid rims: a dark lash line along the middle of the upper lid, pink elsewhere."""
    centers = s.at.eye_centers
    k = np.argmin(np.abs(s.pos[:, None, 0] - centers[None, :, 0]), axis=1)
    rel = s.pos - centers[k]
    upper = _smoothstep(-0.0005, 0.0015, rel[:, 1]) * _smoothstep(0.011, 0.006, np.abs(rel[:, 0]))
    return _mix(np.broadcast_to(RIM_LOWER, (len(upper), 3)), RIM_UPPER, upper)


def _shade(s: _Surface) -> np.ndarray:
    """Baked soft key light (wrap-around Lambert plus ambient) per sample [N]."""
    light = _normalize(np.asarray(KEY_LIGHT, dtype=np.float64))
    ndl = s.normal @ light
    return 0.62 + 0.45 * np.clip((ndl + 0.45) / 1.45, 0.0, 1.0)


#: material -> painter (rest-pose samples, rng) -> display RGB [N,3]; skin, ears and teeth get the key light
_PAINTERS: dict[str, Callable[[_Surface, np.random.Generator], np.ndarray]] = {
    "skin": lambda s, rng: _skin_colors(s, rng) * _shade(s)[:, None],
    "ear": lambda s, rng: (
        _mix(_skin_colors(s, rng, features=False), SKIN_RED, np.full(len(s.pos), 0.25)) * _shade(s)[:, None]
    ),
    "eye": _eye_colors,
    "rim": lambda s, rng: _rim_colors(s),
    "mouth": lambda s, rng: _mouth_colors(s),
    "teeth": lambda s, rng: _teeth_colors(s) * (0.8 + 0.2 * _shade(s))[:, None],
}


def _colors(s: _Surface, rng: np.random.Generator) -> np.ndarray:
    """Display RGB per sample [N,3] in [0, 1]: materials painted separately, blended by weight."""
    col = np.zeros((len(s.pos), 3))
    for m, name in enumerate(_MATERIALS):
        sel = s.material[:, m] > 0
        if sel.any():
            col[sel] += s.material[sel, m, None] * _PAINTERS[name](s.subset(sel), rng)
    col *= 1.0 + 0.012 * rng.standard_normal(size=(len(col), 1))  # fine grain
    return np.clip(col, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# public API


def build_default_avatar(
    head_model: HeadModel | None = None,
    *,
    num_splats: int | None = None,
    splats_per_area: float | None = None,
    seed: int = 0,
    sh_degree: int = 1,
    name: str = "default",
) -> GaussianAvatar:
    """Build the procedural default avatar on a head model (the built-in head by default).

    Args:
        head_model: a FLAME-format head with the built-in head's region masks; ``None`` loads
            ``"builtin"``.
        num_splats: total splats (at least one per triangle); default :data:`DEFAULT_NUM_SPLATS`.
        splats_per_area: instead of ``num_splats``: splats per cm^2 of region-weighted area.
        seed: everything random (sample positions, noise) derives from it; same seed, same avatar.
        sh_degree: 0..3; bands >= 1 hold a faint facing-ratio shading term.
        name: the avatar's name.
    """

    if num_splats is not None and splats_per_area is not None:
        raise L2TError("give either num_splats or splats_per_area, not both")
    if splats_per_area is not None and not splats_per_area > 0:
        raise L2TError(f"splats_per_area must be positive, got {splats_per_area}")
    if num_splats is None and splats_per_area is None:
        num_splats = DEFAULT_NUM_SPLATS
    if num_splats is not None and (isinstance(num_splats, bool) or not isinstance(num_splats, int)):
        raise L2TError(f"num_splats must be an integer, got {num_splats!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise L2TError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(sh_degree, bool) or sh_degree not in (0, 1, 2, 3):
        raise L2TError(f"sh_degree must be 0..3, got {sh_degree!r}")
    model = head_model if head_model is not None else load_head_model("builtin")
    if model.n_joints != 5:
        raise L2TError(f"head model {model.name!r}: the default avatar needs FLAME's 5 joints (eyes at 3, 4)")
    rng = np.random.default_rng(seed)

    neutral = default_neutral_params(model)
    with torch.no_grad():
        rig = FlameRig(model.to(dtype=torch.float64))
        verts_t = rig(**{k: v.double() for k, v in neutral.items()})[0]
    verts = verts_t.numpy()
    faces = model.faces.detach().cpu().long().numpy()
    tri = verts[faces]  # [F,3,3]
    frames = triangle_frames(verts_t, torch.as_tensor(faces))
    rot = frames.rotations[0].numpy()
    k = frames.scales[0].numpy()
    local = np.einsum("fji,fkj->fki", rot, tri - frames.centroids[0].numpy()[:, None]) / k[:, None, None]

    material_v = _vertex_materials(model)
    anchors = _anchors(model, verts)
    weight_v = _density_weights(model, verts, material_v, anchors)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)
    counts = _face_counts(area, weight_v[faces].mean(1), num_splats, splats_per_area, rng)
    face, bary = _sample_barycentric(counts, rng)

    def interp(values: np.ndarray) -> np.ndarray:  # per-vertex values -> per splat
        return np.einsum("nk,nk...->n...", bary, values[faces[face]])

    v = model.n_verts
    surface = _Surface(
        pos=interp(verts),
        normal=_normalize(interp(_vertex_normals(verts, faces))),
        material=interp(material_v),
        upper_face=interp(_mask(model, ("upper_face",), v).astype(np.float64)),
        jaw=interp(model.lbs_weights.detach().cpu().double().numpy()[:, 2]),
        at=anchors,
    )
    rgb = _colors(surface, rng)

    major, minor, angle = _local_shapes(local, counts)
    grow_major, grow_minor = _pose_growth(rig, faces, local, major, minor, angle)
    major, minor = major * grow_major, minor * grow_minor
    scales = np.stack([COVER * major, FLATNESS * minor * COVER, COVER * minor], -1)[face]
    half = -0.5 * angle[face]  # rotation about the local normal (y) by -angle
    quats = np.stack([np.cos(half), np.zeros_like(half), np.sin(half), np.zeros_like(half)], -1)
    means = np.einsum("nk,nkj->nj", bary, local[face])

    sh = np.zeros((len(face), (sh_degree + 1) ** 2, 3))
    if sh_degree >= 1:  # colour * (1 + FACING * (facing ratio - 0.6)), facing ratio = -normal . view dir
        amp = FACING * rgb
        sh[:, 0] = rgb_to_sh(torch.from_numpy(rgb - 0.6 * amp)).numpy()
        n = surface.normal
        sh[:, 1] = amp * n[:, 1:2] / SH_C1
        sh[:, 2] = -amp * n[:, 2:3] / SH_C1
        sh[:, 3] = amp * n[:, 0:1] / SH_C1
    else:
        sh[:, 0] = rgb_to_sh(torch.from_numpy(rgb)).numpy()

    def f32(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return GaussianAvatar(
        means=f32(means),
        log_scales=f32(np.log(scales)),
        quats=f32(quats),
        opacity_logits=f32(np.full(len(face), math.log(OPACITY / (1.0 - OPACITY)))),
        sh=f32(sh),
        binding=torch.from_numpy(face.astype(np.int64)),
        head_model=model,
        neutral_params=neutral,
        name=name,
        notes=f"procedural default avatar (l2t_gs.authoring.avatar, seed {seed}, {len(face)} splats)",
    )


def render_preview(
    avatar: GaussianAvatar,
    size: int = 512,
    *,
    jaw_open: float = 0.3,
    views: Sequence[str] = ("front", "three-quarter"),
    background: Sequence[float] = (1.0, 1.0, 1.0),
    backend: str = "torch",
) -> tuple[np.ndarray, list[float]]:
    """Render the neutral frame and a jaw-open pose from each view, side by side.

    Returns:
        (RGB uint8 image ``[size, size * 2 * len(views), 3]``: neutral views then open-mouth views,
        seconds per rendered frame).
    """

    neutral = avatar.neutral_vertices()
    opened = avatar.vertices_from_params({"jaw_pose": torch.tensor([jaw_open, 0.0, 0.0])})[0]
    bg = torch.tensor([list(background)], dtype=torch.float32)
    tiles, seconds = [], []
    for verts in (neutral, opened):
        splats = avatar.splat_params(verts.float())
        for view in views:
            viewmats, ks = head_camera(view, neutral, size, size)
            start = time.perf_counter()
            rgb, _, _ = rasterize(**splats, viewmats=viewmats, Ks=ks, width=size, height=size,
                                  backgrounds=bg, backend=backend)  # fmt: skip
            seconds.append(time.perf_counter() - start)
            tiles.append(to_uint8(rgb[0]))
    return np.concatenate(tiles, axis=1), seconds
