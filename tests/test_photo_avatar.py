"""``l2t-gs avatar from-photo``: landmarks, correspondence, fit, appearance, bad input, talking."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from l2t_gs.authoring.photo import landmarks as lm
from l2t_gs.authoring.photo.appearance import (
    face_region_mask,
    mouth_opening_mask,
    photo_colors,
    psnr,
    refine,
    render_view,
)
from l2t_gs.authoring.photo.build import (
    PhotoAvatarConfig,
    _lip_gap_mm,
    build_photo_avatar,
    find_face,
    fitted_avatar,
    grey_sh,
    load_photo,
    photo_expression,
    photo_face,
)
from l2t_gs.authoring.photo.correspondence import load_correspondence, points_on_mesh
from l2t_gs.authoring.photo.fit import (
    _FLIP,
    REST_ZEROED,
    face_mesh_depth,
    fit_landmarks,
    head_down,
    lip_contact_pairs,
    photo_pose,
    project,
    rest_params,
)
from l2t_gs.cli import avatar as avatar_cli
from l2t_gs.errors import L2TError
from l2t_gs.gaussians import load_avatar
from l2t_gs.gaussians.avatar import GaussianAvatar
from l2t_gs.motion.articulation import builtin_lip_pair
from l2t_gs.render import intrinsics, look_at, rasterize, to_uint8
from l2t_gs.render.camera import camera_from_json
from l2t_gs.render.sh import SH_C0, rgb_to_sh

ASTRONAUT = Path(__file__).parent / "data" / "photos" / "astronaut.jpg"
OBAMA = Path(__file__).parent / "data" / "photos" / "obama.jpg"
CAMERA = Path(__file__).parent / "data" / "photos" / "camera.jpg"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


@pytest.fixture(scope="module")
def default_avatar() -> GaussianAvatar:
    return load_avatar("default")


@pytest.fixture(scope="module")
def astronaut_fit(astronaut: np.ndarray, default_avatar: GaussianAvatar):
    mesh, _ = find_face(astronaut, None, 30.0, "astronaut")
    fit = fit_landmarks(mesh.points, 512, 512, default_avatar.head_model, steps=90)
    return mesh, fit


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    c = (np.trace(a.T @ b) - 1) / 2
    return math.degrees(math.acos(float(np.clip(c, -1, 1))))


# ------------------------------------------------------------------------------------------ landmarks
def test_landmark_model_finds_the_astronaut(astronaut: np.ndarray) -> None:
    faces = lm.detect_faces(astronaut)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box
    assert x0 < 222 < x1 and y0 < 128 < y1  # her nose tip, located by hand
    mesh = lm.face_mesh(astronaut, faces[0])
    assert mesh.score > 0.9
    p = mesh.points
    assert 35 < mesh.iod < 55
    eyes_y = p[list(lm.EYE_CORNERS), 1].mean()
    # anatomy: subject's right eye on the image left, nose between the eyes and below them, mouth below the nose
    assert p[33, 0] < p[1, 0] < p[263, 0]
    assert eyes_y < p[1, 1] < p[13, 1] < p[14, 1] < p[152, 1]
    assert abs(p[1, 0] - 222) < 8 and abs(p[1, 1] - 128) < 8


def test_landmark_model_reads_a_second_portrait() -> None:
    """Obama's official portrait (512x640): one face, the nose tip where located by hand, the smile open."""
    photo = np.asarray(Image.open(OBAMA).convert("RGB"))
    faces = lm.detect_faces(photo)
    assert len(faces) == 1
    mesh = lm.face_mesh(photo, faces[0])
    p = mesh.points
    assert mesh.score > 0.9 and 50 < mesh.iod < 70  # eye centres about 63 px apart by hand
    assert abs(p[1, 0] - 272) < 8 and abs(p[1, 1] - 157) < 8  # nose tip, located by hand
    assert p[33, 0] < p[1, 0] < p[263, 0] and p[61, 0] < p[13, 0] < p[291, 0]
    assert (p[14, 1] - p[13, 1]) / mesh.iod > 0.2  # his teeth show: the inner lips are apart


def test_a_turned_grey_photo_is_found_and_fitted(default_avatar: GaussianAvatar) -> None:
    """scikit-image's CC0 "camera" photo: a grey three-quarter view (17 px between the eyes as seen). The
    default minimum refuses it; with a lower one the model puts his nose tip where located by hand and the
    fit turns the head about 50 degrees toward the image right (where he looks), upright."""
    photo = np.asarray(Image.open(CAMERA).convert("RGB"))
    with pytest.raises(L2TError, match="face too small"):
        find_face(photo, None, 30.0, "camera")
    mesh, _ = find_face(photo, None, 10.0, "camera")
    assert abs(mesh.points[4, 0] - 253) < 6 and abs(mesh.points[4, 1] - 168) < 6  # nose tip (by hand)
    fit = fit_landmarks(mesh.points, 512, 512, default_avatar.head_model, steps=90)
    r = fit.viewmat[:3, :3].double().numpy() @ _FLIP.numpy()  # the head's rotation in the camera
    yaw = math.degrees(math.atan2(r[0, 2], r[2, 2]))  # minus the face direction's x: < 0 toward the image right
    assert -65 < yaw < -40 and abs(math.degrees(math.atan2(r[1, 0], r[1, 1]))) < 15  # -53 and 0 measured
    assert fit.error_iod < 0.1


