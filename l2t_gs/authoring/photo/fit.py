"""Fit the built-in head's rig and a pinhole camera to the 468 face-mesh landmarks of a photo.

Unknowns: identity coefficients ``shape [S]``, the photo's expression ``expr [E]`` and ``jaw``
(axis-angle, [3]), a smooth per-vertex ``static_offset [V, 3]`` (GaussianAvatars' identity offset:
the few identity components of the built-in head do not reach every face), and the head's rigid
pose in the camera (rotation, translation). The focal length is fixed (a portrait lens, see
:data:`FOCAL_OVER_SIZE`): from one photo it trades off against distance. The head's rigid pose is
returned as the camera (``viewmat``), so the avatar stays upright at the origin and talks in its own
frame.

Loss: a robust (Geman-McClure-like, ``r^2 / (r^2 + c^2)``) reprojection error of the landmarks in
units of the inter-ocular distance, the face outline down-weighted (it slides along the silhouette),
the same on the face-mesh model's relative depth (it pins the head's turn, which 2-D points alone
leave to trade against the identity offsets; the model's tilt and scale undone, :data:`DEPTH_TILT`),
Gaussian priors on the coefficients and a graph-Laplacian smoothness + size prior on the offsets; once
the identity is free, a one-sided term makes the head's projected silhouette reach the photo's outline
(:data:`OUTLINE_COVERAGE_WEIGHT`).

The identity offsets cannot open or shut the mouth: each vertex of the lower lip's inner edge takes
the offset of the upper-lip vertex facing it (:func:`lip_contact_pairs`). What parts the lips in
the photo is the jaw, the expression and a smooth offset of the lips that belongs to the photo's
expression only (``lip_offset``; a smile that bares the teeth goes beyond the few expression
components). :func:`rest_params` drops those (keeping the photo's smile, brows and eyelids) for
the avatar's rest frame: its lips rest as the template's, and the motion model's closures close them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from l2t_gs.authoring.photo.correspondence import Correspondence, load_correspondence, points_on_mesh
from l2t_gs.authoring.photo.landmarks import FACE_OVAL, LIPS_INNER, inter_ocular
from l2t_gs.core.rotation import axis_angle_to_matrix, matrix_to_axis_angle
from l2t_gs.errors import L2TError
from l2t_gs.rig import FlameRig, HeadModel

__all__ = [
    "FOCAL_OVER_SIZE",
    "REST_ZEROED",
    "FitResult",
    "calibrate_depth",
    "face_mesh_depth",
    "fit_landmarks",
    "head_down",
    "lip_contact_pairs",
    "project",
    "photo_pose",
    "rest_params",
    "true_relative_depth",
]

#: Focal length over the photo's longer side (about a 40 degree field of view across it).
FOCAL_OVER_SIZE = 1.4
#: Weight of the face outline's points (they slide along the silhouette as the head turns).
OVAL_WEIGHT = 0.3
#: The face-mesh model's relative depth over the true relief, and its tilt: the model reads a point
#: ``DEPTH_TILT`` pixels deeper per pixel lower on the face (along the head's own down axis as the camera
#: sees it, :func:`head_down`) than the head's geometry puts it: its frontal face is pitched
#: ``atan(0.13)``, 7 degrees, against the built-in head's. Medians over ten renders of the built-in head,
#: :func:`calibrate_depth` (``python docs/scripts/photo_depth_calibration.py``).
DEPTH_SCALE = 1.02
DEPTH_TILT = 0.13
#: Weight of the depth term against the 2-D reprojection term, in both stages of the fit.
DEPTH_WEIGHT = 0.5
#: Scale of the robust landmark loss (inter-ocular units): residuals well beyond it barely pull.
ROBUST_C = 0.05
#: The inner lips' robust scale at the start of the full stage, narrowed to :data:`ROBUST_C` over its
#: first half (graduated non-convexity): a smile that bares the teeth starts a fifth of an eye
#: distance away from the closed rest mouth, where the narrow loss would leave it.
LIP_ROBUST_C_START = 0.3
#: Weight of the outline coverage term: each face-outline point of the photo that lies beyond the head's
#: projected silhouette (in its direction from the outline's centre) costs its squared distance to it in
#: eye distances. The outline points themselves slide along the silhouette, so their fixed surface points
#: (down-weighted above) leave the fitted head narrower than wide faces, and the render's background then
#: shows inside the photo's face.
OUTLINE_COVERAGE_WEIGHT = 100.0
#: Half-width of the strip (a fraction of the outline point's distance from the centre) in which head
#: vertices count as lying in an outline point's direction.
OUTLINE_WINDOW = 0.05
#: Lower-lip vertices closer than this to an upper-lip vertex at rest form the lips' contact line.
LIP_CONTACT_M = 3e-3
#: Expression components the rest frame zeroes (with the jaw): the mouth's articulation, which the
#: motion model drives. The photo's smile (``spread``, ``mouth_corners_down``), brows and eyelids stay.
REST_ZEROED: tuple[str, ...] = (
    "lip_close", "lip_press", "pucker", "upper_lip_raise", "lower_lip_drop", "labiodental",
)  # fmt: skip
#: Rotation taking FLAME axes (+y up, face toward +z) to an OpenCV camera looking at the face.
_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))


@dataclass
class FitResult:
    """The fitted rig parameters (unbatched, float32) and camera.

    ``params``: ``shape``, ``expr``, ``jaw_pose``, ``static_offset`` (identity) as the photo shows the
    face, and ``lip_offset [V, 3]``, the photo's own lip displacement (zero off the lips), added to
    ``static_offset`` in the photo's pose (:func:`photo_pose`); :func:`rest_params` gives the rest frame;
    ``viewmat [4, 4]`` world-to-camera (OpenCV), ``K [3, 3]``; ``verts [V, 3]`` the fitted mesh;
    ``projected [468, 2]`` its landmarks in the photo; ``error_iod`` the mean landmark distance over
    the inter-ocular distance.
    """

    params: dict[str, Tensor]
    viewmat: Tensor
    K: Tensor
    verts: Tensor
    projected: np.ndarray
    error_iod: float
    history: list[float] = field(default_factory=list)

    @property
    def head_rotation_deg(self) -> np.ndarray:
        """The head's rotation as seen by the camera, axis-angle in degrees (0 = facing it)."""
        r = self.viewmat[:3, :3].double() @ _FLIP
        return np.degrees(matrix_to_axis_angle(r).numpy())


