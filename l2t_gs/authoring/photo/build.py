"""``build_photo_avatar``: one photo -> an avatar folder (splats, rig parameters, ``fit.json``).

Stated choices for awkward input: EXIF orientation is applied; grayscale photos are used as RGB
and the whole avatar is made grey (the template's eyes and mouth too); photos larger than
``max_side`` pixels are downscaled first (``fit.json`` then describes the downscaled size, which
``photo.png`` in the folder shows), unless the chosen face would then have fewer than
:data:`CROP_EYE_DISTANCE` pixels between the eyes: then a ``max_side`` window of the full-resolution
photo around the face is used instead (``fit.json`` and ``photo.png`` describe the window); with
several faces the largest is used unless ``face`` picks another (index in order of size). No face, a
face whose eyes are closer than ``min_eye_distance`` pixels, or a file that is not an image is a
one-line :class:`~l2t_gs.errors.L2TError`, and nothing is written: the folder is built in a temporary
sibling and renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import replace_dir
from l2t_gs.io.tempfiles import make_temp_dir

if TYPE_CHECKING:
    from l2t_gs.authoring.photo.landmarks import FaceMesh
    from l2t_gs.gaussians.avatar import GaussianAvatar

__all__ = [
    "CROP_EYE_DISTANCE",
    "MIN_EYE_DISTANCE",
    "PhotoAvatarConfig",
    "PhotoAvatarResult",
    "build_photo_avatar",
    "find_face",
    "fitted_avatar",
    "grey_sh",
    "load_photo",
    "photo_expression",
    "photo_face",
]

#: Smallest distance between the eye centres (pixels) of a usable face. The issue asked for 80 px;
#: scikit-image's 512-pixel astronaut photo has 43, so the default is lower (see docs/photo-avatar.md).
MIN_EYE_DISTANCE = 30.0
#: A face of a downscaled photo with fewer pixels than this between the eyes is taken from a
#: full-resolution window around it instead. Faces 29-38 px apart gained most from it (see
#: docs/photo-avatar.md); at 54-62 px the window changed little, and lost 4 dB on one 50-degree view.
CROP_EYE_DISTANCE = 40.0
FIT_JSON = "fit.json"
PHOTO_PNG = "photo.png"


@dataclass
class PhotoAvatarConfig:
    """Options of :func:`build_photo_avatar` (the flags of ``l2t-gs avatar from-photo``)."""

    splats: int | None = None  # None: the shipped default avatar's splats (40000)
    steps: int = 60  # photometric refinement steps
    seed: int = 0
    face: int | None = None  # which face (largest first); None: the largest
    min_eye_distance: float = MIN_EYE_DISTANCE
    max_side: int = 1024  # larger photos are downscaled to this
    fit_steps: int = 150
    name: str | None = None


@dataclass
class PhotoAvatarResult:
    out: Path
    fit: dict
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_photo(path: str | os.PathLike, max_side: int | None = 1024) -> tuple[np.ndarray, list[str]]:
    """An RGB uint8 photo ``[H, W, 3]`` with EXIF rotation applied, downscaled to ``max_side`` (None: full
    size); notes."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise L2TError(f"photo not found: {path}")
    if not p.is_file():
        raise L2TError(f"photo is not a file: {path}")
    notes: list[str] = []
    try:
        with Image.open(p) as im:
            im.load()
            rotated = ImageOps.exif_transpose(im)
            if rotated is not im:
                orientation = im.getexif().get(0x0112, 1)
                if orientation not in (None, 1):
                    notes.append(f"EXIF orientation {orientation} applied")
            img = rotated
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba)
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise L2TError(f"not a readable image: {path} ({type(exc).__name__})") from None
    except OSError as exc:
        raise L2TError(f"cannot read image {path}: {exc}") from None
    if _is_grey(rgb):
        notes.append("grayscale photo: the whole avatar will be grey (the template's eyes and mouth too)")
    h, w = rgb.shape[:2]
    if min(h, w) < 32:
        raise L2TError(f"photo too small: {w}x{h} pixels")
    if max_side is not None and max(h, w) > max_side:
        rgb, note = _downscale(rgb, max_side)
        notes.append(note)
    return rgb, notes


def _downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, str]:
    """``rgb`` resized to ``max_side`` on its longer side, and the note that says so."""
    import cv2

    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    small = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return small, f"downscaled from {w}x{h} to {small.shape[1]}x{small.shape[0]}"


