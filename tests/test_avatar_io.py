"""Avatars: deformation, folder format, world-space export, GaussianAvatars import, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from l2t_gs.cli import avatar as avatar_cli
from l2t_gs.core.rotation import quat_to_matrix
from l2t_gs.errors import L2TError
from l2t_gs.gaussians import avatar_io
from l2t_gs.gaussians.avatar import GaussianAvatar, default_neutral_params
from l2t_gs.gaussians.avatar_io import (
    GA_TEETH_FACES,
    GA_TEETH_VERTICES,
    import_gaussian_avatars,
    load_avatar,
    save_avatar,
)
from l2t_gs.gaussians.binding import local_to_world, triangle_frames
from l2t_gs.gaussians.export import export_world_ply
from l2t_gs.gaussians.ply import GaussianPly, read_gaussian_ply, write_gaussian_ply
from l2t_gs.rig import FlameRig, load_head_model

S, E, J = 4, 3, 5


def grid_mesh(rows: int = 4, cols: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A bumpy open grid: V = rows * cols vertices, F = 2 (rows-1)(cols-1) triangles."""
    y, x = np.meshgrid(np.linspace(-0.1, 0.1, rows), np.linspace(-0.1, 0.1, cols), indexing="ij")
    z = 0.02 * np.sin(7 * x) * np.cos(5 * y)
    verts = np.stack([x, y, z], -1).reshape(-1, 3)
    faces = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            i = r * cols + c
            faces += [[i, i + 1, i + cols], [i + 1, i + cols + 1, i + cols]]
    return verts, np.asarray(faces, dtype=np.int64)


def write_flame_npz(path: Path, seed: int = 0) -> tuple[int, int]:
    """A tiny FLAME-format model (5 joints, S identity + E expression components)."""
    rng = np.random.default_rng(seed)
    verts, faces = grid_mesh()
    v = len(verts)
    weights = rng.uniform(0.1, 1.0, size=(v, J))
    weights /= weights.sum(1, keepdims=True)
    regressor = rng.uniform(0.0, 1.0, size=(J, v))
    regressor /= regressor.sum(1, keepdims=True)
    np.savez(
        path,
        v_template=verts,
        shapedirs=rng.normal(scale=0.01, size=(v, 3, S + E)),
        n_shape=np.asarray(S),
        posedirs=rng.normal(scale=0.001, size=(v, 3, 9 * (J - 1))),
        J_regressor=regressor,
        weights=weights,
        kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]]),
        f=faces,
    )
    return v, len(faces)


@pytest.fixture()
def flame_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_flame.npz"
    write_flame_npz(path)
    return path


def random_splats(n: int, f: int, degree: int = 3, seed: int = 0) -> GaussianPly:
    rng = np.random.default_rng(seed)
    return GaussianPly(
        means=rng.normal(scale=0.3, size=(n, 3)).astype(np.float32),
        log_scales=rng.normal(scale=0.3, size=(n, 3)).astype(np.float32) - 1.0,
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(scale=0.2, size=(n, (degree + 1) ** 2, 3)).astype(np.float32),
        binding=rng.integers(0, f, size=n),
    )


def make_avatar(flame_path: Path, n: int = 50, seed: int = 0) -> GaussianAvatar:
    model = load_head_model(flame_path)
    ply = random_splats(n, model.n_faces, seed=seed)
    params = default_neutral_params(model)
    rng = np.random.default_rng(seed + 1)
    params["shape"] = torch.from_numpy(rng.normal(size=S).astype(np.float32))
    params["jaw_pose"] = torch.tensor([0.2, 0.0, 0.0])
    params["static_offset"] = torch.from_numpy(rng.normal(scale=1e-3, size=(model.n_verts, 3)).astype(np.float32))
    return avatar_io.avatar_from_ply(ply, model, params, name="tiny")


# ----------------------------------------------------------------------------- avatar


