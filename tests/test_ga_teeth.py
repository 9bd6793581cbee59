"""GaussianAvatars' teeth extension, whole-avatar import and ``dynamic_offset`` semantics.

References written here from GaussianAvatars' source, independently of l2t-gs' code:
``flame_model/flame.py::FlameHead.add_teeth`` (teeth vertices, faces, rig rows), its FLAME forward
pass (static offset added, ``dynamic_offset`` accepted but unused), ``flame_model/lbs.py`` (smplx-style
LBS), ``utils/graphics_utils.py::compute_face_orientation`` and ``scene/gaussian_model.py``'s
``get_xyz / get_scaling / get_rotation``. All in float64 numpy.
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from l2t_gs.cli import avatar as avatar_cli
from l2t_gs.errors import L2TError
from l2t_gs.gaussians.avatar_io import import_gaussian_avatars, load_avatar
from l2t_gs.gaussians.binding import triangle_frames, world_to_local
from l2t_gs.gaussians.ply import GaussianPly, read_gaussian_ply, write_gaussian_ply
from l2t_gs.render import head_camera, rasterize
from l2t_gs.rig import FlameRig, add_gaussian_avatars_teeth, load_head_model
from l2t_gs.rig.flame_teeth import (
    LIP_OUTSIDE_RING_LOWER,
    LIP_OUTSIDE_RING_UPPER,
    teeth_faces,
    teeth_vertices,
)

pytestmark = pytest.mark.usefixtures("one_thread")

V, F, S, E = 5023, 9976, 6, 4
TV, TF = 120, 168
# GaussianAvatars' FlameMask: lip_outside_ring_upper / lip_outside_ring_lower.
RING_UP = [1713, 1715, 1716, 1735, 1696, 1694, 1657, 3543, 2774, 2811, 2813, 2850, 2833, 2832, 2830]
RING_LO = [1576, 1577, 1773, 1774, 1795, 1802, 1865, 3503, 2948, 2905, 2898, 2881, 2880, 2713, 2712]


# ----------------------------------------------------------------------------- FLAME-sized models
def flame_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """A random model with FLAME's sizes (raw FLAME layout, float64)."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(size=(V, 5)) ** 3
    weights /= weights.sum(1, keepdims=True)
    regressor = rng.uniform(size=(5, V)) * (rng.uniform(size=(5, V)) < 0.01)
    regressor /= regressor.sum(1, keepdims=True)
    faces = np.stack([rng.choice(V, 3, replace=False) for _ in range(F)]).astype(np.uint32)
    return {
        "v_template": rng.normal(scale=0.1, size=(V, 3)),
        "shapedirs": rng.normal(scale=0.01, size=(V, 3, S + E)),
        "n_shape": np.asarray(S),
        "posedirs": rng.normal(scale=0.01, size=(V, 3, 36)),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": faces,
    }


