"""The built-in FLAME-format head: structure, rig behaviour and the mouth shapes of speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2t_gs.assets import asset_path
from l2t_gs.authoring.head import EXPRESSION_NAMES, SHAPE_NAMES, build_builtin_head
from l2t_gs.rig import FlameRig, load_head_model


@pytest.fixture(scope="module")
def model():
    return load_head_model("builtin", dtype=torch.float64)


@pytest.fixture(scope="module")
def rig(model):
    return FlameRig(model)


@pytest.fixture(scope="module")
def lm():
    with np.load(asset_path("head", "l2t_head.npz")) as z:
        return {k[len("landmark_") :]: z[k] for k in z.files if k.startswith("landmark_")}


def expr(model, **named) -> torch.Tensor:
    e = torch.zeros(1, model.n_expr, dtype=torch.float64)
    for k, v in named.items():
        e[0, model.expr_names.index(k)] = v
    return e


def dist_mm(v: torch.Tensor, a, b) -> float:
    return float((v[0, int(a[0])] - v[0, int(b[0])]).norm()) * 1000


def test_structure(model):
    assert 3000 <= model.n_verts <= 10000
    assert model.n_shape == len(SHAPE_NAMES) and model.n_expr == len(EXPRESSION_NAMES)
    assert model.expr_names == list(EXPRESSION_NAMES)
    assert model.n_joints == 5 and model.parents.tolist() == [-1, 0, 1, 1, 1]
    for region in ("lips", "upper_face", "eyes", "face", "scalp", "neck", "mouth_interior", "teeth_upper"):
        idx = model.masks[region]
        assert idx.numel() > 20, region
        assert int(idx.max()) < model.n_verts
    f = model.faces
    assert int(f.min()) >= 0 and int(f.max()) < model.n_verts
    # no degenerate triangles
    v = model.v_template
    area = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]).norm(dim=1) / 2
    assert float(area.min()) > 1e-12
    # consistently oriented: every directed edge is used at most once
    edges = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert torch.unique(edges, dim=0).shape[0] == edges.shape[0]
    # weights are a partition of unity; the regressor gives eyes at the eyeball centres
    assert torch.allclose(model.lbs_weights.sum(1), torch.ones(model.n_verts, dtype=torch.float64))
    J = model.J_regressor @ v
    for j, region in ((3, "eye_left"), (4, "eye_right")):
        assert torch.allclose(J[j], v[model.masks[region]].mean(0), atol=1e-6)
    assert float(J[3, 0]) > 0 > float(J[4, 0])  # left eye on +x, as in FLAME


def test_reads_as_a_head(model, lm):
    v = model.v_template
    ext = (v.max(0).values - v.min(0).values) * 1000  # mm
    assert 140 < ext[0] < 190 and 280 < ext[1] < 360 and 180 < ext[2] < 250  # width, height w/ neck, depth
    nose = v[model.masks["nose"]]
    tip = v[int(torch.argmax(v[:, 2]))]
    assert abs(float(tip[0])) < 1e-3 and float(nose[:, 2].max()) == pytest.approx(float(tip[2]))  # nose leads
    # the mouth is a real opening: separate vertices for the upper and lower lip, 1-3 mm apart at rest
    assert 1.0 < dist_mm(v[None], lm["upper_lip_mid"], lm["lower_lip_mid"]) < 3.0
    # eyes: open lids, eyeballs of radius about 12 mm
    assert 6.0 < dist_mm(v[None], lm["left_upper_lid"], lm["left_lower_lid"]) < 14.0
    eye = v[model.masks["eye_left"]]
    r = (eye - eye.mean(0)).norm(dim=1) * 1000
    assert float(r.min()) == pytest.approx(float(r.max()), rel=1e-4) and 10 < float(r.mean()) < 14


def test_zero_parameters_give_template(model, rig):
    assert torch.allclose(rig()[0], model.v_template, rtol=0, atol=1e-8)


def test_jaw_moves_jaw_and_lower_lip_not_forehead(model, rig, lm):
    v0 = rig()
    v = rig(jaw_pose=torch.tensor([[0.25, 0.0, 0.0]], dtype=torch.float64))
    d = (v - v0)[0].norm(dim=1)
    assert float(d[model.masks["upper_face"]].max()) < 1e-9
    assert float(d[model.masks["eyes"]].max()) < 1e-9
    assert float(d[int(lm["lower_lip_mid"][0])]) > 0.015
    assert float(d[model.masks["teeth_lower"]].min()) > 0.005
    assert float(d[int(lm["upper_lip_mid"][0])]) < 1e-4
    # opening the jaw moves the chin down and back
    chin = int(torch.argmin(v0[0, :, 1] + 10 * (v0[0, :, 0].abs() > 0.01) - 10 * (v0[0, :, 2] > 0.05)))
    assert float(v[0, chin, 1] - v0[0, chin, 1]) < -0.01


def test_eye_rotation_moves_only_eyeballs(model, rig):
    v0 = rig()
    for side, region, other in ((0, "eye_left", "eye_right"), (1, "eye_right", "eye_left")):
        eyes = torch.zeros(1, 6, dtype=torch.float64)
        eyes[0, 3 * side + 1] = 0.4
        d = (rig(eyes_pose=eyes) - v0)[0].norm(dim=1)
        moved = torch.nonzero(d > 1e-10).squeeze(1)
        assert set(moved.tolist()) <= set(model.masks[region].tolist())
        assert moved.numel() > 0.8 * model.masks[region].numel()
        assert float(d[model.masks[other]].max()) == 0.0


def test_closure_and_jaw_opening(model, rig, lm):
    closed = rig(expr=expr(model, lip_close=1.0))
    assert dist_mm(closed, lm["upper_lip_mid"], lm["lower_lip_mid"]) < 1.0
    # closure holds across the whole mouth, not only at the midline
    row_gap = []
    r = model.masks["lip_upper"]
    assert r.numel() > 0
    opened = rig(jaw_pose=torch.tensor([[0.3, 0.0, 0.0]], dtype=torch.float64))
    assert dist_mm(opened, lm["upper_lip_mid"], lm["lower_lip_mid"]) > 20.0
    assert not row_gap
    # a bilabial during a slightly open jaw: closure + press keeps the lips within a few mm
    bil = rig(expr=expr(model, lip_close=1.0, lip_press=1.0))
    assert dist_mm(bil, lm["upper_lip_mid"], lm["lower_lip_mid"]) < 1.0


def test_rounding_spreading_and_lip_shapes(model, rig, lm):
    v0 = rig()
    width0 = dist_mm(v0, lm["mouth_corners"][:1], lm["mouth_corners"][1:])
    pucker = rig(expr=expr(model, pucker=1.0))
    spread = rig(expr=expr(model, spread=1.0))
    assert dist_mm(pucker, lm["mouth_corners"][:1], lm["mouth_corners"][1:]) < width0 - 6
    assert dist_mm(spread, lm["mouth_corners"][:1], lm["mouth_corners"][1:]) > width0 + 8
    up, lo = int(lm["upper_lip_mid"][0]), int(lm["lower_lip_mid"][0])
    assert float(pucker[0, up, 2] - v0[0, up, 2]) > 0.005  # lips protrude
    raise_ = rig(expr=expr(model, upper_lip_raise=1.0))
    assert float(raise_[0, up, 1] - v0[0, up, 1]) > 0.003
    assert float((raise_ - v0)[0, lo].norm()) < 1e-9
    drop = rig(expr=expr(model, lower_lip_drop=1.0))
    assert float(drop[0, lo, 1] - v0[0, lo, 1]) < -0.003
    # labiodental: the lower lip reaches the upper incisors' edge
    lab = rig(expr=expr(model, labiodental=1.0))
    teeth_edge = lab[0, torch.as_tensor(lm["upper_teeth_edge"])].mean(0)
    assert float((lab[0, lo] - teeth_edge).norm()) < 0.003
    assert float((v0[0, lo] - v0[0, torch.as_tensor(lm["upper_teeth_edge"])].mean(0)).norm()) > 0.004


def test_blink_and_brows(model, rig, lm):
    v0 = rig()
    for side in ("left", "right"):
        b = rig(expr=expr(model, **{f"blink_{side}": 1.0}))
        assert dist_mm(b, lm[f"{side}_upper_lid"], lm[f"{side}_lower_lid"]) < 1.0
        other = "right" if side == "left" else "left"
        assert dist_mm(b, lm[f"{other}_upper_lid"], lm[f"{other}_lower_lid"]) > 6.0
    brow = rig(expr=expr(model, brow_raise=1.0))
    dy = (brow - v0)[0, model.masks["upper_face"], 1]
    assert float(dy.max()) > 0.004 and float((brow - v0)[0, model.masks["lips"]].norm(dim=1).max()) < 1e-6


def test_identity_components(model, rig):
    v0 = rig()
    for k, name in enumerate(SHAPE_NAMES):
        s = torch.zeros(1, model.n_shape, dtype=torch.float64)
        s[0, k] = 1.0
        v = rig(shape=s)
        assert float((v - v0).norm(dim=-1).max()) > 5e-4, name
        eye = v[0, model.masks["eye_left"]]
        r = (eye - eye.mean(0)).norm(dim=1)
        assert float(r.max() - r.min()) < 1e-4, name  # eyeballs stay spheres


def test_pose_correctives_reduce_jaw_collapse(model):
    """With the fitted correctives the jaw pose follows a per-vertex interpolated rotation better."""
    from l2t_gs.core.rotation import axis_angle_to_matrix

    rig = FlameRig(model)
    no_corr = FlameRig(model)
    no_corr.posedirs = torch.zeros_like(no_corr.posedirs)
    aa = torch.tensor([[0.3, 0.0, 0.0]], dtype=torch.float64)
    v_c = rig(jaw_pose=aa)[0]
    v_n = no_corr(jaw_pose=aa)[0]
    v = model.v_template
    j = (model.J_regressor @ v)[2]
    w = model.lbs_weights[:, 2:3]
    target = j + ((axis_angle_to_matrix(aa * w)) @ (v - j)[..., None])[..., 0]
    err_c = (v_c - target).norm(dim=1).max()
    err_n = (v_n - target).norm(dim=1).max()
    assert float(err_c) < 0.5 * float(err_n)


@pytest.mark.slow
def test_shipped_file_matches_the_generator(model):
    arrays = build_builtin_head()
    np.testing.assert_allclose(arrays["v_template"], model.v_template.numpy(), atol=1e-6)
    np.testing.assert_array_equal(arrays["f"], model.faces.numpy())
    np.testing.assert_allclose(arrays["weights"], model.lbs_weights.numpy(), atol=1e-6)
    np.testing.assert_allclose(arrays["shapedirs"][..., : model.n_shape], model.shapedirs.numpy(), atol=1e-6)
