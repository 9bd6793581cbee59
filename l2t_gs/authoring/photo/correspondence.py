"""The correspondence between MediaPipe's 468 face-mesh points and the built-in head's surface.

Each face-mesh point ``k`` is a point on the head's surface: a triangle ``face[k]`` and barycentric
weights ``bary[k]``, so that for any posed mesh ``verts [.., V, 3]`` the point is
``sum_j bary[k, j] * verts[faces[face[k], j]]`` (:func:`points_on_mesh`). The table is built once
(:func:`build_correspondence`, ``python docs/scripts/photo_correspondence.py``) and shipped as
``l2t_gs/assets/head/face_mesh_correspondence.npz``; docs/photo-avatar.md shows it.

How it is built: the default avatar is rendered from seven views around the front, the face-mesh model is run on the
render, and its points are carried onto the head by the render's depth. The model reads the painted
mannequin slightly differently from a person (its lip ring sits on the upper lip, for instance), so
before the points are carried onto the head they are corrected by a smooth 2-D warp (thin-plate
spline) that takes a set of *semantic anchors* of the face mesh (mouth corners, inner and outer lip
midpoints, eye corners, eyelid midpoints, the nose tip) exactly onto the head's own landmarks of the
same name, while the face outline stays put.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from l2t_gs.assets import asset_path
from l2t_gs.errors import L2TError

__all__ = [
    "ANCHORS",
    "CORRESPONDENCE_FILE",
    "Correspondence",
    "anchor_points",
    "build_correspondence",
    "orbit_view",
    "read_render",
    "load_correspondence",
    "points_on_mesh",
]

CORRESPONDENCE_FILE = ("head", "face_mesh_correspondence.npz")

#: Face-mesh index -> name of the head landmark it must land on (see :func:`anchor_points`).
ANCHORS: dict[int, str] = {
    61: "mouth_corner_right",
    291: "mouth_corner_left",
    13: "upper_lip_inner",
    14: "lower_lip_inner",
    0: "upper_lip_top",
    17: "lower_lip_bottom",
    33: "right_eye_outer",
    133: "right_eye_inner",
    362: "left_eye_inner",
    263: "left_eye_outer",
    159: "right_upper_lid",
    145: "right_lower_lid",
    386: "left_upper_lid",
    374: "left_lower_lid",
    1: "nose_tip",
}


class Correspondence:
    """Face-mesh point -> (triangle ``face [468]``, barycentric ``bary [468, 3]``) on the head."""

    def __init__(self, face: np.ndarray, bary: np.ndarray) -> None:
        self.face = np.asarray(face, dtype=np.int64)
        self.bary = np.asarray(bary, dtype=np.float64)
        if self.face.shape != (468,) or self.bary.shape != (468, 3):
            raise L2TError(
                f"face-mesh correspondence must be [468] + [468, 3], got {self.face.shape}, {self.bary.shape}"
            )

    def vertex_weights(self, faces: np.ndarray, n_verts: int) -> np.ndarray:
        """Dense ``[468, V]`` weights ``W`` with ``points = W @ verts``."""
        w = np.zeros((468, n_verts))
        idx = np.asarray(faces)[self.face]  # [468, 3]
        np.add.at(w, (np.repeat(np.arange(468), 3), idx.ravel()), self.bary.ravel())
        return w


def points_on_mesh(corr: Correspondence, verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Face-mesh points on posed meshes: verts ``[..., V, 3]`` -> ``[..., 468, 3]`` (differentiable)."""
    tri = torch.as_tensor(faces).long()[torch.as_tensor(corr.face)]  # [468, 3]
    b = torch.as_tensor(corr.bary, dtype=verts.dtype, device=verts.device)
    return (verts[..., tri, :] * b[:, :, None]).sum(-2)


@functools.lru_cache(maxsize=1)
def load_correspondence() -> Correspondence:
    """The shipped correspondence of the built-in head."""
    path = asset_path(*CORRESPONDENCE_FILE)
    if not path.is_file():
        raise L2TError(f"the face-mesh correspondence {path} is missing; run docs/scripts/photo_correspondence.py")
    with np.load(path) as data:
        return Correspondence(data["face"], data["bary"])