def project(points: Tensor, viewmat: Tensor, K: Tensor) -> Tensor:
    """Pinhole projection of world points ``[..., P, 3]`` to pixels ``[..., P, 2]``."""
    cam = points @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = cam[..., 2:].clamp_min(1e-6)
    return cam[..., :2] / z * torch.stack([K[0, 0], K[1, 1]]) + K[:2, 2]


def head_down(viewmat: np.ndarray | Tensor) -> np.ndarray:
    """Unit image direction ``[2]`` of the head's down axis (world -y) seen by a camera ``viewmat [4, 4]``:
    ``(0, 1)`` for an upright head, turned with the head's roll."""
    d = -np.asarray(viewmat, dtype=np.float64)[:2, 1]
    return d / max(float(np.linalg.norm(d)), 1e-9)


def _along(points: np.ndarray, down: np.ndarray | tuple[float, float]) -> np.ndarray:
    """Each of ``points [P, >=2]`` (pixels) along the image direction ``down [2]``, mean zero."""
    p = np.asarray(points, dtype=np.float64)[:, :2]
    return (p - p.mean(0)) @ np.asarray(down, dtype=np.float64)


def true_relative_depth(landmarks: np.ndarray, down: np.ndarray | tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """The relative depth ``[468]`` (pixels, mean zero) the face-mesh model's ``landmarks [468, 3]`` stand
    for, its scale and tilt undone (:data:`DEPTH_SCALE`, :data:`DEPTH_TILT`; the tilt along ``down``, the
    head's down direction in the image, :func:`head_down`); zeros for 2-D landmarks."""
    marks = np.asarray(landmarks, dtype=np.float64)
    if marks.shape[1] < 3:
        return np.zeros(len(marks))
    return (marks[:, 2] - marks[:, 2].mean() - DEPTH_TILT * _along(marks, down)) / DEPTH_SCALE


def face_mesh_depth(
    points: np.ndarray, true_depth: np.ndarray, down: np.ndarray | tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """The inverse of :func:`true_relative_depth`: the depth ``[468]`` the face-mesh model reports for points
    at pixels ``points [468, 2]`` whose true relative depth (pixels) is ``true_depth [468]``."""
    t = np.asarray(true_depth, dtype=np.float64)
    return DEPTH_SCALE * (t - t.mean()) + DEPTH_TILT * _along(points, down)


def lip_contact_pairs(head_model: HeadModel) -> tuple[np.ndarray, np.ndarray]:
    """The lips' contact line at rest: (lower-lip vertices ``[P]``, the upper-lip vertex nearest each ``[P]``).

    Lower-lip vertices within :data:`LIP_CONTACT_M` of the upper lip in the rest template. Empty
    without ``lip_upper`` / ``lip_lower`` masks (a head model other than the built-in one).
    """
    masks = head_model.masks
    if "lip_upper" not in masks or "lip_lower" not in masks:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    up = np.asarray(masks["lip_upper"].cpu(), dtype=np.int64)
    lo = np.asarray(masks["lip_lower"].cpu(), dtype=np.int64)
    v = head_model.v_template.detach().cpu().double().numpy()
    d = np.linalg.norm(v[lo][:, None] - v[up][None], axis=2)  # [lower, upper]
    near = d.min(1) < LIP_CONTACT_M
    return lo[near], up[d.argmin(1)[near]]


def rest_params(params: dict[str, Tensor], head_model: HeadModel) -> dict[str, Tensor]:
    """The avatar's rest frame (neutral parameters) from a fit's ``params``: identity, the photo's
    smile, brows and eyelids; the jaw closed, :data:`REST_ZEROED` zeroed, no ``lip_offset``."""
    out = {k: v for k, v in params.items() if k != "lip_offset"}
    expr = params["expr"].clone()
    names = list(head_model.expr_names or [])
    for name in REST_ZEROED:
        if name in names and names.index(name) < expr.shape[-1]:
            expr[..., names.index(name)] = 0.0
    out["expr"] = expr
    out["jaw_pose"] = torch.zeros_like(params["jaw_pose"])
    return out


def photo_pose(params: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rig inputs that pose an avatar built from a fit's ``params`` as the photo shows the face."""
    return {
        "expr": params["expr"],
        "jaw_pose": params["jaw_pose"],
        "static_offset": params["static_offset"] + params["lip_offset"],
    }


def _outline_vertices(head_model: HeadModel) -> np.ndarray:
    """Vertices that can form the head's outline seen from the front: face, scalp and neck, without the
    features inside the face (nose, lips, eyes and their surroundings, the mouth) and the ears."""
    masks = head_model.masks
    keep = np.zeros(head_model.n_verts, bool)
    for name in ("face", "scalp", "neck"):
        if name in masks:
            keep[np.asarray(masks[name].cpu())] = True
    for name in ("nose", "lips", "eye_region", "eyes", "mouth_interior", "teeth_upper", "teeth_lower", "ears"):
        if name in masks:
            keep[np.asarray(masks[name].cpu())] = False
    return np.nonzero(keep)[0]


def _laplacian(faces: np.ndarray, n: int) -> Tensor:
    """Uniform graph Laplacian ``L = I - D^-1 A`` as a sparse ``[V, V]`` tensor."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.unique(np.sort(np.concatenate([e, e[:, ::-1]]), axis=1), axis=0)
    e = np.concatenate([e, e[:, ::-1]])
    deg = np.bincount(e[:, 0], minlength=n).astype(np.float64)
    vals = -1.0 / np.maximum(deg[e[:, 0]], 1)
    idx = np.concatenate([e.T, np.stack([np.arange(n)] * 2)], 1)
    vals = np.concatenate([vals, np.ones(n)])
    return torch.sparse_coo_tensor(
        torch.as_tensor(idx), torch.as_tensor(vals), (n, n), check_invariants=False
    ).coalesce()


def fit_landmarks(
    landmarks: np.ndarray,
    width: int,
    height: int,
    head_model: HeadModel,
    *,
    corr: Correspondence | None = None,
    focal: float | None = None,
    steps: int = 250,
    fit_identity: bool = True,
) -> FitResult:
    """Fit rig + camera to face-mesh ``landmarks [468, >=2]`` (photo pixels) of a ``width x height`` photo."""
    corr = corr or load_correspondence()
    dt = torch.float32
    rig = FlameRig(head_model.to(dtype=dt))
    faces = head_model.faces.long()
    target = torch.as_tensor(np.asarray(landmarks)[:, :2], dtype=dt)
    iod = inter_ocular(np.asarray(landmarks))
    f = float(focal if focal is not None else FOCAL_OVER_SIZE * max(width, height))
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dt)
    weights = torch.ones(468, dtype=dt)
    weights[list(FACE_OVAL)] = OVAL_WEIGHT

    # initial rigid pose: PnP of the rest head's correspondence points (OpenCV, iterative)
    rest = rig().detach()[0].double()
    pts0 = points_on_mesh(corr, rest, faces).numpy()
    image_pts = np.ascontiguousarray(np.asarray(landmarks, dtype=np.float64)[:, :2])
    kmat = K.double().numpy()
    ok, rvec, tvec = cv2.solvePnP(pts0, image_pts, kmat, None, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(
            pts0, image_pts, kmat, None, rvec, tvec,
            useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
        )  # fmt: skip
    if not ok or float(tvec[2, 0]) <= 0:
        raise L2TError("cannot place the head in the photo (the landmarks do not fit a face)")
    r0 = torch.as_tensor(cv2.Rodrigues(rvec)[0], dtype=torch.float64) @ _FLIP  # camera-space part of R = R' @ FLIP
    aa0 = matrix_to_axis_angle(r0).to(dt)
    # the model's depth, its tilt along the head's down axis as the initial pose shows it undone
    down = head_down((r0 @ _FLIP).numpy())
    target_z = torch.as_tensor(true_relative_depth(np.asarray(landmarks), down), dtype=dt)
    t0 = torch.as_tensor(tvec[:, 0], dtype=dt)

    aa = aa0.clone().requires_grad_(True)  # camera-space rotation
    trans = t0.clone().requires_grad_(True)
    shape = torch.zeros(rig.n_shape, dtype=dt, requires_grad=True)
    expr = torch.zeros(rig.n_expr, dtype=dt, requires_grad=True)
    jaw = torch.zeros(3, dtype=dt, requires_grad=True)
    offset = torch.zeros(rig.n_verts, 3, dtype=dt, requires_grad=True)
    lip_lower, lip_upper = (torch.as_tensor(i) for i in lip_contact_pairs(head_model))
    lips_mask = head_model.masks.get("lips")
    lips = torch.as_tensor(np.asarray(lips_mask.cpu()) if lips_mask is not None else [], dtype=torch.long)
    lip_offset = torch.zeros(len(lips), 3, dtype=dt, requires_grad=True)
    lap = _laplacian(faces.numpy(), rig.n_verts).to(dt)
    scale_px = iod  # residuals in inter-ocular units
    c2 = torch.full((468,), ROBUST_C**2, dtype=dt)  # per landmark; the inner lips' widens at first
    inner_lips = list(LIPS_INNER)
    outer = torch.as_tensor(_outline_vertices(head_model), dtype=torch.long)
    outline = target[list(FACE_OVAL)]
    centre = outline.mean(0)
    r_l = (outline - centre).norm(dim=-1)  # [O] the photo's outline points: distance from the centre
    u = (outline - centre) / r_l[:, None]  # [O, 2] and direction

    def coverage_term(verts: Tensor, vm: Tensor) -> Tensor:
        """How far the photo's outline points lie outside the head's projected silhouette (one-sided)."""
        d_v = project(verts[outer], vm, K) - centre  # [C, 2]
        along = d_v @ u.T  # [C, O]
        across = (d_v[:, None, :] - along[..., None] * u[None]).norm(dim=-1)
        near = across < OUTLINE_WINDOW * r_l[None]
        reach = torch.where(near, along, torch.full_like(along, -1e9)).max(0).values
        gap = torch.relu(r_l - reach.clamp_min(0.0)) / scale_px
        return (gap**2).mean()

    def viewmat() -> Tensor:
        r = axis_angle_to_matrix(aa) @ _FLIP.to(dt)
        top = torch.cat([r, trans[:, None]], 1)
        return torch.cat([top, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=dt)])

    def jaw_axis() -> Tensor:  # opening about x only, never closed past rest
        return torch.stack([jaw[0].clamp_min(0.0), jaw[0] * 0.0, jaw[0] * 0.0])

    def tied_offset() -> Tensor:  # identity: the lower lip's contact line moves with the upper lip
        return offset.index_copy(0, lip_lower, offset[lip_upper])

    def photo_offset() -> Tensor:  # identity + the photo's own lip displacement
        return tied_offset().index_add(0, lips, lip_offset)

    def forward() -> tuple[Tensor, Tensor, Tensor]:
        verts = rig(shape=shape, expr=expr, jaw_pose=jaw_axis(),
                    static_offset=photo_offset())[0]  # fmt: skip
        pts = points_on_mesh(corr, verts, faces)
        vm = viewmat()
        depth = pts @ vm[2, :3] + vm[2, 3]
        return verts, project(pts, vm, K), depth

    def data_term(proj: Tensor, depth: Tensor, depth_weight: float) -> Tensor:
        r2 = ((proj - target) ** 2).sum(-1) / scale_px**2
        loss = (weights * r2 / (r2 + c2)).sum() / weights.sum()
        # the face-mesh model's relative depth, brought to the true relief (same pixel scale as x, y)
        rel = (depth - depth.mean()) * f / depth.mean()
        rz2 = ((rel - target_z) / scale_px) ** 2
        return loss + depth_weight * (weights * rz2 / (rz2 + c2)).sum() / weights.sum()

    history: list[float] = []
    # learning rates: radians, metres (translation), coefficients, metres (offsets)
    rigid = [{"params": [aa], "lr": 0.02}, {"params": [trans], "lr": 0.002}]
    stages = [(rigid, steps // 3, DEPTH_WEIGHT, False)]  # (groups, steps, depth weight, identity free)
    if fit_identity:
        full = rigid + [{"params": [shape, expr, jaw], "lr": 0.02}, {"params": [offset, lip_offset], "lr": 5e-4}]
        stages.append((full, steps - steps // 3, DEPTH_WEIGHT, True))
    for groups, n, depth_weight, identity in stages:
        opt = torch.optim.Adam([dict(g) for g in groups])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(n, 1), eta_min=1e-5)
        for i in range(n):
            if identity:  # graduated robustness for the inner lips
                frac = max(0.0, 1.0 - 2.0 * i / n)
                c2[inner_lips] = (ROBUST_C + (LIP_ROBUST_C_START - ROBUST_C) * frac) ** 2
            opt.zero_grad()
            verts_i, proj, depth = forward()
            loss = data_term(proj, depth, depth_weight)
            if identity and len(outer):  # reach the photo's outline by widening the head (camera held), not turning it
                loss = loss + OUTLINE_COVERAGE_WEIGHT * coverage_term(verts_i, viewmat().detach())
            if identity:
                loss = loss + 2e-3 * (shape**2).sum() + 2e-3 * (expr**2).sum() + 0.05 * (jaw**2).sum()
                loss = loss + 1e-3 * torch.relu(-expr).sum()  # the components are one-sided
                shown = photo_offset()
                lo = torch.sparse.mm(lap, shown)
                loss = loss + 40.0 * (lo**2).sum() + 2.0 * (shown**2).sum() + 2.0 * (lip_offset**2).sum()
            loss.backward()
            opt.step()
            sched.step()
            history.append(float(loss.detach()))
    with torch.no_grad():
        verts, proj, _ = forward()
        err = (proj - target).norm(dim=-1).mean() / scale_px
        params = {
            "shape": shape.detach().float(),
            "expr": expr.detach().clamp_min(0).float(),
            "jaw_pose": jaw_axis().detach().float(),
            "static_offset": tied_offset().detach().float(),
            "lip_offset": (photo_offset() - tied_offset()).detach().float(),
        }
        return FitResult(
            params, viewmat().detach().float(), K.float(), verts.float(), proj.numpy(), float(err), history
        )


#: Views (azimuth, elevation in degrees, distance in metres) the depth convention is measured from.
DEPTH_VIEWS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.9), (-25.0, 5.0, 0.9), (35.0, -10.0, 0.9), (10.0, 10.0, 0.9), (0.0, -15.0, 0.9),
    (0.0, 15.0, 0.9), (-15.0, -5.0, 0.6), (25.0, 8.0, 1.2), (-40.0, 0.0, 0.9), (0.0, 0.0, 0.6),
)  # fmt: skip


def calibrate_depth(
    views: tuple[tuple[float, float, float], ...] = DEPTH_VIEWS, size: int = 384, focal_over_size: float = 1.4
) -> tuple[float, float, np.ndarray]:
    """How the face-mesh model's relative depth relates to the true one, on renders of the default avatar.

    In each view the model's depth ``z`` (mean removed, pixels) is regressed on the true relative depth of
    the correspondence points (camera depth minus its mean, times ``focal / mean depth``) and on the
    points' position ``v`` along the head's down axis in the image (:func:`head_down`, mean removed):
    ``z = scale * true + tilt * v``, face outline excluded (it slides). ``tilt > 0``: the model reads the
    lower face as farther than it is, i.e. its frontal face is pitched ``atan(tilt)`` against the head's.
    Returns the medians over the views and the per-view ``[n, 2]`` (scale, tilt).
    """
    from l2t_gs.authoring.photo.correspondence import orbit_view, read_render
    from l2t_gs.authoring.photo.landmarks import FACE_OVAL
    from l2t_gs.gaussians import load_avatar
    from l2t_gs.render import intrinsics

    avatar = load_avatar("default")
    verts = avatar.neutral_vertices()
    corr = load_correspondence()
    pts = points_on_mesh(corr, verts.double(), avatar.faces).numpy()
    keep = np.setdiff1d(np.arange(468), FACE_OVAL)
    k = intrinsics(None, size, size, focal=focal_over_size * size)
    rows = []
    for azimuth, elevation, distance in views:
        view, _ = orbit_view(azimuth, elevation, distance)
        _, marks = read_render(avatar, verts, view, k, size, f"({azimuth}, {elevation}, {distance})")
        vm = view.double().numpy()
        depth = pts @ vm[2, :3] + vm[2, 3]
        true = (depth - depth.mean()) * float(k[0, 0]) / depth.mean()
        z = marks[:, 2] - marks[:, 2].mean()
        v = _along(marks, head_down(vm))
        a = np.stack([true[keep], v[keep], np.ones(len(keep))], 1)
        coef = np.linalg.lstsq(a, z[keep], rcond=None)[0]
        rows.append(coef[:2])
    table = np.array(rows)
    return float(np.median(table[:, 0])), float(np.median(table[:, 1])), table