def photo_face(
    path: str | os.PathLike,
    face: int | None = None,
    min_eye_distance: float = MIN_EYE_DISTANCE,
    max_side: int = 1024,
) -> tuple[np.ndarray, FaceMesh, list[str]]:
    """The photo as the avatar is fitted to (``[H, W, 3]`` uint8, at most ``max_side`` pixels), its chosen
    face and notes.

    A larger photo is downscaled, and the faces are found on that. If the chosen face then has fewer
    than :data:`CROP_EYE_DISTANCE` pixels between the eyes, a ``max_side`` window of the
    full-resolution photo centred on it is used instead, where its eyes are farther apart.
    """
    full, notes = load_photo(path, None)
    h, w = full.shape[:2]
    if max(h, w) <= max_side:
        mesh, more = find_face(full, face, min_eye_distance, f"{path}")
        return full, mesh, notes + more
    small, downscaled = _downscale(full, max_side)
    scale = max(h, w) / max_side  # full-resolution pixels per downscaled pixel
    mesh, more = find_face(small, face, 0.0, f"{path}")
    rgb, note = small, downscaled
    if mesh.iod < CROP_EYE_DISTANCE and scale >= 1.2:  # small, and the full resolution has more to give
        # a window of the full-resolution photo around the face (the nose tip's point at its centre)
        cw, ch = min(w, max_side), min(h, max_side)
        cx, cy = mesh.points[1, :2] * scale
        x0 = int(np.clip(round(cx - cw / 2), 0, w - cw))
        y0 = int(np.clip(round(cy - ch / 2), 0, h - ch))
        window = np.ascontiguousarray(full[y0 : y0 + ch, x0 : x0 + cw])
        centre = np.array([cx - x0, cy - y0])
        meshes = _face_meshes(window)
        if meshes:  # always, for a face found downscaled; else the downscaled photo stays
            mesh = min(meshes, key=lambda m: float(np.linalg.norm(m.points[1, :2] - centre)))
            rgb = window
            note = (
                f"{w}x{h} photo: using the {cw}x{ch} window at ({x0}, {y0}) around the face at full resolution "
                f"({mesh.iod:.0f} px between the eyes; downscaled to {small.shape[1]}x{small.shape[0]} it would "
                f"have {mesh.iod / scale:.0f})"
            )
    _check_size(mesh, min_eye_distance, f"{path}")
    return rgb, mesh, [*notes, note, *more]


def _landmark_distance(a: np.ndarray, b: np.ndarray) -> float:
    from l2t_gs.authoring.photo.landmarks import inter_ocular

    return float(np.linalg.norm(a[:, :2] - b[:, :2], axis=1).mean() / inter_ocular(b))


def photo_expression(fit_json: str | os.PathLike, avatar: GaussianAvatar) -> dict[str, torch.Tensor]:
    """Rig inputs (unbatched) that pose ``avatar`` as its photo shows the face, from a ``fit.json``:
    the photo's ``expr`` and ``jaw_pose``, and ``static_offset`` with the photo's lip displacement.

    Only what fits ``avatar`` (a head with as many components and vertices) is returned; ``{}`` when
    the file stores no expression (a camera file of another origin).
    """
    try:
        data = json.loads(Path(fit_json).read_text(encoding="utf-8")).get("photo_expression") or {}
        shown = {k: torch.tensor(data[k], dtype=torch.float32) for k in ("expr", "jaw_pose") if k in data}
        lip = data.get("lip_offset") or {"vertices": [], "xyz": []}
        ids = torch.tensor(lip["vertices"], dtype=torch.long)
        xyz = torch.tensor(lip["xyz"], dtype=torch.float32).reshape(len(ids), 3)
    except (OSError, ValueError, TypeError, AttributeError, KeyError, RuntimeError) as exc:
        raise L2TError(f"{fit_json}: unreadable photo_expression ({type(exc).__name__}: {exc})") from None
    if any(not torch.isfinite(v).all() for v in (*shown.values(), xyz)):
        raise L2TError(f"{fit_json}: photo_expression must hold finite numbers")
    neutral = avatar.neutral_params
    out = {k: v for k, v in shown.items() if tuple(v.shape) == tuple(neutral[k].shape)}
    static = neutral.get("static_offset")
    if len(ids) and static is not None and int(ids.min()) >= 0 and int(ids.max()) < static.shape[0]:
        out["static_offset"] = static.float().index_add(0, ids, xyz)
    return out