# --------------------------------------------------------------------------------------------- building
def anchor_points(model, verts: np.ndarray) -> dict[str, np.ndarray]:  # noqa: ANN001 - HeadModel
    """The head's semantic landmarks (rest pose ``verts [V, 3]``, metres) named as in :data:`ANCHORS`."""
    m = {k: np.asarray(v.cpu()) for k, v in model.masks.items()}
    with np.load(asset_path("head", "l2t_head.npz")) as z:  # the landmarks ship in the head's file
        marks = {k[len("landmark_") :]: z[k] for k in z.files if k.startswith("landmark_")}

    def lm(name: str) -> np.ndarray:
        return verts[marks[name]]

    out = {
        "upper_lip_inner": lm("upper_lip_mid")[0],
        "lower_lip_inner": lm("lower_lip_mid")[0],
        "right_upper_lid": lm("right_upper_lid")[0],
        "right_lower_lid": lm("right_lower_lid")[0],
        "left_upper_lid": lm("left_upper_lid")[0],
        "left_lower_lid": lm("left_lower_lid")[0],
    }
    corners = lm("mouth_corners")
    out["mouth_corner_right"], out["mouth_corner_left"] = corners[np.argsort(corners[:, 0])]
    for name, mask, pick in (("upper_lip_top", "lip_upper", np.argmax), ("lower_lip_bottom", "lip_lower", np.argmin)):
        p = verts[m[mask]]
        mid = p[np.abs(p[:, 0]) < 0.004]
        mid = mid[mid[:, 2] > mid[:, 2].max() - 0.006]  # the outer (front) surface
        out[name] = mid[pick(mid[:, 1])]
    rims = verts[m["eyelid_rims"]]
    for side, sign in (("right", -1.0), ("left", 1.0)):
        r = rims[np.sign(rims[:, 0]) == sign]
        outer, inner = r[np.argmax(np.abs(r[:, 0]))], r[np.argmin(np.abs(r[:, 0]))]
        out[f"{side}_eye_outer"], out[f"{side}_eye_inner"] = outer, inner
    nose = verts[m["nose"]]
    out["nose_tip"] = nose[np.argmax(nose[:, 2])]
    return out


def _tps(src: np.ndarray, dst: np.ndarray, query: np.ndarray, reg: float = 1e-3) -> np.ndarray:
    """Thin-plate spline through ``src [n, 2] -> dst [n, 2]`` evaluated at ``query [m, 2]``."""

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return 0.5 * r2 * np.log(np.maximum(r2, 1e-20))

    n = len(src)
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = kernel(src, src) + reg * np.eye(n)
    p = np.concatenate([np.ones((n, 1)), src], 1)
    a[:n, n:], a[n:, :n] = p, p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = dst
    coef = np.linalg.solve(a, rhs)
    return kernel(query, src) @ coef[:n] + np.concatenate([np.ones((len(query), 1)), query], 1) @ coef[n:]