# ------------------------------------------------------------------------------------------ correspondence
def test_correspondence_maps_points_to_their_regions(default_avatar: GaussianAvatar) -> None:
    corr = load_correspondence()
    model = default_avatar.head_model
    faces = model.faces.numpy()
    tri_verts = faces[corr.face]  # [468, 3]
    verts = model.v_template.numpy()
    pts = points_on_mesh(corr, model.v_template.double(), model.faces).numpy()
    assert np.allclose(corr.bary.sum(1), 1, atol=1e-5) and (corr.bary >= -1e-6).all()

    def share_in(indices: tuple[int, ...], region: str) -> float:
        mask = np.zeros(len(verts), bool)
        mask[model.masks[region].numpy()] = True
        return float(mask[tri_verts[list(indices)]].any(1).mean())

    assert share_in(lm.LIPS_OUTER + lm.LIPS_INNER, "lips") >= 0.9
    assert share_in((33, 133, 362, 263, 159, 145, 386, 374), "eye_region") == 1.0
    assert share_in((1, 4), "nose") == 1.0
    assert share_in(lm.FACE_OVAL, "lips") == 0.0
    # sides: the subject's right (image left in a photo) is -x on the head; mirror pairs are symmetric
    for right, left in ((33, 263), (133, 362), (61, 291), (159, 386), (234, 454)):
        assert pts[right, 0] < -0.01 and pts[left, 0] > 0.01
        assert abs(pts[right, 0] + pts[left, 0]) < 0.006 and abs(pts[right, 1] - pts[left, 1]) < 0.006
    # order from top to bottom: brows/eyes, nose tip, upper lip, lower lip, chin
    assert pts[159, 1] > pts[1, 1] > pts[13, 1] > pts[14, 1] > pts[152, 1]