def write_pickle(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as fh:
        pickle.dump(arrays, fh, protocol=2)
    return path


def ga_teeth_reference(vt: np.ndarray) -> np.ndarray:
    """The 120 teeth vertices, step by step as in ``add_teeth``."""
    up, lo = vt[RING_UP], vt[RING_LO]
    d = np.linalg.norm(up - lo, axis=1).mean()
    mid = (up + lo) / 2
    mid[:, 1] = mid[:, 1].mean()
    mid[:, 2] -= 1.5 * d
    upper_edge = mid + [0, 0.1 * d, 0]
    upper_root = upper_edge + [0, 2 * d, 0]
    lower_edge = mid - [0, 0.1 * d, 0] - [0, 0, 0.4 * d]
    lower_root = lower_edge - [0, 2 * d, 0]
    back = np.array([0, 0, d])
    rows = [upper_root, lower_root, upper_edge, lower_edge]
    rows += [upper_root - back, upper_edge - back, lower_root - back, lower_edge - back]
    return np.concatenate(rows)


def ga_extend(a: dict[str, np.ndarray], faces_teeth: np.ndarray) -> dict[str, np.ndarray]:
    """FLAME arrays with the teeth rows, as ``add_teeth`` fills them."""
    upper = np.r_[0:15, 30:45, 60:75, 75:90]
    lower = np.r_[15:30, 45:60, 90:105, 105:120]
    sd = np.zeros((TV, 3, S + E))
    lip_mean = (a["shapedirs"][RING_UP, :, :S] + a["shapedirs"][RING_LO, :, :S]) / 2
    for rows in (upper, lower):
        for start in range(0, 60, 15):
            sd[rows[start : start + 15], :, :S] = lip_mean
    w = np.zeros((TV, 5))
    w[upper, 1] = 1.0
    w[lower, 2] = 1.0
    return {
        "v_template": np.concatenate([a["v_template"], ga_teeth_reference(a["v_template"])]),
        "shapedirs": np.concatenate([a["shapedirs"], sd]),
        "posedirs": np.concatenate([a["posedirs"], np.zeros((TV, 3, 36))]),
        "J_regressor": np.concatenate([a["J_regressor"], np.zeros((5, TV))], axis=1),
        "weights": np.concatenate([a["weights"], w]),
        "f": np.concatenate([a["f"].astype(np.int64), faces_teeth + V]),
    }


def rodrigues(r: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(r + 1e-8)
    k = r / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def ga_flame(m: dict[str, np.ndarray], p: dict[str, np.ndarray], offset: np.ndarray) -> np.ndarray:
    """GaussianAvatars' FLAME forward for one frame: shape+expr, + offset, joints, correctives, LBS."""
    betas = np.concatenate([p["shape"], p["expr"]])
    v_shaped = m["v_template"] + m["shapedirs"] @ betas + offset
    joints = m["J_regressor"] @ v_shaped
    pose = np.concatenate([p["rotation"], p["neck_pose"], p["jaw_pose"], p["eyes_pose"]]).reshape(5, 3)
    rots = np.stack([rodrigues(r) for r in pose])
    feature = (rots[1:] - np.eye(3)).reshape(-1)
    v_posed = v_shaped + m["posedirs"] @ feature
    parents = [-1, 0, 1, 1, 1]
    world = []
    for j in range(5):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if j else 0)
        world.append(local if j == 0 else world[parents[j]] @ local)
    rel = np.stack(world)
    rel[:, :3, 3] -= np.einsum("jab,jb->ja", rel[:, :3, :3], joints)
    t = np.einsum("vj,jab->vab", m["weights"], rel)
    verts = np.einsum("vab,vb->va", t[:, :3, :3], v_posed) + t[:, :3, 3]
    return verts + p["translation"]


def quat_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = (q / np.linalg.norm(q, axis=-1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def ga_splats(verts: np.ndarray, faces: np.ndarray, ply: GaussianPly) -> tuple[np.ndarray, ...]:
    """World means, scales and rotation matrices of bound splats (GaussianAvatars' formulas)."""
    v0, v1, v2 = (verts[faces[:, i]] for i in range(3))

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    a0 = unit(v1 - v0)
    a1 = unit(np.cross(a0, v2 - v0))
    a2 = -unit(np.cross(a1, a0))
    orient = np.stack([a0, a1, a2], -1)
    k = (np.linalg.norm(v1 - v0, axis=-1) + np.abs((a2 * (v2 - v0)).sum(-1))) / 2
    b = ply.binding
    means = np.einsum("nab,nb->na", orient[b], ply.means * k[b, None]) + (v0 + v1 + v2)[b] / 3
    scales = np.exp(ply.log_scales) * k[b, None]
    rots = orient[b] @ quat_matrix(ply.quats.astype(np.float64))
    return means, scales, rots


def random_splats(n: int, binding: np.ndarray, seed: int = 0) -> GaussianPly:
    rng = np.random.default_rng(seed)
    return GaussianPly(
        means=rng.normal(scale=0.3, size=(n, 3)).astype(np.float32),
        log_scales=(rng.normal(scale=0.3, size=(n, 3)) - 1.0).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(scale=0.2, size=(n, 4, 3)).astype(np.float32),
        binding=binding.astype(np.int64),
    )


def ga_params(t: int, seed: int = 1, dynamic: float = 1e-3) -> dict[str, np.ndarray]:
    """``flame_param.npz`` as GaussianAvatars saves it (V + 120 offset rows)."""
    rng = np.random.default_rng(seed)
    return {
        "shape": rng.normal(size=S).astype(np.float32),
        "expr": rng.normal(size=(t, E)).astype(np.float32),
        "rotation": rng.normal(scale=0.2, size=(t, 3)).astype(np.float32),
        "neck_pose": rng.normal(scale=0.2, size=(t, 3)).astype(np.float32),
        "jaw_pose": rng.normal(scale=0.2, size=(t, 3)).astype(np.float32),
        "eyes_pose": rng.normal(scale=0.2, size=(t, 6)).astype(np.float32),
        "translation": rng.normal(scale=0.1, size=(t, 3)).astype(np.float32),
        "static_offset": rng.normal(scale=2e-3, size=(1, V + TV, 3)).astype(np.float32),
        "dynamic_offset": rng.normal(scale=dynamic, size=(t, V + TV, 3)).astype(np.float32),
    }


def frame_of(params: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    out = {k: params[k][i].astype(np.float64) for k in ("expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose")}
    out["translation"] = params["translation"][i].astype(np.float64)
    out["shape"] = params["shape"].astype(np.float64)
    return out


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="l2t-gs")
    avatar_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def flame(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    arrays = flame_arrays()
    return write_pickle(tmp_path_factory.mktemp("flame") / "flame.pkl", arrays), arrays


# ----------------------------------------------------------------------------- the extension
def test_ring_indices_and_faces_follow_gaussian_avatars() -> None:
    assert list(LIP_OUTSIDE_RING_UPPER) == RING_UP and list(LIP_OUTSIDE_RING_LOWER) == RING_LO
    f = teeth_faces().numpy()
    assert f.shape == (TF, 3) and f.dtype == np.int64
    # rows of GaussianAvatars' two tables, at their place in the appended face array
    # (upper table: front, back, biting surface; then the lower table)
    spot = {
        0: [0, 31, 30], 13: [6, 7, 37], 14: [7, 8, 37], 27: [14, 44, 43],
        28: [60, 75, 76], 42: [67, 82, 68], 55: [74, 88, 89],
        56: [75, 30, 76], 69: [82, 36, 37], 70: [82, 37, 38], 83: [88, 44, 89],
        84: [45, 46, 15], 97: [52, 22, 21], 98: [52, 23, 22], 111: [58, 59, 29],
        112: [90, 106, 105], 126: [97, 98, 112], 139: [104, 119, 118],
        140: [105, 106, 45], 154: [112, 53, 52], 167: [118, 119, 59],
    }  # fmt: skip
    for row, tri in spot.items():
        assert f[row].tolist() == tri, row
    assert len({tuple(t) for t in f.tolist()}) == TF and (np.diff(np.sort(f, 1), axis=1) > 0).all()
    upper_rows = set(np.r_[0:15, 30:45, 60:90].tolist())
    for part, rows in ((f[:84], upper_rows), (f[84:], set(range(TV)) - upper_rows)):
        assert set(part.ravel().tolist()) == rows  # upper faces use only upper vertices, and all of them
        directed = [(int(t[i]), int(t[(i + 1) % 3])) for t in part for i in range(3)]
        assert len(set(directed)) == len(directed)  # consistent winding: no directed edge twice


def test_teeth_vertices_and_rig_rows(flame: tuple[Path, dict[str, np.ndarray]]) -> None:
    path, arrays = flame
    plain = load_head_model(path, dtype=torch.float64)
    model = add_gaussian_avatars_teeth(plain)
    assert (model.n_verts, model.n_faces) == (V + TV, F + TF)
    np.testing.assert_allclose(model.v_template[V:].numpy(), ga_teeth_reference(arrays["v_template"]), atol=1e-12)
    np.testing.assert_allclose(teeth_vertices(plain.v_template).numpy(), ga_teeth_reference(arrays["v_template"]))
    ref = ga_extend(arrays, teeth_faces().numpy())
    np.testing.assert_allclose(model.shapedirs.numpy(), ref["shapedirs"][..., :S], atol=1e-15)
    np.testing.assert_array_equal(model.exprdirs.numpy(), ref["shapedirs"][..., S:])
    np.testing.assert_array_equal(model.posedirs.numpy(), ref["posedirs"].reshape(-1, 36).T)
    np.testing.assert_array_equal(model.J_regressor.numpy(), ref["J_regressor"])
    np.testing.assert_array_equal(model.lbs_weights.numpy(), ref["weights"])
    np.testing.assert_array_equal(model.faces.numpy(), ref["f"])
    assert sorted(model.masks["teeth"].tolist()) == list(range(V, V + TV))
    assert add_gaussian_avatars_teeth(model) is model  # applied once
    # a posed teeth mesh follows GaussianAvatars' FLAME forward pass
    p = frame_of(ga_params(1), 0)
    offset = np.random.default_rng(5).normal(scale=1e-3, size=(V + TV, 3))
    got = FlameRig(model)(**{k: torch.from_numpy(v) for k, v in p.items()}, static_offset=torch.from_numpy(offset))
    np.testing.assert_allclose(got[0].numpy(), ga_flame(ref, p, offset), atol=1e-10)
    with pytest.raises(L2TError, match="needs a FLAME model"):
        add_gaussian_avatars_teeth(load_head_model("builtin"))


# ----------------------------------------------------------------------------- whole import
def write_export(folder: Path, ply: GaussianPly, params: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True)
    write_gaussian_ply(folder / "point_cloud.ply", ply)
    np.savez(folder / "flame_param.npz", **params)


def test_import_whole_matches_gaussian_avatars(
    flame: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, arrays = flame
    rng = np.random.default_rng(2)
    binding = np.concatenate([np.arange(F, F + TF), rng.integers(F, F + TF, 100), rng.integers(0, F, 400)])
    ply = random_splats(binding.size, rng.permutation(binding))
    params = ga_params(3)
    write_export(tmp_path / "ga", ply, params)
    out = tmp_path / "av"
    assert run_cli(["avatar", "import-ga", str(tmp_path / "ga"), "--flame-model", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("note:") == 1 and "dynamic_offset is non-zero" in err and "ignored" in err
    meta = json.loads((out / "avatar.json").read_text())
    assert meta["head_model"] == "head_model.pkl" and meta["head_model_extensions"] == ["gaussian_avatars_teeth"]
    assert (meta["num_vertices"], meta["num_faces"], meta["num_splats"]) == (V + TV, F + TF, ply.num_splats)
    avatar = load_avatar(out)
    np.testing.assert_array_equal(avatar.binding.numpy(), ply.binding)  # every splat, GaussianAvatars' order

    ref_model = ga_extend(arrays, teeth_faces().numpy())
    static = params["static_offset"][0].astype(np.float64)
    for frame in (0, 2):
        verts = ga_flame(ref_model, frame_of(params, frame), static)  # dynamic_offset unused, as in GA
        means, scales, rots = ga_splats(verts, ref_model["f"], ply)
        if frame == 0:  # the neutral frame of the imported avatar
            got = avatar.deform(avatar.neutral_vertices())
            g_means, g_scales, g_quats = got.means[0].numpy(), got.scales[0].numpy(), got.quats[0].numpy()
        else:  # a frame of the export's parameters, through export-ply
            world = tmp_path / "f.ply"
            argv = ["avatar", "export-ply", "--avatar", str(out), "--out", str(world)]
            assert run_cli([*argv, "--frame-params", str(tmp_path / "ga" / "flame_param.npz"), "--frame", "2"]) == 0
            assert "dynamic_offset is non-zero" in capsys.readouterr().err
            w = read_gaussian_ply(world)
            g_means, g_scales, g_quats = w.means, np.exp(w.log_scales), w.quats
        teeth = ply.binding >= F
        assert np.abs(g_means - means).max() < 1e-5
        assert np.abs(g_means[teeth] - means[teeth]).max() < 1e-5
        np.testing.assert_allclose(g_scales, scales, rtol=1e-4)
        np.testing.assert_allclose(quat_matrix(g_quats.astype(np.float64)), rots, atol=1e-4)
        assert np.abs(means[teeth] - verts[V:].mean(0)).max() > 1e-3  # teeth splats really moved


def test_dynamic_offset_modes(
    flame: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, arrays = flame
    ply = random_splats(TF + 50, np.r_[F : F + TF, 0:50])
    params = ga_params(2, seed=3, dynamic=3e-3)
    write_export(tmp_path / "ga", ply, params)
    ref_model = ga_extend(arrays, teeth_faces().numpy())
    static = params["static_offset"][0].astype(np.float64)

    def neutral_error(avatar_dir: Path, offset: np.ndarray) -> float:
        got = load_avatar(avatar_dir).neutral_vertices().numpy()
        return float(np.abs(got - ga_flame(ref_model, frame_of(params, 0), offset)).max())

    # GaussianAvatars export: ignored by default (one note), added on request
    notes: list[str] = []
    import_gaussian_avatars(tmp_path / "ga", path, tmp_path / "auto", note=notes.append)
    assert len(notes) == 1 and "dynamic_offset" in notes[0]
    import_gaussian_avatars(tmp_path / "ga", path, tmp_path / "applied", dynamic_offset="apply", note=notes.append)
    assert len(notes) == 1
    dyn0 = params["dynamic_offset"][0].astype(np.float64)
    assert neutral_error(tmp_path / "auto", static) < 1e-5 < neutral_error(tmp_path / "auto", static + dyn0)
    assert neutral_error(tmp_path / "applied", static + dyn0) < 1e-5 < neutral_error(tmp_path / "applied", static)
    zero = dict(params, dynamic_offset=np.zeros_like(params["dynamic_offset"]))
    write_export(tmp_path / "ga0", ply, zero)
    import_gaussian_avatars(tmp_path / "ga0", path, tmp_path / "zero", note=notes.append)
    assert len(notes) == 1  # all-zero offsets: no note

    # VHAP-style motion file (not beside a point_cloud.ply): applied by default
    motion = ga_params(3, seed=9, dynamic=3e-3)
    (tmp_path / "motion").mkdir()
    np.savez(tmp_path / "motion" / "flame_param.npz", **motion)
    flame_rows = dict(motion, dynamic_offset=motion["dynamic_offset"][:, :V])  # tracked without teeth
    np.savez(tmp_path / "motion" / "no_teeth.npz", **flame_rows)

    def export(file: str, *extra: str) -> np.ndarray:
        world = tmp_path / "w.ply"
        argv = ["avatar", "export-ply", "--avatar", str(tmp_path / "auto"), "--out", str(world)]
        assert run_cli([*argv, "--frame-params", str(tmp_path / "motion" / file), "--frame", "1", *extra]) == 0
        return read_gaussian_ply(world).means

    def expected(offset: np.ndarray) -> np.ndarray:
        p = dict(frame_of(motion, 1), shape=params["shape"].astype(np.float64))  # identity: the avatar's
        return ga_splats(ga_flame(ref_model, p, offset), ref_model["f"], ply)[0]

    dyn = motion["dynamic_offset"][1].astype(np.float64)
    capsys.readouterr()
    assert np.abs(export("flame_param.npz") - expected(static + dyn)).max() < 1e-5
    assert "note" not in capsys.readouterr().err
    assert np.abs(export("flame_param.npz", "--dynamic-offset", "ignore") - expected(static)).max() < 1e-5
    assert "dynamic_offset is non-zero" in capsys.readouterr().err
    padded = np.concatenate([dyn[:V], np.zeros((TV, 3))])
    assert np.abs(export("no_teeth.npz") - expected(static + padded)).max() < 1e-5
    with pytest.raises(L2TError, match="dynamic_offset mode"):
        import_gaussian_avatars(tmp_path / "ga", path, tmp_path / "bad", dynamic_offset="sometimes")


def test_drop_teeth_still_available(flame: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    path, _ = flame
    ply = random_splats(TF + 30, np.r_[F : F + TF, 0:30])
    write_export(tmp_path / "ga", ply, ga_params(1))
    avatar = import_gaussian_avatars(tmp_path / "ga", path, tmp_path / "plain", drop_teeth=True)
    assert (avatar.num_splats, avatar.n_verts, avatar.num_faces) == (30, V, F)
    meta = json.loads((tmp_path / "plain" / "avatar.json").read_text())
    assert "head_model_extensions" not in meta and meta["num_vertices"] == V
    assert load_avatar(tmp_path / "plain").num_splats == 30


# ----------------------------------------------------------------------------- render
MOUTH_X = np.linspace(-0.025, 0.025, 15)
TEETH_RGB, LIP_RGB, SKIN_RGB = (0.95, 0.95, 0.92), (0.8, 0.1, 0.1), (0.85, 0.6, 0.45)
N_LIP_FACES, N_SKIN_FACES = 56, 56


def mouth_arrays() -> dict[str, np.ndarray]:
    """FLAME-sized model whose only surfaces are two lips along GaussianAvatars' lip rings, and skin.

    The rings are the inner edges of the lips (upper at y = +4 mm, lower at -4 mm) on an arch that
    curves back at the corners; 8 mm of lip, then 23 mm of skin above and below. The upper half rides
    on the neck joint, the lower half on the jaw, whose joint sits 8 cm behind and 1 cm above the
    mouth. Every other vertex is scattered far behind.
    """
    rng = np.random.default_rng(0)
    vt = rng.normal(size=(V, 3)) * 0.05 + [0, 0, -0.5]
    arch = -8 * MOUTH_X**2
    up_outer, lo_outer = np.arange(100, 115), np.arange(200, 215)
    vt[RING_UP] = np.stack([MOUTH_X, np.full(15, 0.004), arch], -1)
    vt[RING_LO] = np.stack([MOUTH_X, np.full(15, -0.004), arch], -1)
    vt[up_outer] = np.stack([MOUTH_X, np.full(15, 0.012), arch + 0.002], -1)
    vt[lo_outer] = np.stack([MOUTH_X, np.full(15, -0.012), arch + 0.002], -1)
    up_skin, lo_skin = np.arange(300, 315), np.arange(400, 415)
    vt[up_skin] = np.stack([MOUTH_X, np.full(15, 0.035), arch], -1)
    vt[lo_skin] = np.stack([MOUTH_X, np.full(15, -0.035), arch], -1)
    joints = {4000: [0, -0.1, -0.05], 4001: [0, -0.05, -0.05], 4002: [0, 0.01, -0.08]}
    joints.update({4003: [0.03, 0.06, -0.01], 4004: [-0.03, 0.06, -0.01]})
    for i, p in joints.items():
        vt[i] = p
    regressor = np.zeros((5, V))
    regressor[np.arange(5), list(joints)] = 1.0
    weights = np.zeros((V, 5))
    weights[:, 0] = 1.0
    weights[np.r_[RING_UP, up_outer, up_skin]] = [0, 1, 0, 0, 0]
    weights[np.r_[RING_LO, lo_outer, lo_skin]] = [0, 0, 1, 0, 0]
    lips = []  # lips, then skin: N_LIP_FACES + N_SKIN_FACES
    for inner, outer in ((RING_UP, up_outer), (RING_LO, lo_outer), (up_outer, up_skin), (lo_outer, lo_skin)):
        for k in range(14):
            lips += [[inner[k], inner[k + 1], outer[k]], [inner[k + 1], outer[k + 1], outer[k]]]
    rest = np.stack([rng.choice(np.arange(500, 1500), 3, replace=False) for _ in range(F - len(lips))])
    return {
        "v_template": vt,
        "shapedirs": np.zeros((V, 3, 2)),
        "n_shape": np.asarray(1),
        "posedirs": np.zeros((V, 3, 36)),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": np.array([[2**32 - 1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "f": np.concatenate([np.asarray(lips), rest]).astype(np.uint32),
    }


def painted_splats(model_path: Path) -> GaussianPly:
    """Flat splats covering the lip (red) and skin triangles and every teeth triangle (off-white)."""
    model = add_gaussian_avatars_teeth(load_head_model(model_path))
    faces = np.r_[0 : N_LIP_FACES + N_SKIN_FACES, F : F + TF]
    bary = np.array([(i, j, 8 - i - j) for i in range(1, 7) for j in range(1, 8 - i)], float) / 8  # interior
    binding = np.repeat(faces, len(bary))
    corners = model.v_template[model.faces[binding]]  # [N, 3, 3]
    world = torch.einsum("nc,ncd->nd", torch.from_numpy(np.tile(bary, (len(faces), 1))).float(), corners)
    frames = triangle_frames(model.v_template, model.faces)
    n = binding.size
    size = np.where(binding >= F, 2.5e-3, np.where(binding < N_LIP_FACES, 1e-3, 2e-3))  # in-plane sigma
    log_scales = torch.log(torch.from_numpy(np.stack([size, np.full(n, 2e-4), size], -1)).float())
    world_quats = frames.quats[0, binding]  # aligned with the triangles: identity in local frames
    means, quats, local_log_scales = world_to_local(frames, torch.from_numpy(binding), world, log_scales, world_quats)
    rgb = np.where((binding >= F)[:, None], TEETH_RGB, np.where((binding < N_LIP_FACES)[:, None], LIP_RGB, SKIN_RGB))
    return GaussianPly(
        means=means.numpy(),
        log_scales=local_log_scales.numpy(),
        quats=quats.numpy(),
        opacity_logits=np.full(n, 6.0, np.float32),
        sh=((rgb - 0.5) / 0.28209479177387814).astype(np.float32)[:, None, :],
        binding=binding,
    )


def test_render_shows_teeth_between_open_lips(tmp_path: Path) -> None:
    path = write_pickle(tmp_path / "mouth.pkl", mouth_arrays())
    params = {k: np.zeros((1, n), np.float32) for k, n in (("expr", 1), ("rotation", 3), ("neck_pose", 3))}
    params.update({k: np.zeros((1, n), np.float32) for k, n in (("jaw_pose", 3), ("eyes_pose", 6))})
    params.update(shape=np.zeros(1, np.float32), translation=np.zeros((1, 3), np.float32))
    write_export(tmp_path / "ga", painted_splats(path), params)
    size = 192
    bbox = torch.tensor([[-0.03, -0.03, -0.03], [0.03, 0.02, 0.01]])
    viewmats, ks = head_camera("front", bbox, size, size)

    def render(avatar_dir: Path) -> tuple[np.ndarray, torch.Tensor]:
        avatar = load_avatar(avatar_dir)
        verts = avatar.vertices_from_params({"jaw_pose": torch.tensor([0.12, 0.0, 0.0])})[0]
        rgb, _, _ = rasterize(
            **avatar.splat_params(verts), viewmats=viewmats, Ks=ks, width=size, height=size,
            backgrounds=torch.zeros(1, 3), backend="torch",
        )  # fmt: skip
        return rgb[0].numpy(), verts

    def pixel(img: np.ndarray, point: torch.Tensor) -> np.ndarray:
        cam = viewmats[0, :3, :3] @ point.float() + viewmats[0, :3, 3]
        u, v = (ks[0] @ (cam / cam[2]))[:2].round().long().tolist()
        assert 0 <= u < size and 0 <= v < size
        return img[v, u]

    import_gaussian_avatars(tmp_path / "ga", path, tmp_path / "whole")
    import_gaussian_avatars(tmp_path / "ga", path, tmp_path / "no_teeth", drop_teeth=True)
    img, verts = render(tmp_path / "whole")
    plain, _ = render(tmp_path / "no_teeth")
    ring_up, ring_lo = verts[RING_UP[7]], verts[RING_LO[7]]  # inner lip edges at the middle of the arch
    assert float(ring_up[1] - ring_lo[1]) > 0.015  # the jaw opened the mouth
    teeth = verts[V:].reshape(8, 15, 3)[:, 7]  # middle column of each teeth row
    upper_band = teeth[2] + 0.3 * (teeth[0] - teeth[2])  # on the upper front face, just under the lip
    upper_band[1] = 0.5 * (ring_up[1] + teeth[2][1])
    lower_band = teeth[3] + 0.15 * (teeth[1] - teeth[3])  # on the lower front face, above the lower lip
    assert ring_lo[1] < lower_band[1] < upper_band[1] < ring_up[1]
    for point in (upper_band, lower_band):
        assert pixel(img, point).min() > 0.75  # off-white teeth between the lips
        assert pixel(plain, point).max() < 0.1  # without the teeth: the black background
    for lip in (0.5 * (verts[RING_UP[7]] + verts[107]), 0.5 * (verts[RING_LO[7]] + verts[207])):
        r, g, b = pixel(img, lip)
        assert r > 0.6 and g < 0.25 and b < 0.25  # the lips themselves