def closest_surface_points(
    points: np.ndarray, verts: np.ndarray, faces: np.ndarray, candidates: np.ndarray | None = None, k: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on a triangle mesh: ``points [P, 3]`` -> (triangle [P], barycentric [P, 3]).

    Searches the triangles around the ``k`` nearest vertices (of ``candidates`` if given)."""
    pool = np.arange(len(verts)) if candidates is None else np.asarray(candidates)
    d2 = ((points[:, None] - verts[pool][None]) ** 2).sum(-1)
    near = pool[np.argsort(d2, 1)[:, :k]]  # [P, k]
    incident = np.zeros(len(verts), bool)
    best_f = np.zeros(len(points), np.int64)
    best_b = np.zeros((len(points), 3))
    for i, p in enumerate(points):  # P = 468 points, small
        incident[:] = False
        incident[near[i]] = True
        fs = np.nonzero(incident[faces].any(1))[0]
        a, b, c = (verts[faces[fs, j]] for j in range(3))
        # barycentric of the projection on each plane, clamped onto the triangle
        v0, v1, v2 = b - a, c - a, p - a
        d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
        d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
        den = np.maximum(d00 * d11 - d01 * d01, 1e-30)
        w1 = (d11 * d20 - d01 * d21) / den
        w2 = (d00 * d21 - d01 * d20) / den
        bary = np.clip(np.stack([1 - w1 - w2, w1, w2], 1), 0, None)
        bary /= bary.sum(1, keepdims=True)
        q = bary[:, :1] * a + bary[:, 1:2] * b + bary[:, 2:] * c
        j = int(np.argmin(((q - p) ** 2).sum(1)))
        best_f[i], best_b[i] = fs[j], bary[j]
    return best_f, best_b


#: Views (azimuth, elevation in degrees) the correspondence is triangulated from.
BUILD_VIEWS: tuple[tuple[float, float], ...] = (
    (0.0, 0.0), (-25.0, 0.0), (25.0, 0.0), (-12.0, 8.0), (12.0, -8.0), (0.0, 12.0), (0.0, -10.0),
)  # fmt: skip


def orbit_view(azimuth: float, elevation: float, distance: float = 0.75):  # noqa: ANN201 - (viewmat, eye)
    from l2t_gs.render import look_at

    a, e = np.radians(azimuth), np.radians(elevation)
    target = np.array([0.0, -0.01, 0.0])
    eye = target + distance * np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)])
    return look_at(eye, target), eye


def read_render(avatar, verts: torch.Tensor, view: torch.Tensor, k: torch.Tensor, size: int, what: str):  # noqa: ANN001, ANN201
    """Render ``avatar`` on ``verts`` (white background, ``size`` square) and run the face-mesh model on it:
    (image uint8 ``[size, size, 3]``, its landmarks ``[468, 3]``)."""
    from l2t_gs.authoring.photo.landmarks import detect_faces, face_mesh
    from l2t_gs.render import rasterize, to_uint8

    with torch.no_grad():
        rgb, _, _ = rasterize(
            **avatar.splat_params(verts), viewmats=view[None], Ks=k[None], width=size, height=size,
            backgrounds=torch.ones(1, 3), backend="torch",
        )  # fmt: skip
    image = to_uint8(rgb[0])
    found = detect_faces(image)
    if not found:
        raise L2TError(f"the face-mesh model found no face on the default avatar's render {what}")
    return image, face_mesh(image, found[0]).points


def build_correspondence(size: int = 512, fov_y_deg: float = 20.0) -> tuple[Correspondence, dict[str, np.ndarray]]:
    """Build the correspondence from renders of the default avatar (see the module doc).

    In each view of :data:`BUILD_VIEWS` the face-mesh points are warped onto the head's anchors,
    then each point is triangulated from its rays in all views (least squares) and snapped onto the
    surface. Returns the correspondence and diagnostics of the front view: ``image`` (the render),
    ``raw`` (face-mesh points on it [468, 2]), ``warped`` (after the anchor warp [468, 2]).
    """
    from l2t_gs.authoring.photo.landmarks import FACE_OVAL
    from l2t_gs.gaussians import load_avatar
    from l2t_gs.render import intrinsics

    avatar = load_avatar("default")
    verts_t = avatar.neutral_vertices()
    verts = verts_t.double().numpy()
    faces = avatar.faces.numpy()
    anchors = anchor_points(avatar.head_model, verts)
    ids = list(ANCHORS)
    anchor_xyz = np.stack([anchors[ANCHORS[i]] for i in ids])
    k = intrinsics(fov_y_deg, size, size)[None]
    km = k[0].double().numpy()
    ata = np.zeros((468, 3, 3))
    atb = np.zeros((468, 3))
    diag: dict[str, np.ndarray] = {}
    for azimuth, elevation in BUILD_VIEWS:
        view, eye = orbit_view(azimuth, elevation)
        image, marks = read_render(avatar, verts_t, view, k[0], size, f"({azimuth}, {elevation})")
        raw = marks[:, :2]
        vm = view.double().numpy()
        cam = anchor_xyz @ vm[:3, :3].T + vm[:3, 3]
        anchor_px = cam[:, :2] / cam[:, 2:] * km[[0, 1], [0, 1]] + km[:2, 2]
        oval = raw[list(FACE_OVAL)]
        warped = _tps(np.concatenate([raw[ids], oval]), np.concatenate([anchor_px, oval]), raw)
        if (azimuth, elevation) == (0.0, 0.0):
            diag = {"image": image, "raw": raw, "warped": warped}
        # rays: camera centre + t * direction (world), accumulated for least squares
        d_cam = np.concatenate([(warped - km[:2, 2]) / km[[0, 1], [0, 1]], np.ones((468, 1))], 1)
        d = d_cam @ vm[:3, :3]
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
        ata += proj
        atb += proj @ eye
    world = np.linalg.solve(ata, atb[..., None])[..., 0]
    for i in ids:  # exact anchors: their own head points
        world[i] = anchors[ANCHORS[i]]
    surface = np.unique(np.concatenate([np.asarray(avatar.head_model.masks[r].cpu()) for r in ("face", "lips")]))
    face_idx, bary = closest_surface_points(world, verts, faces, surface)
    return Correspondence(face_idx, bary), diag
