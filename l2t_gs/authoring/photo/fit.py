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
leave to trade against the identity offsets), plus Gaussian priors on the coefficients and a
graph-Laplacian smoothness + size prior on the offsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from l2t_gs.authoring.photo.correspondence import Correspondence, load_correspondence, points_on_mesh
from l2t_gs.authoring.photo.landmarks import FACE_OVAL, inter_ocular
from l2t_gs.core.rotation import axis_angle_to_matrix, matrix_to_axis_angle
from l2t_gs.errors import L2TError
from l2t_gs.rig import FlameRig, HeadModel

__all__ = ["FOCAL_OVER_SIZE", "FitResult", "fit_landmarks", "project"]

#: Focal length over the photo's longer side (about a 40 degree field of view across it).
FOCAL_OVER_SIZE = 1.4
#: Weight of the face outline's points (they slide along the silhouette as the head turns).
OVAL_WEIGHT = 0.3
#: The face-mesh model's relative depth over the true relief (measured on renders of the built-in head).
DEPTH_SCALE = 0.9
#: Weight of the depth term against the 2-D reprojection term (a fifth of it once the identity is free).
DEPTH_WEIGHT = 0.5
#: Rotation taking FLAME axes (+y up, face toward +z) to an OpenCV camera looking at the face.
_FLIP = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))


@dataclass
class FitResult:
    """The fitted rig parameters (unbatched, float32) and camera.

    ``params``: ``shape``, ``expr``, ``jaw_pose``, ``static_offset`` of the avatar's neutral frame;
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
    lz = np.asarray(landmarks)[:, 2] if np.asarray(landmarks).shape[1] > 2 else np.zeros(468)
    target_z = torch.as_tensor(lz - lz.mean(), dtype=dt)
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
    t0 = torch.as_tensor(tvec[:, 0], dtype=dt)

    aa = aa0.clone().requires_grad_(True)  # camera-space rotation
    trans = t0.clone().requires_grad_(True)
    shape = torch.zeros(rig.n_shape, dtype=dt, requires_grad=True)
    expr = torch.zeros(rig.n_expr, dtype=dt, requires_grad=True)
    jaw = torch.zeros(3, dtype=dt, requires_grad=True)
    offset = torch.zeros(rig.n_verts, 3, dtype=dt, requires_grad=True)
    lap = _laplacian(faces.numpy(), rig.n_verts).to(dt)
    scale_px = iod  # residuals in inter-ocular units
    c2 = 0.05**2

    def viewmat() -> Tensor:
        r = axis_angle_to_matrix(aa) @ _FLIP.to(dt)
        top = torch.cat([r, trans[:, None]], 1)
        return torch.cat([top, torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=dt)])

    def jaw_axis() -> Tensor:  # opening about x only, never closed past rest
        return torch.stack([jaw[0].clamp_min(0.0), jaw[0] * 0.0, jaw[0] * 0.0])

    def forward() -> tuple[Tensor, Tensor, Tensor]:
        verts = rig(shape=shape, expr=expr, jaw_pose=jaw_axis(),
                    static_offset=offset)[0]  # fmt: skip
        pts = points_on_mesh(corr, verts, faces)
        vm = viewmat()
        depth = pts @ vm[2, :3] + vm[2, 3]
        return verts, project(pts, vm, K), depth

    def data_term(proj: Tensor, depth: Tensor, depth_weight: float) -> Tensor:
        r2 = ((proj - target) ** 2).sum(-1) / scale_px**2
        loss = (weights * r2 / (r2 + c2)).sum() / weights.sum()
        # the face-mesh model's relative depth (same pixel scale as x, y; ~0.9 of the true relief)
        rel = (depth - depth.mean()) * f / depth.mean()
        rz2 = ((rel - DEPTH_SCALE * target_z) / scale_px) ** 2
        return loss + depth_weight * (weights * rz2 / (rz2 + c2)).sum() / weights.sum()

    history: list[float] = []
    # learning rates: radians, metres (translation), coefficients, metres (offsets)
    rigid = [{"params": [aa], "lr": 0.02}, {"params": [trans], "lr": 0.002}]
    stages = [(rigid, steps // 3, DEPTH_WEIGHT)]
    if fit_identity:
        full = rigid + [{"params": [shape, expr, jaw], "lr": 0.02}, {"params": [offset], "lr": 5e-4}]
        stages.append((full, steps - steps // 3, DEPTH_WEIGHT * 0.2))
    for groups, n, depth_weight in stages:
        opt = torch.optim.Adam([dict(g) for g in groups])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(n, 1), eta_min=1e-5)
        for _ in range(n):
            opt.zero_grad()
            _, proj, depth = forward()
            loss = data_term(proj, depth, depth_weight)
            if fit_identity:
                loss = loss + 2e-3 * (shape**2).sum() + 2e-3 * (expr**2).sum() + 0.05 * (jaw**2).sum()
                loss = loss + 1e-3 * torch.relu(-expr).sum()  # the components are one-sided
                lo = torch.sparse.mm(lap, offset)
                loss = loss + 40.0 * (lo**2).sum() + 2.0 * (offset**2).sum()
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
            "static_offset": offset.detach().float(),
        }
        return FitResult(
            params, viewmat().detach().float(), K.float(), verts.float(), proj.numpy(), float(err), history
        )