def fitted_avatar(
    base: GaussianAvatar, params: dict[str, torch.Tensor], name: str | None = None, notes: str = ""
) -> tuple[GaussianAvatar, torch.Tensor]:
    """``base``'s splats on the fitted head (a fit's ``params``): the avatar, whose neutral frame is the
    rest face it talks from (:func:`~l2t_gs.authoring.photo.fit.rest_params`), and the vertices ``[V, 3]``
    of the face as the photo shows it, where the photo's colours are projected."""
    from l2t_gs.authoring.photo.fit import photo_pose, rest_params
    from l2t_gs.gaussians.avatar import GaussianAvatar, default_neutral_params

    neutral = default_neutral_params(base.head_model)
    neutral.update(rest_params(params, base.head_model))
    avatar = GaussianAvatar(
        means=base.means, log_scales=base.log_scales, quats=base.quats, opacity_logits=base.opacity_logits,
        sh=base.sh.clone(), binding=base.binding, head_model=base.head_model, neutral_params=neutral,
        head_model_spec=base.head_model_spec, name=name or base.name, notes=notes,
    )  # fmt: skip
    return avatar, avatar.vertices_from_params(photo_pose(params))[0]


def _is_grey(rgb: np.ndarray) -> bool:
    """A grey photo ``[H, W, 3]`` uint8: its channels differ by at most 2 levels anywhere (JPEG noise)."""
    return int(np.ptp(rgb.astype(np.int16), axis=2).max()) <= 2


def grey_sh(sh: torch.Tensor) -> torch.Tensor:
    """Spherical-harmonic colours ``[N, K, 3]`` made grey: each coefficient's Rec. 601 luma in all channels."""
    luma = sh @ torch.tensor([0.299, 0.587, 0.114], dtype=sh.dtype)
    return luma[..., None].expand_as(sh).clone()


def _photo_expression_json(params: dict[str, torch.Tensor]) -> dict:
    """``fit.json``'s ``photo_expression``: expression, jaw and the lips' own offsets (metres)."""
    lip = params["lip_offset"].double()
    ids = (lip.abs().sum(1) > 0).nonzero().squeeze(1)
    return {
        "expr": np.round(params["expr"].double().numpy(), 5).tolist(),
        "jaw_pose": np.round(params["jaw_pose"].double().numpy(), 5).tolist(),
        "lip_offset": {"vertices": ids.tolist(), "xyz": np.round(lip[ids].numpy(), 7).tolist()},
    }


def _lip_gap_mm(verts: torch.Tensor) -> float:
    """Midline lip gap (mm) of the built-in head's vertices ``[V, 3]``."""
    from l2t_gs.motion.articulation import builtin_lip_pair

    upper, lower = builtin_lip_pair()
    return float((verts[upper] - verts[lower]).norm()) * 1000.0


def _face_meshes(rgb: np.ndarray) -> list[FaceMesh]:
    """Every detection the face-mesh model confirms, largest (eye distance) first."""
    from l2t_gs.authoring.photo.landmarks import detect_faces, face_mesh

    meshes = [face_mesh(rgb, f) for f in detect_faces(rgb)[:10]]
    return sorted((m for m in meshes if m.score >= 0.5), key=lambda m: -m.iod)


def _check_size(mesh: FaceMesh, min_eye_distance: float, what: str) -> None:
    if mesh.iod < min_eye_distance:
        raise L2TError(
            f"face too small in {what}: {mesh.iod:.0f} px between the eyes, at least {min_eye_distance:.0f} needed"
        )


def find_face(rgb: np.ndarray, face: int | None, min_eye_distance: float, what: str) -> tuple[FaceMesh, list[str]]:
    """The face-mesh of face ``face`` of ``rgb [H, W, 3]`` (largest first; None: the largest) and notes.

    One-line errors: no face in ``what``, no such index, fewer than ``min_eye_distance`` pixels between
    the eyes."""
    meshes = _face_meshes(rgb)
    if not meshes:
        raise L2TError(f"no face found in {what}")
    notes = []
    if face is not None:
        if not 0 <= face < len(meshes):
            raise L2TError(f"--face {face}: {what} has {len(meshes)} face(s) (indices 0..{len(meshes) - 1})")
        mesh = meshes[face]
    else:
        mesh = meshes[0]
        if len(meshes) > 1:
            notes.append(f"{len(meshes)} faces found; using the largest (--face INDEX picks another, largest first)")
    _check_size(mesh, min_eye_distance, what)
    return mesh, notes