def test_deform_matches_binding_math(flame_path: Path) -> None:
    avatar = make_avatar(flame_path)
    assert avatar.head_model_spec == str(flame_path.resolve())
    verts = avatar.neutral_vertices()
    rig = FlameRig(avatar.head_model)
    p = avatar.neutral_params
    expected = rig(**{k: v[None] for k, v in p.items()})[0]
    torch.testing.assert_close(verts, expected)
    batch = torch.stack([verts, verts * 1.5, verts + 0.1])
    frames = avatar.deform(batch)
    assert len(frames) == 3
    assert frames.means.shape == (3, 50, 3) and frames.quats.shape == (3, 50, 4)
    assert frames.scales.shape == (3, 50, 3) and frames.opacities.shape == (50,)
    torch.testing.assert_close(frames.means[1], frames.means[0] * 1.5)
    torch.testing.assert_close(frames.scales[1], frames.scales[0] * 1.5)
    torch.testing.assert_close(frames.means[2], frames.means[0] + 0.1)
    torch.testing.assert_close(frames.opacities, torch.sigmoid(avatar.opacity_logits))
    m, q, s = local_to_world(
        triangle_frames(verts, avatar.faces), avatar.binding, avatar.means, avatar.log_scales, avatar.quats
    )
    torch.testing.assert_close(frames.means[0], m[0])
    torch.testing.assert_close(frames.scales[0], s[0].exp())
    params = avatar.splat_params(frames, index=2)
    assert set(params) == {"means", "quats", "scales", "opacities", "colors", "sh_degree"}
    assert params["sh_degree"] == 3 and params["colors"].shape == (50, 16, 3)
    torch.testing.assert_close(params["means"], frames.means[2])
    torch.testing.assert_close(avatar.splat_params()["means"], frames.means[0])


def test_vertices_from_batched_params(flame_path: Path) -> None:
    avatar = make_avatar(flame_path)
    jaw = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0]])
    verts = avatar.vertices_from_params({"jaw_pose": jaw, "expr": torch.ones(E)})
    rig = FlameRig(avatar.head_model)
    p = avatar.neutral_params
    for i in range(2):
        ref = rig(**{**{k: v[None] for k, v in p.items()}, "jaw_pose": jaw[i : i + 1], "expr": torch.ones(1, E)})
        torch.testing.assert_close(verts[i], ref[0])


def test_validation_errors(flame_path: Path) -> None:
    avatar = make_avatar(flame_path)
    with pytest.raises(L2TError, match="topology mismatch.*vertices"):
        avatar.deform(torch.zeros(2, avatar.n_verts + 1, 3))
    with pytest.raises(L2TError, match="topology mismatch.*faces"):
        avatar.deform(avatar.neutral_vertices(), faces=avatar.faces[:-1])

    def rebuild(**changes: object) -> GaussianAvatar:
        kwargs = {
            "means": avatar.means, "log_scales": avatar.log_scales, "quats": avatar.quats,
            "opacity_logits": avatar.opacity_logits, "sh": avatar.sh, "binding": avatar.binding,
            "head_model": avatar.head_model, "neutral_params": avatar.neutral_params,
        }  # fmt: skip
        kwargs.update(changes)
        return GaussianAvatar(**kwargs)  # type: ignore[arg-type]

    bad = avatar.means.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(L2TError, match="non-finite.*means"):
        rebuild(means=bad)
    with pytest.raises(L2TError, match="binding out of range"):
        rebuild(binding=avatar.binding + avatar.num_faces)
    with pytest.raises(L2TError, match="zero quaternion"):
        rebuild(quats=torch.zeros_like(avatar.quats))
    with pytest.raises(L2TError, match="static_offset"):
        rebuild(neutral_params={**avatar.neutral_params, "static_offset": torch.zeros(3, 3)})
    with pytest.raises(L2TError, match="SH"):
        rebuild(sh=avatar.sh[:, :5])


# ----------------------------------------------------------------------------- folder format