# ------------------------------------------------------------------------------------------ fit
def _camera(yaw: float, pitch: float, size: int, roll: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """viewmat [4, 4] and K [3, 3] of a camera 0.9 m from the head, turned ``yaw``, tilted ``pitch`` and
    rolled about its axis ``roll`` degrees, focal length 1.4 x size (the fit's)."""
    az, el = math.radians(yaw), math.radians(pitch)
    eye = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)]) * 0.9
    view = look_at(eye + np.array([0.0, -0.01, 0.0]), (0.0, -0.01, 0.0))
    c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    view = torch.tensor([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=view.dtype) @ view
    return view, intrinsics(None, size, size, focal=1.4 * size)


def _render_head(
    avatar: GaussianAvatar, verts: torch.Tensor, yaw: float, pitch: float, size: int
) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """A render (uint8 [size, size, 3]) of ``avatar`` on ``verts`` from :func:`_camera`; its viewmat and K."""
    view, k = _camera(yaw, pitch, size)
    with torch.no_grad():
        rgb, _, _ = rasterize(
            **avatar.splat_params(verts), viewmats=view[None], Ks=k[None], width=size, height=size,
            backgrounds=torch.ones(1, 3), backend="torch",
        )  # fmt: skip
    return to_uint8(rgb[0]), view, k


@pytest.mark.slow
def test_fit_recovers_pose_of_a_rendered_head(default_avatar: GaussianAvatar) -> None:
    shape = torch.tensor([0.6, -0.5, 0.4, 0.0, 0.3, 0.0, -0.4, 0.0])
    verts = default_avatar.vertices_from_params({"shape": shape})[0]
    size = 384
    image, view, k = _render_head(default_avatar, verts, 20.0, -6.0, size)
    mesh, _ = find_face(image, None, 10.0, "render")
    fit = fit_landmarks(mesh.points, size, size, default_avatar.head_model, steps=120)
    # 2.7 degrees measured (3.2 before the face-mesh depth's tilt was undone), see docs/photo-avatar.md
    assert _angle_deg(fit.viewmat[:3, :3].double().numpy(), view[:3, :3].double().numpy()) < 3.0
    # landmarks: the fitted mesh's points against the face-mesh model's, and against the true mesh's
    assert fit.error_iod < 0.02
    corr = load_correspondence()
    truth = project(points_on_mesh(corr, verts.double(), default_avatar.faces), view.double(), k.double()).numpy()
    iod = lm.inter_ocular(mesh.points)
    assert np.linalg.norm(fit.projected - truth, axis=1).mean() / iod < 0.1
    # the camera distance is recovered up to the identity's scale
    assert abs(float(fit.viewmat[2, 3]) - 0.9) < 0.15


@pytest.mark.slow
def test_depth_convention_is_what_the_renders_measure() -> None:
    """The fit's depth scale and tilt are the medians ``calibrate_depth`` measures on renders of the
    default avatar, and every render shows the tilt (the model's frontal face is pitched against the head's)."""
    from l2t_gs.authoring.photo.fit import DEPTH_SCALE, DEPTH_TILT, calibrate_depth

    scale, tilt, table = calibrate_depth()
    assert abs(scale - DEPTH_SCALE) < 0.01 and abs(tilt - DEPTH_TILT) < 0.01
    assert (table[:, 1] > 0.05).all() and (np.abs(table[:, 0] - 1.0) < 0.15).all()


def _exact_landmarks(avatar: GaussianAvatar, verts: torch.Tensor, view: torch.Tensor, k: torch.Tensor) -> np.ndarray:
    """What a perfect face-mesh model would report for ``verts [V, 3]`` (float64) seen by ``view``, ``k``:
    the correspondence points' pixels and their relative depth as the model scales and tilts it ``[468, 3]``."""
    pts = points_on_mesh(load_correspondence(), verts, avatar.faces)
    depth = pts @ view[2, :3] + view[2, 3]
    uv = project(pts, view, k).numpy()
    true = ((depth - depth.mean()) * k[0, 0] / depth.mean()).numpy()
    return np.concatenate([uv, face_mesh_depth(uv, true, head_down(view))[:, None]], 1)


@pytest.mark.parametrize(("yaw", "pitch", "roll"), [(0.0, 0.0, 0.0), (40.0, -8.0, 0.0), (15.0, 5.0, 70.0)])
def test_fit_recovers_pose_from_exact_landmarks(
    default_avatar: GaussianAvatar, yaw: float, pitch: float, roll: float
) -> None:
    """The fitter alone: landmarks that are the true mesh's correspondence points (and their relative
    depth, as the face-mesh model reports it: tilted along the head's own down axis, which a rolled
    camera turns in the image) give back the pose, with the identity unknown to the fit."""
    shape = torch.tensor([0.6, -0.5, 0.4, 0.0, 0.3, 0.0, -0.4, 0.0])
    verts = default_avatar.vertices_from_params({"shape": shape})[0].double()
    size = 384
    view, k = (t.double() for t in _camera(yaw, pitch, size, roll))
    marks = _exact_landmarks(default_avatar, verts, view, k)
    fit = fit_landmarks(marks, size, size, default_avatar.head_model, steps=90)
    assert _angle_deg(fit.viewmat[:3, :3].double().numpy(), view[:3, :3].numpy()) < 1.0  # 0.2-0.4 measured
    assert fit.error_iod < 0.01


@pytest.mark.slow
def test_fit_reaches_a_wide_outline(default_avatar: GaussianAvatar) -> None:
    """Exact landmarks of the built-in head with the face outline pushed 0.15 eye distances outward (a face
    wider than the head): the fitted head's projected silhouette reaches the outline points, and the
    camera stays put (the coverage term widens the head instead of turning it)."""
    from l2t_gs.authoring.photo.fit import _outline_vertices
    from l2t_gs.authoring.photo.landmarks import FACE_OVAL

    verts = default_avatar.neutral_vertices().double()
    size = 384
    view, k = (t.double() for t in _camera(10.0, -3.0, size))
    marks = _exact_landmarks(default_avatar, verts, view, k)
    oval = list(FACE_OVAL)
    iod = lm.inter_ocular(marks)
    centre = marks[oval, :2].mean(0)
    radial = marks[oval, :2] - centre
    marks[oval, :2] += 0.15 * iod * radial / np.linalg.norm(radial, axis=1, keepdims=True)
    fit = fit_landmarks(marks, size, size, default_avatar.head_model, steps=90)
    # the silhouette's reach toward each outline point (numpy, brute force over the outer vertices)
    p = project(fit.verts.double()[_outline_vertices(default_avatar.head_model)], fit.viewmat.double(),
                fit.K.double()).numpy()  # fmt: skip
    shortfall = []
    for q in marks[oval, :2]:
        u = (q - centre) / np.linalg.norm(q - centre)
        d = p - centre
        along = d @ u
        across = np.abs(d[:, 0] * u[1] - d[:, 1] * u[0])
        reach = along[across < 0.05 * np.linalg.norm(q - centre)].max()
        shortfall.append(max(0.0, np.linalg.norm(q - centre) - reach) / iod)
    # pushed out by 0.15; 0.0 measured (without the coverage term: mean 0.027)
    assert np.mean(shortfall) < 0.01 and np.max(shortfall) < 0.04
    assert _angle_deg(fit.viewmat[:3, :3].double().numpy(), view[:3, :3].numpy()) < 2.0


@pytest.mark.slow
def test_fit_on_the_astronaut(astronaut_fit) -> None:
    mesh, fit = astronaut_fit
    assert fit.error_iod < 0.03
    r = fit.viewmat[:3, :3].double() @ _FLIP
    assert _angle_deg(r.numpy(), np.eye(3)) < 15  # she faces the camera
    assert fit.K[0, 2] == 256 and fit.K[1, 2] == 256


def _occluders():  # noqa: ANN202 - the study script's module (docs/scripts is not a package)
    import importlib.util

    path = Path(__file__).parents[1] / "docs" / "scripts" / "photo_occluders.py"
    spec = importlib.util.spec_from_file_location("photo_occluders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fit_holds_under_drawn_glasses_hat_and_beard(astronaut, default_avatar) -> None:
    """Occluders drawn on the astronaut (docs/scripts/photo_occluders.py): the face is still found and
    fitted (as ``avatar from-photo`` fits, 150 steps), and the fit moves by a few degrees and a few
    hundredths of the eye distance (measured: glasses 3.7 deg / 0.027, hat 1.2 / 0.016, beard 5.6 /
    0.041; docs/photo-avatar.md)."""
    steps = PhotoAvatarConfig().fit_steps
    clean, _ = find_face(astronaut, None, 30.0, "astronaut")
    ref = fit_landmarks(clean.points, 512, 512, default_avatar.head_model, steps=steps)
    iod = lm.inter_ocular(clean.points)
    for kind, max_deg, max_shift in (("glasses", 5.0, 0.04), ("hat", 2.5, 0.025), ("beard", 7.5, 0.055)):
        img, mask = _occluders().draw(astronaut, clean.points, kind)
        assert mask.any() and (img[mask > 0] != astronaut[mask > 0]).any()
        mesh, _ = find_face(img, None, 30.0, kind)
        fit = fit_landmarks(mesh.points, 512, 512, default_avatar.head_model, steps=steps)
        turn = _angle_deg(fit.viewmat[:3, :3].double().numpy(), ref.viewmat[:3, :3].double().numpy())
        shift = float(np.linalg.norm(np.asarray(fit.projected) - np.asarray(ref.projected), axis=1).mean() / iod)
        assert fit.error_iod < 0.03 and turn < max_deg and shift < max_shift, (kind, fit.error_iod, turn, shift)


# ------------------------------------------------------------------------------------------ appearance
def _coloured(avatar: GaussianAvatar, mesh, fit, photo: np.ndarray) -> tuple[GaussianAvatar, torch.Tensor, object]:
    """As ``build_photo_avatar`` does: the fitted avatar, the photo-pose vertices, projected colours."""
    a, verts = fitted_avatar(avatar, fit.params)
    opening = mouth_opening_mask(mesh.points, photo.shape[1], photo.shape[0])
    colors = photo_colors(a, verts, photo, fit.viewmat, fit.K, opening=opening)
    sh = torch.zeros(a.num_splats, 1, 3)
    sh[:, 0] = rgb_to_sh(torch.as_tensor(colors.colors, dtype=torch.float32))
    a.sh = sh
    return a, verts, colors


def test_colours_inside_the_mouth_opening(default_avatar: GaussianAvatar) -> None:
    """Only the teeth and the mouth interior take colours from the photo's mouth opening, and only from there;
    the lips' edge over the opening takes the photo's colour only where it is darker than the lips."""
    from l2t_gs.authoring.photo.appearance import _face_mask_of_regions
    from l2t_gs.render import head_camera

    a = default_avatar
    verts = a.vertices_from_params({"jaw_pose": torch.tensor([0.3, 0.0, 0.0])})[0]  # mouth open
    view, k = head_camera("front", verts, 160, 160)
    corr = load_correspondence()
    p = project(points_on_mesh(corr, verts.double(), a.faces), view[0].double(), k[0].double()).numpy()
    opening = np.zeros((160, 160), bool)
    x0, y0 = np.floor(p[[78, 308, 13, 14], :2].min(0)).astype(int)
    x1, y1 = np.ceil(p[[78, 308, 13, 14], :2].max(0)).astype(int)
    opening[y0 : y1 + 1, x0 : x1 + 1] = True
    photo = np.empty((160, 160, 3), np.float32)
    photo[:] = (0.8, 0.2, 0.1)  # skin and lips
    photo[opening] = (1.0, 1.0, 1.0)  # "teeth" in the opening
    colors = photo_colors(a, verts, photo, view[0], k[0], opening=opening)
    binding = a.binding.numpy()
    mouth = _face_mask_of_regions(a, ("teeth_upper", "teeth_lower", "mouth_interior"))[binding]
    white = colors.colors.min(1) > 0.9
    assert white[mouth].sum() >= 20  # teeth seen through the opening take its colour ...
    assert not white[~mouth].any()  # ... and nothing else does, the lips included
    lips = _face_mask_of_regions(a, ("lips",))[binding]
    # the lips keep the photo's lip colour (green 0.2; unseen ones plus the template's brightness variation,
    # mean 0.28 measured); at the opening's border the photo's blur leaks a little (max 0.59)
    assert colors.colors[lips, 1].mean() < 0.35 and colors.colors[lips, 1].max() < 0.65
    assert not colors.direct[mouth].any() and colors.keep[mouth].all()  # not refined
    without = photo_colors(a, verts, photo, view[0], k[0])  # no opening given: teeth stay the template's
    default = np.clip(a.sh[:, 0].double().numpy() * SH_C0 + 0.5, 0, 1)
    assert np.allclose(without.colors[mouth], default[mouth], atol=1e-6)


@pytest.mark.slow
def test_photo_colours_and_refinement_raise_psnr(astronaut, astronaut_fit, default_avatar) -> None:
    mesh, fit = astronaut_fit
    photo = astronaut.astype(np.float32) / 255
    region = face_region_mask(mesh.points, 512, 512)
    template, _ = render_view(default_avatar, default_avatar.neutral_vertices(), fit.viewmat, fit.K, 512, 512)
    a, verts, colors = _coloured(default_avatar, mesh, fit, photo)
    projected, _ = render_view(a, verts, fit.viewmat, fit.K, 512, 512)
    assert psnr(projected, photo, region) > psnr(template, photo, region) + 3
    refined, losses = refine(a, verts, photo, fit.viewmat, fit.K, region, colors.direct > 0.05, colors.visible,
                             steps=6, max_side=64)  # fmt: skip
    assert losses[-1] < losses[0]
    after, _ = render_view(refined, verts, fit.viewmat, fit.K, 512, 512)
    assert psnr(after, photo, region) > psnr(projected, photo, region) + 0.3
    # template regions keep their colours; nothing but colours, opacities, offsets and scales change
    assert torch.equal(refined.sh[colors.keep], a.sh[colors.keep])
    assert torch.equal(refined.binding, a.binding) and torch.equal(refined.quats, a.quats)


@pytest.mark.slow
def test_the_photo_avatar_talks(astronaut, astronaut_fit, default_avatar) -> None:
    """Frames made as the motion model makes them: the avatar's rest face plus the built-in head's
    articulation (``vertices = rest + rig(expr, jaw) - rig(0, 0)``)."""
    mesh, fit = astronaut_fit
    a, _, _ = _coloured(default_avatar, mesh, fit, astronaut.astype(np.float32) / 255)
    names = list(a.head_model.expr_names)
    closed = torch.zeros(len(names))
    closed[names.index("lip_close")] = 1.0
    closed[names.index("lip_press")] = 0.5
    rest, template = a.neutral_vertices(), default_avatar.neutral_vertices()

    def frame(**params: torch.Tensor) -> torch.Tensor:
        return rest + default_avatar.vertices_from_params(params)[0] - template

    frames = {"bilabial": frame(expr=closed), "open": frame(jaw_pose=torch.tensor([0.3, 0.0, 0.0]))}
    # the lips rest as the template's and close where the template's close (the closure's < 1 mm)
    assert abs(_lip_gap_mm(rest) - _lip_gap_mm(template)) < 0.1
    assert _lip_gap_mm(frames["bilabial"]) < 0.1 and _lip_gap_mm(frames["open"]) > 8
    images = {k: render_view(a, v, fit.viewmat, fit.K, 512, 512)[0] for k, v in frames.items()}
    corr = load_correspondence()
    mouth = {}
    for k, v in frames.items():
        p = project(points_on_mesh(corr, v.double(), a.faces), fit.viewmat.double(), fit.K.double()).numpy()
        mouth[k] = (p[13] + p[14]) / 2  # between the inner lips
    x, y = np.round(mouth["open"]).astype(int)
    lum = {k: float(img[y - 2 : y + 3, x - 3 : x + 4].mean()) for k, img in images.items()}
    assert lum["open"] < lum["bilabial"] - 0.15  # the open mouth shows its dark interior
    diff = np.abs(images["open"] - images["bilabial"]).mean(-1)
    mx, my = np.round(mouth["bilabial"]).astype(int)
    assert diff[my - 6 : my + 7, mx - 10 : mx + 11].mean() > 0.05
    assert diff[:60].max() < 1e-6  # above the head nothing moves


def test_lip_contact_pairs_face_each_other(default_avatar: GaussianAvatar) -> None:
    model = default_avatar.head_model
    lower, upper = lip_contact_pairs(model)
    assert len(lower) >= 10 and len(set(lower.tolist())) == len(lower)
    assert set(lower.tolist()) <= set(model.masks["lip_lower"].tolist())
    assert set(upper.tolist()) <= set(model.masks["lip_upper"].tolist())
    v = model.v_template.double().numpy()
    assert np.linalg.norm(v[lower] - v[upper], axis=1).max() < 3e-3
    mid_upper, mid_lower = builtin_lip_pair()
    assert upper[lower.tolist().index(mid_lower)] == mid_upper  # the midline pair is one of them
    # left and right alike: the pairs mirror each other (x -> -x)
    pts = v[lower]
    mirror = np.abs(pts[:, None, 0] + pts[None, :, 0]) + np.abs(pts[:, None, 1:] - pts[None, :, 1:]).sum(-1)
    assert mirror.min(1).max() < 1e-4


def test_rest_params_keep_identity_smile_and_eyes(default_avatar: GaussianAvatar) -> None:
    model = default_avatar.head_model
    names = list(model.expr_names)
    expr = torch.linspace(0.1, 1.2, len(names))
    offset = torch.randn(model.n_verts, 3) * 1e-3
    lip = torch.zeros(model.n_verts, 3)
    lip[model.masks["lips"]] = 2e-3
    params = {"shape": torch.ones(model.n_shape), "expr": expr, "jaw_pose": torch.tensor([0.2, 0.0, 0.0]),
              "static_offset": offset, "lip_offset": lip}  # fmt: skip
    rest = rest_params(params, model)
    assert "lip_offset" not in rest and torch.equal(rest["jaw_pose"], torch.zeros(3))
    assert torch.equal(rest["shape"], params["shape"]) and torch.equal(rest["static_offset"], offset)
    for i, name in enumerate(names):
        assert float(rest["expr"][i]) == (0.0 if name in REST_ZEROED else float(expr[i])), name
    assert {"spread", "blink_left", "brow_raise", "mouth_corners_down"} <= set(names) - set(REST_ZEROED)
    shown = photo_pose(params)
    assert torch.equal(shown["static_offset"], offset + lip) and torch.equal(shown["expr"], expr)


@pytest.mark.slow
def test_fit_of_an_open_mouth_rests_closed(default_avatar: GaussianAvatar) -> None:
    """A render of the built-in head speaking (jaw and lips open): the fit opens the mouth with the jaw,
    the expression and the lips' own offset, and the rest face it keeps is closed as the template's."""
    names = list(default_avatar.head_model.expr_names)
    expr = torch.zeros(len(names))
    expr[names.index("lower_lip_drop")] = 0.6
    expr[names.index("upper_lip_raise")] = 0.4
    truth = default_avatar.vertices_from_params({"expr": expr, "jaw_pose": torch.tensor([0.18, 0.0, 0.0])})[0]
    size = 384
    image, _, _ = _render_head(default_avatar, truth, 15.0, -4.0, size)
    mesh, _ = find_face(image, None, 20.0, "render")
    fit = fit_landmarks(mesh.points, size, size, default_avatar.head_model, steps=120)
    a, shown = fitted_avatar(default_avatar, fit.params)
    template_gap = _lip_gap_mm(default_avatar.neutral_vertices())
    assert abs(_lip_gap_mm(a.neutral_vertices()) - template_gap) < 0.1  # the rest face is closed as the template's
    truth_gap = _lip_gap_mm(truth)
    assert truth_gap > 4 * template_gap  # the render's mouth is open ...
    assert abs(_lip_gap_mm(shown) - truth_gap) < 0.35 * truth_gap  # ... and so is the fitted photo pose
    lips = np.abs(fit.params["lip_offset"].numpy()).sum(1) > 0
    assert set(np.nonzero(lips)[0].tolist()) <= set(default_avatar.head_model.masks["lips"].tolist())


# ------------------------------------------------------------------------------------------ bad input
def test_non_image_and_missing(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    with pytest.raises(L2TError, match="not a readable image"):
        build_photo_avatar(text, tmp_path / "out")
    with pytest.raises(L2TError, match="not found"):
        load_photo(tmp_path / "missing.png")
    assert not (tmp_path / "out").exists()


def test_no_face_leaves_nothing(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:256, 0:256]
    img = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "wall.png")
    with pytest.raises(L2TError, match="no face found"):
        build_photo_avatar(tmp_path / "wall.png", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wall.png"]


def test_face_too_small(tmp_path: Path, astronaut: np.ndarray) -> None:
    Image.fromarray(astronaut).resize((256, 256)).save(tmp_path / "small.png")
    with pytest.raises(L2TError, match="face too small.*between the eyes"):
        build_photo_avatar(tmp_path / "small.png", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_small_face_in_a_large_photo_is_taken_at_full_resolution(tmp_path: Path, astronaut: np.ndarray) -> None:
    """The astronaut pasted at full size into a 2600x2000 canvas: downscaled to 1024 her eyes would be 17 px
    apart (refused as too small); a 1024x1024 full-resolution window around her face keeps the 43 px."""
    canvas = np.full((2000, 2600, 3), 200, np.uint8)
    canvas[1300:1812, 1900:2412] = astronaut
    Image.fromarray(canvas).save(tmp_path / "wide.png")
    with pytest.raises(L2TError, match="face too small"):
        find_face(load_photo(tmp_path / "wide.png")[0], None, 30.0, "wide")
    window, mesh, notes = photo_face(tmp_path / "wide.png")
    assert window.shape == (1024, 1024, 3) and 38 < mesh.iod < 48
    assert any("1024x1024 window" in n and "would have 17" in n for n in notes)
    # the window is the photo's own pixels, the face where it was (nose tip 222, 128 in the astronaut photo)
    (x0, y0), (x, y) = (int(v) for v in notes[0].split("at (")[1].split(")")[0].split(", ")), mesh.points[1, :2]
    assert np.array_equal(window, canvas[y0 : y0 + 1024, x0 : x0 + 1024])
    assert abs(x + x0 - 1900 - 222) < 8 and abs(y + y0 - 1300 - 128) < 8


def test_grayscale_huge_and_exif(tmp_path: Path, astronaut: np.ndarray) -> None:
    Image.fromarray(astronaut).convert("L").save(tmp_path / "grey.png")
    grey, notes = load_photo(tmp_path / "grey.png")
    assert grey.shape == (512, 512, 3) and np.array_equal(grey[..., 0], grey[..., 2])
    assert any("grayscale" in n for n in notes)
    Image.fromarray(grey).save(tmp_path / "grey-rgb.png")  # grey content in an RGB file counts too
    assert any("grayscale" in n for n in load_photo(tmp_path / "grey-rgb.png")[1])
    assert not any("grayscale" in n for n in load_photo(ASTRONAUT)[1])
    sh = torch.randn(50, 4, 3)  # a grey photo's avatar is grey throughout: each coefficient's luma
    g = grey_sh(sh)
    assert torch.equal(g[..., 0], g[..., 2]) and torch.equal(g[..., 1], g[..., 2])
    assert torch.allclose(g[..., 0], 0.299 * sh[..., 0] + 0.587 * sh[..., 1] + 0.114 * sh[..., 2])
    mesh, _ = find_face(grey, None, 30.0, "grey")
    assert mesh.score > 0.9

    Image.fromarray(astronaut).resize((2400, 2400)).save(tmp_path / "huge.png")
    huge, notes = load_photo(tmp_path / "huge.png", max_side=1024)
    assert huge.shape == (1024, 1024, 3) and any("downscaled from 2400x2400" in n for n in notes)

    # the same photo through photo_face: downscaled, her eyes 86 px apart, no window needed
    small, mesh, notes = photo_face(tmp_path / "huge.png")
    assert small.shape == (1024, 1024, 3) and 80 < mesh.iod < 95 and any("downscaled" in n for n in notes)

    # stored rotated by 90 degrees with EXIF orientation 6 ("rotate 90 CW to display")
    stored = Image.fromarray(astronaut).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright, notes = load_photo(tmp_path / "rotated.jpg")
    assert upright.shape == astronaut.shape and any("EXIF orientation 6" in n for n in notes)
    assert np.abs(upright.astype(float) - astronaut).mean() < 6  # JPEG noise only


def test_several_faces(astronaut: np.ndarray) -> None:
    small = np.asarray(Image.fromarray(astronaut).resize((384, 384)))
    canvas = np.full((512, 896, 3), 255, np.uint8)
    canvas[:, :512] = astronaut
    canvas[:384, 512:] = small
    mesh, notes = find_face(canvas, None, 20.0, "pair")
    assert any("2 faces found; using the largest" in n for n in notes)
    assert mesh.points[1, 0] < 512 and mesh.iod > 38
    other, notes = find_face(canvas, 1, 20.0, "pair")
    assert other.points[1, 0] > 512 and not notes and other.iod < 38
    with pytest.raises(L2TError, match="--face 5: pair has 2 face"):
        find_face(canvas, 5, 20.0, "pair")


# ------------------------------------------------------------------------------------------ camera file
def test_camera_json_letterbox(tmp_path: Path) -> None:
    k = np.array([[300.0, 0, 90], [0, 300, 60], [0, 0, 1]])
    view = np.eye(4)
    (tmp_path / "fit.json").write_text(
        json.dumps({"width": 200, "height": 100, "K": k.tolist(), "viewmat": view.tolist()})
    )
    v, k1, w, h = camera_from_json(str(tmp_path / "fit.json"))
    assert (w, h) == (200, 100) and np.allclose(k1[0].numpy(), k)
    _, k2, w, h = camera_from_json(str(tmp_path / "fit.json"), 100, 100)
    point = np.array([0.02, -0.03, 0.5])
    px = (k @ point)[:2] / point[2]  # in the 200x100 photo
    px2 = (k2[0].double().numpy() @ point)[:2] / point[2]  # in the 100x100 frame: scale 0.5, 25 px bars
    assert np.allclose(px2, px * 0.5 + [0, 25], atol=1e-4)
    (tmp_path / "bad.json").write_text(json.dumps({"width": 2, "K": [[1]]}))
    with pytest.raises(L2TError, match="expected width, height, K and viewmat"):
        camera_from_json(str(tmp_path / "bad.json"))


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="l2t-gs")
    avatar_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.slow
def test_cli_from_photo_and_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "astro"
    assert run_cli(["avatar", "from-photo", str(ASTRONAUT), "--out", str(out)]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["width"] == 512 and len(fit["K"]) == 3 and len(fit["viewmat"]) == 4
    assert fit["rerender_landmark_error_iod"] <= 0.04 and fit["face_psnr_db"] >= 24
    assert abs(fit["rest_lip_gap_mm"] - _lip_gap_mm(load_avatar("default").neutral_vertices())) < 0.1
    assert set(fit["photo_expression"]) == {"expr", "jaw_pose", "lip_offset"}
    assert run_cli(["avatar", "render", "--avatar", str(out), "--camera-json", str(out / "fit.json"),
                    "--out", str(tmp_path / "x.png")]) == 0  # fmt: skip
    img = np.asarray(Image.open(tmp_path / "x.png"))
    assert img.shape == (512, 512, 3)


def test_render_camera_json_equals_the_same_preset(tmp_path: Path, default_avatar: GaussianAvatar) -> None:
    """`render --camera-json` with the front preset's camera written out gives the front preset's frames."""
    import itertools

    from l2t_gs.assets import asset_path
    from l2t_gs.pipeline import RenderConfig, render_frames
    from l2t_gs.render import head_camera

    view, k = head_camera("front", default_avatar.neutral_vertices(), 64, 64)
    cam = {"width": 64, "height": 64, "K": k[0].double().tolist(), "viewmat": view[0].double().tolist()}
    (tmp_path / "fit.json").write_text(json.dumps(cam))
    cfg = {"size": 64, "fps": 25.0, "backend": "torch", "device": "cpu", "quiet": True}
    preset = list(itertools.islice(render_frames(asset_path("samples", "hello.wav"), RenderConfig(**cfg)), 3))
    from_json = RenderConfig(camera_json=str(tmp_path / "fit.json"), **cfg)
    frames = list(itertools.islice(render_frames(asset_path("samples", "hello.wav"), from_json), 3))
    assert all(np.array_equal(a, b) for a, b in zip(preset, frames, strict=True))
    with pytest.raises(L2TError, match="--camera-json not found"):
        next(render_frames(asset_path("samples", "hello.wav"), RenderConfig(camera_json=str(tmp_path / "no.json"))))


def test_avatar_render_poses_the_photo_expression(tmp_path: Path, default_avatar: GaussianAvatar) -> None:
    """``avatar render --camera-json`` poses the face as fit.json's photo_expression says (expression, jaw and
    the lips' offset), unless --jaw / --expr or --no-photo-expression; bad content is a one-line error."""
    from l2t_gs.render import head_camera

    view, k = head_camera("front", default_avatar.neutral_vertices(), 64, 64)
    lips = default_avatar.head_model.masks["lips"][:5].tolist()
    shown = {"expr": [0.0, 0.0, 0.0, 0.3] + [0.0] * 8, "jaw_pose": [0.25, 0.0, 0.0],
             "lip_offset": {"vertices": lips, "xyz": [[0.0, -0.004, 0.001]] * 5}}  # fmt: skip
    cam = {"width": 64, "height": 64, "K": k[0].double().tolist(), "viewmat": view[0].double().tolist()}
    (tmp_path / "fit.json").write_text(json.dumps({**cam, "photo_expression": shown}))
    (tmp_path / "camera.json").write_text(json.dumps(cam))
    params = photo_expression(tmp_path / "fit.json", default_avatar)
    assert torch.equal(params["jaw_pose"], torch.tensor([0.25, 0.0, 0.0]))
    moved = params["static_offset"] - default_avatar.neutral_params["static_offset"]
    assert torch.allclose(moved[lips], torch.tensor([0.0, -0.004, 0.001]).expand(5, 3))
    assert float(moved.abs().sum()) == pytest.approx(5 * 0.005, rel=1e-5)
    assert photo_expression(tmp_path / "camera.json", default_avatar) == {}

    def render(name: str, *extra: str) -> np.ndarray:
        out = tmp_path / f"{name}.png"
        argv = [
            "avatar",
            "render",
            "--camera-json",
            str(tmp_path / "fit.json"),
            "--backend",
            "torch",
            "--out",
            str(out),
        ]
        assert run_cli([*argv, *extra]) == 0
        return np.asarray(Image.open(out)).astype(int)

    def direct(params: dict) -> np.ndarray:
        verts = default_avatar.vertices_from_params(params)[0]
        with torch.no_grad():
            rgb, _, _ = rasterize(**default_avatar.splat_params(verts), viewmats=view, Ks=k, width=64, height=64,
                                  backgrounds=torch.ones(1, 3), backend="torch")  # fmt: skip
        return to_uint8(rgb[0]).astype(int)

    photo = render("photo")
    assert np.array_equal(photo, direct(params))
    assert np.abs(photo - direct({})).max() > 50  # the open jaw shows
    assert np.array_equal(render("rest", "--no-photo-expression"), direct({}))
    closed = render("closed", "--jaw", "0,0,0")  # --jaw wins; the expression and lips stay the photo's
    assert np.array_equal(closed, direct({**params, "jaw_pose": torch.zeros(3)}))
    (tmp_path / "bad.json").write_text(json.dumps({**cam, "photo_expression": {"jaw_pose": ["x"]}}))
    with pytest.raises(L2TError, match="unreadable photo_expression"):
        photo_expression(tmp_path / "bad.json", default_avatar)


def test_cli_errors_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Through the real entry point, file descriptors included (the LiteRT runtime logs in C++)."""
    from l2t_gs.authoring.photo.landmarks import _interpreter
    from l2t_gs.cli.main import main

    _interpreter.cache_clear()  # the runtime's start-up message must not reach stderr either
    yy, xx = np.mgrid[0:256, 0:256]
    Image.fromarray(np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)).save(tmp_path / "wall.png")
    (tmp_path / "text.png").write_text("hello")
    for photo, message in (("wall.png", "no face found in"), ("text.png", "not a readable image")):
        assert main(["avatar", "from-photo", str(tmp_path / photo), "--out", str(tmp_path / "out")]) == 1
        err = capfd.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.png", "wall.png"]