def build_photo_avatar(
    photo: str | os.PathLike, out_dir: str | os.PathLike, cfg: PhotoAvatarConfig | None = None
) -> PhotoAvatarResult:
    """Build a talking avatar from one photo and write it to ``out_dir`` (atomically)."""
    from PIL import Image

    from l2t_gs.authoring.avatar import build_default_avatar
    from l2t_gs.authoring.photo import appearance
    from l2t_gs.authoring.photo.fit import fit_landmarks
    from l2t_gs.gaussians.avatar_io import check_avatar_out_dir, load_avatar, save_avatar
    from l2t_gs.render.sh import rgb_to_sh

    cfg = cfg or PhotoAvatarConfig()
    t0 = time.perf_counter()
    out = check_avatar_out_dir(out_dir)
    parent = out.parent
    if cfg.steps < 0 or cfg.fit_steps < 3:
        raise L2TError(f"steps must be >= 0 and fit steps >= 3, got {cfg.steps}, {cfg.fit_steps}")

    rgb, mesh, notes = photo_face(photo, cfg.face, cfg.min_eye_distance, cfg.max_side)
    h, w = rgb.shape[:2]

    base = load_avatar("default") if cfg.splats is None else build_default_avatar(num_splats=cfg.splats, seed=cfg.seed)
    fit = fit_landmarks(mesh.points, w, h, base.head_model, steps=cfg.fit_steps)
    avatar, verts = fitted_avatar(
        base, fit.params, cfg.name or out.resolve().name,
        f"from photo {Path(photo).name} (l2t_gs.authoring.photo, seed {cfg.seed})",
    )  # fmt: skip
    photo_f = rgb.astype(np.float32) / 255.0
    mouth = appearance.mouth_opening_mask(mesh.points, w, h)  # teeth / interior: only they take colours from there
    colors = appearance.photo_colors(avatar, verts, photo_f, fit.viewmat, fit.K, opening=mouth)
    sh = torch.zeros(avatar.num_splats, 1, 3)
    sh[:, 0] = rgb_to_sh(torch.as_tensor(colors.colors, dtype=torch.float32))
    avatar.sh = sh
    region = appearance.face_region_mask(mesh.points, w, h)
    before, _ = appearance.render_view(avatar, verts, fit.viewmat, fit.K, w, h)
    psnr_projected = appearance.psnr(before, photo_f, region)
    if cfg.steps > 0:
        avatar, _ = appearance.refine(
            avatar,
            verts,
            photo_f,
            fit.viewmat,
            fit.K,
            region & ~mouth,
            colors.direct > 0.3,
            colors.visible,
            steps=cfg.steps,
            seed=cfg.seed,
        )
    if _is_grey(rgb):  # the template's eyes and mouth too
        avatar.sh = grey_sh(avatar.sh)
    render, _ = appearance.render_view(avatar, verts, fit.viewmat, fit.K, w, h)
    face_psnr = appearance.psnr(render, photo_f, region)
    render_u8 = (np.clip(render, 0, 1) * 255 + 0.5).astype(np.uint8)
    try:
        again, _ = find_face(render_u8, None, 0.0, "the re-render")
        rerender_error: float | None = _landmark_distance(again.points, mesh.points)
    except L2TError:
        rerender_error = None
        notes.append("the face-mesh model finds no face in the re-render")

    info = {
        "width": w,
        "height": h,
        "K": fit.K.double().numpy().round(6).tolist(),
        "viewmat": fit.viewmat.double().numpy().round(8).tolist(),
        "landmark_error_iod": round(fit.error_iod, 5),
        "rerender_landmark_error_iod": None if rerender_error is None else round(rerender_error, 5),
        "face_psnr_db": round(face_psnr, 3),
        "face_psnr_projected_db": round(psnr_projected, 3),
        "eye_distance_px": round(mesh.iod, 2),
        "head_rotation_deg": np.round(fit.head_rotation_deg, 3).tolist(),
        "photo_expression": _photo_expression_json(fit.params),
        "rest_lip_gap_mm": round(_lip_gap_mm(avatar.neutral_vertices()), 3),
        "photo": Path(photo).name,
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    tmp = make_temp_dir(parent, out.name)
    try:
        folder = tmp / "avatar"
        save_avatar(avatar, folder)
        Image.fromarray(rgb).save(folder / PHOTO_PNG, format="PNG")
        (folder / FIT_JSON).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        replace_dir(folder, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return PhotoAvatarResult(out, info, notes, time.perf_counter() - t0)