def test_save_load_round_trip(flame_path: Path, tmp_path: Path) -> None:
    avatar = make_avatar(flame_path)
    out = save_avatar(avatar, tmp_path / "tiny")
    assert sorted(p.name for p in out.iterdir()) == [
        "avatar.json",
        "flame_param.npz",
        "head_model.npz",
        "point_cloud.ply",
    ]
    meta = json.loads((out / "avatar.json").read_text())
    assert meta["head_model"] == "head_model.npz" and meta["sh_degree"] == 3 and meta["num_splats"] == 50
    with np.load(out / "flame_param.npz") as fp:
        assert fp["shape"].shape == (S,) and fp["expr"].shape == (1, E) and fp["eyes_pose"].shape == (1, 6)
        assert fp["static_offset"].shape == (1, avatar.n_verts, 3)
    back = load_avatar(out)
    for key in ("means", "log_scales", "quats", "opacity_logits", "sh", "binding"):
        assert torch.equal(getattr(back, key), getattr(avatar, key)), key
    for key, value in avatar.neutral_params.items():
        torch.testing.assert_close(back.neutral_params[key], value, rtol=0, atol=0)
    assert back.name == "tiny"
    torch.testing.assert_close(back.neutral_vertices(), avatar.neutral_vertices())
    # saving again over an avatar folder replaces it; over unrelated data it refuses
    save_avatar(back, out)
    assert load_avatar(out).num_splats == 50
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "keep.txt").write_text("x")
    with pytest.raises(L2TError, match="refusing"):
        save_avatar(avatar, junk)
    assert (junk / "keep.txt").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_load_by_name_and_errors(flame_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    save_avatar(make_avatar(flame_path), shipped / "tiny")
    monkeypatch.setattr(avatar_io, "shipped_avatars_dir", lambda: shipped)
    assert load_avatar("tiny").num_splats == 50
    with pytest.raises(L2TError, match=r"unknown avatar 'nobody'.*tiny"):
        load_avatar("nobody")
    with pytest.raises(L2TError, match="not found"):
        load_avatar(tmp_path / "no" / "such")
    # topology mismatch with an overriding head model
    other = tmp_path / "other.npz"
    np.savez(other, **{**dict(np.load(flame_path)), **_grid_arrays(3, 5, np.load(flame_path))})
    with pytest.raises(L2TError, match="topology mismatch"):
        load_avatar("tiny", head_model=other)
    # a corrupted binding in the PLY
    folder = shipped / "tiny"
    ply = read_gaussian_ply(folder / "point_cloud.ply")
    ply.binding[0] = 10_000
    write_gaussian_ply(folder / "point_cloud.ply", ply)
    with pytest.raises(L2TError, match="binding out of range"):
        load_avatar("tiny")


def _grid_arrays(rows: int, cols: int, ref: np.lib.npyio.NpzFile) -> dict[str, np.ndarray]:
    """Arrays of a smaller grid model with the same joints (a different topology)."""
    verts, faces = grid_mesh(rows, cols)
    v = len(verts)
    return {
        "v_template": verts,
        "shapedirs": ref["shapedirs"][:v],
        "posedirs": ref["posedirs"][:v],
        "J_regressor": np.full((J, v), 1.0 / v),
        "weights": ref["weights"][:v],
        "f": faces,
    }


def test_ga_export_folder_is_not_an_avatar(tmp_path: Path) -> None:
    (tmp_path / "point_cloud.ply").write_bytes(b"")
    np.savez(tmp_path / "flame_param.npz", expr=np.zeros((1, 3)))
    with pytest.raises(L2TError, match="import-ga"):
        load_avatar(tmp_path)


def test_world_export_equals_deform(flame_path: Path, tmp_path: Path) -> None:
    avatar = make_avatar(flame_path)
    out = tmp_path / "world.ply"
    export_world_ply(avatar, out)
    ply = read_gaussian_ply(out)
    assert ply.binding is None
    frames = avatar.deform(avatar.neutral_vertices())
    np.testing.assert_allclose(ply.means, frames.means[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(np.exp(ply.log_scales), frames.scales[0].numpy(), rtol=1e-5)
    rot_file = quat_to_matrix(torch.from_numpy(ply.quats))
    torch.testing.assert_close(rot_file, quat_to_matrix(frames.quats[0]), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(ply.opacity_logits, avatar.opacity_logits.numpy())
    np.testing.assert_array_equal(ply.sh, avatar.sh.numpy())  # SH are not rotated (as GaussianAvatars)


# ----------------------------------------------------------------------------- GaussianAvatars import


def write_ga_export(folder: Path, flame_path: Path, *, teeth: bool = False, n: int = 40, t: int = 3) -> GaussianPly:
    """A GaussianAvatars-style export: local PLY with binding, flame_param.npz with T frames."""
    model = load_head_model(flame_path)
    v, f = model.n_verts, model.n_faces
    rng = np.random.default_rng(7)
    ply = random_splats(n, f, seed=3)
    if teeth:
        ply.binding[:5] = f + rng.integers(0, GA_TEETH_FACES, size=5)
        v = v + GA_TEETH_VERTICES
    folder.mkdir(parents=True)
    write_gaussian_ply(folder / "point_cloud.ply", ply)
    np.savez(
        folder / "flame_param.npz",
        shape=rng.normal(size=S).astype(np.float32),
        expr=rng.normal(size=(t, E)).astype(np.float32),
        rotation=rng.normal(scale=0.1, size=(t, 3)).astype(np.float32),
        neck_pose=rng.normal(scale=0.1, size=(t, 3)).astype(np.float32),
        jaw_pose=rng.normal(scale=0.1, size=(t, 3)).astype(np.float32),
        eyes_pose=rng.normal(scale=0.1, size=(t, 6)).astype(np.float32),
        translation=rng.normal(scale=0.1, size=(t, 3)).astype(np.float32),
        static_offset=rng.normal(scale=1e-3, size=(1, v, 3)).astype(np.float32),
        dynamic_offset=np.zeros((t, v, 3), dtype=np.float32),
    )
    return ply


def test_import_gaussian_avatars(flame_path: Path, tmp_path: Path) -> None:
    export = tmp_path / "ga" / "point_cloud" / "iteration_30000"
    ply = write_ga_export(export, flame_path)
    avatar = import_gaussian_avatars(tmp_path / "ga", flame_path, tmp_path / "imported", frame=1)
    back = load_avatar(tmp_path / "imported")
    assert back.num_splats == ply.num_splats and back.name == "imported"
    assert torch.equal(back.means, torch.from_numpy(ply.means))
    assert torch.equal(back.binding, torch.from_numpy(ply.binding))
    with np.load(export / "flame_param.npz") as fp:
        torch.testing.assert_close(back.neutral_params["jaw_pose"], torch.from_numpy(fp["jaw_pose"][1]))
        torch.testing.assert_close(back.neutral_params["static_offset"], torch.from_numpy(fp["static_offset"][0]))
        torch.testing.assert_close(back.neutral_params["shape"], torch.from_numpy(fp["shape"]))
    assert (tmp_path / "imported" / "head_model.npz").is_file()
    assert Path(avatar.head_model_spec).parent == (tmp_path / "imported").resolve()
    torch.testing.assert_close(back.neutral_vertices(), avatar.neutral_vertices())


def test_import_teeth_export(flame_path: Path, tmp_path: Path) -> None:
    ply = write_ga_export(tmp_path / "ga", flame_path, teeth=True)
    # a tiny (non-FLAME) model cannot get GaussianAvatars' teeth: only --drop-teeth imports it
    with pytest.raises(L2TError, match="5 of 40 splats .*teeth extension needs a FLAME model.*--drop-teeth"):
        import_gaussian_avatars(tmp_path / "ga", flame_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    avatar = import_gaussian_avatars(tmp_path / "ga", flame_path, tmp_path / "out", drop_teeth=True)
    assert avatar.num_splats == ply.num_splats - 5
    assert "dropped 5" in avatar.notes
    back = load_avatar(tmp_path / "out")
    assert back.neutral_params["static_offset"].shape == (back.n_verts, 3)


def test_import_wrong_model(flame_path: Path, tmp_path: Path) -> None:
    write_ga_export(tmp_path / "ga", flame_path)
    ply = read_gaussian_ply(tmp_path / "ga" / "point_cloud.ply")
    ply.binding[0] = 5000
    write_gaussian_ply(tmp_path / "ga" / "point_cloud.ply", ply)
    with pytest.raises(L2TError, match="wrong FLAME model"):
        import_gaussian_avatars(tmp_path / "ga", flame_path, tmp_path / "out", drop_teeth=True)
    with pytest.raises(L2TError, match="not a GaussianAvatars export"):
        import_gaussian_avatars(tmp_path, flame_path, tmp_path / "out")


# ----------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="l2t-gs")
    avatar_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_import_and_export(flame_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_ga_export(tmp_path / "ga", flame_path, t=4)
    out = tmp_path / "av"
    assert (
        run_cli(["avatar", "import-ga", str(tmp_path / "ga"), "--flame-model", str(flame_path), "--out", str(out)]) == 0
    )
    assert "wrote" in capsys.readouterr().out
    ply_path = tmp_path / "frame.ply"
    assert run_cli(["avatar", "export-ply", "--avatar", str(out), "--out", str(ply_path)]) == 0
    avatar = load_avatar(out)
    world = read_gaussian_ply(ply_path)
    np.testing.assert_allclose(world.means, avatar.deform(avatar.neutral_vertices()).means[0].numpy(), atol=1e-6)
    # a frame of a motion file: dynamic parameters from the file, identity from the avatar
    params = tmp_path / "ga" / "flame_param.npz"
    argv = [
        "avatar",
        "export-ply",
        "--avatar",
        str(out),
        "--out",
        str(ply_path),
        "--frame-params",
        str(params),
    ]
    assert run_cli([*argv, "--frame", "2"]) == 0
    with np.load(params) as fp:
        dyn = {
            k: torch.from_numpy(fp[k][2])
            for k in ("expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")
        }
    verts = avatar.vertices_from_params(dyn)[0]
    world = read_gaussian_ply(ply_path)
    np.testing.assert_allclose(world.means, avatar.deform(verts).means[0].numpy(), atol=1e-6)
    with pytest.raises(L2TError, match="frame 9 out of range"):
        run_cli([*argv, "--frame", "9"])


def test_head_model_reference(flame_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The built-in head is referenced by name; an in-memory head model is written into the folder."""
    import dataclasses

    import l2t_gs.gaussians.avatar as avatar_mod
    import l2t_gs.rig as rig
    import l2t_gs.rig.loader as loader

    real = loader.resolve_head_spec

    def fake(spec: str) -> Path:
        return flame_path if spec == "builtin" else real(spec)

    monkeypatch.setattr(loader, "resolve_head_spec", fake)
    monkeypatch.setattr(rig, "resolve_head_spec", fake)
    monkeypatch.setattr(avatar_mod, "resolve_head_spec", fake)
    avatar = make_avatar(flame_path)
    assert avatar.head_model_spec == "builtin"
    out = save_avatar(avatar, tmp_path / "b")
    assert json.loads((out / "avatar.json").read_text())["head_model"] == "builtin"
    assert not (out / "head_model.npz").exists()
    assert load_avatar(out).num_splats == avatar.num_splats

    memory = avatar_io.avatar_from_ply(
        read_gaussian_ply(out / "point_cloud.ply"),
        dataclasses.replace(avatar.head_model, source=""),
        avatar.neutral_params,
    )
    assert memory.head_model_spec == ""
    out2 = save_avatar(memory, tmp_path / "m")
    assert json.loads((out2 / "avatar.json").read_text())["head_model"] == "head_model.npz"
    torch.testing.assert_close(load_avatar(out2).neutral_vertices(), avatar.neutral_vertices())
