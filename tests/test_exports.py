"""Exports to other tools: glTF animation (.glb), ARKit curves (Live Link Face CSV), degree-3 PLY, extras.

Real clients where installed: the Khronos glTF validator (node + npm ``gltf-validator``), Blender
(headless) and ``plyfile`` read the files; CI installs all three (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.assets import asset_path
from l2t_gs.cli.main import main
from l2t_gs.errors import L2TError
from l2t_gs.io.gltf import read_glb
from l2t_gs.rig import FlameRig, load_head_model
from l2t_gs.rig.arkit import (
    ARKIT_SHAPES,
    LIVE_LINK_ROTATIONS,
    LIVE_LINK_SHAPES,
    RIDGE,
    euler_yaw_pitch_roll,
    load_arkit_mapping,
    rig_coefficients,
)
from l2t_gs.rig.gltf_export import HeadAnimationWriter, head_gltf_rig

SUPPORT = Path(__file__).parent / "support"
FPS = 25
# Live Link Face's CSV header, as the app writes it (independent copy of the layout)
LIVE_LINK_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,"
    "MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,"
    "MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,MouthShrugUpper,"
    "MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,"
    "BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,"
    "CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,"
    "LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
).split(",")


@pytest.fixture(scope="module")
def head():
    return load_head_model("builtin")


def _random_params(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    jaw = torch.zeros(n, 3, dtype=torch.float64)
    jaw[:, 0] = torch.rand(n, generator=g, dtype=torch.float64) * 0.3
    jaw[:, 1:] = (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 0.1
    return {
        "expr": torch.rand(n, 12, generator=g, dtype=torch.float64) * 1.8 - 0.4,
        "jaw_pose": jaw,
        "rotation": (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 0.4,
        "neck_pose": (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 0.4,
        "eyes_pose": (torch.rand(n, 6, generator=g, dtype=torch.float64) - 0.5) * 0.4,
    }


def _pose(p: dict[str, torch.Tensor]) -> np.ndarray:
    return torch.cat([p["rotation"], p["neck_pose"], p["jaw_pose"], p["eyes_pose"]], 1).reshape(-1, 5, 3).numpy()


# ----------------------------------------------------------------------------------------------- glTF
def test_gltf_rig_reproduces_flame_lbs(head):
    """Morph targets + glTF skinning reproduce FLAME LBS (all joints moving) to float64 precision."""
    p = _random_params(6)
    verts = FlameRig(head.to(dtype=torch.float64))(**p).numpy()
    rig = head_gltf_rig(head, animated=("neck", "jaw", "left_eye", "right_eye"))
    w, err = rig.fit(verts, _pose(p))
    assert err.max() < 1e-6  # metres
    # the fitted expression weights are the rig's own coefficients
    assert np.abs(w[:, :12] - p["expr"].numpy()).max() < 1e-4
    # without the neck's correctives the neck motion cannot be reproduced: the error is reported
    _, err_jaw_only = head_gltf_rig(head).fit(verts, _pose(p))
    assert err_jaw_only.max() > 1e-4


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _accessor(doc: dict, binary: bytes, i: int) -> np.ndarray:
    """Accessor ``i`` as an array ``[count, width]`` (dense or sparse, glTF 2.0 section 3.6.2)."""
    acc = doc["accessors"][i]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc["type"]]

    def block(view_index: int, ctype: int, count: int, offset: int = 0) -> np.ndarray:
        view = doc["bufferViews"][view_index]
        dtype = {5126: "<f4", 5125: "<u4", 5123: "<u2"}[ctype]
        return np.frombuffer(binary, dtype=dtype, count=count, offset=view["byteOffset"] + offset)

    if "bufferView" in acc:
        out = block(acc["bufferView"], acc["componentType"], acc["count"] * width, acc.get("byteOffset", 0))
        out = out.reshape(acc["count"], width).copy()
    else:
        out = np.zeros((acc["count"], width), dtype=np.float32)
    if "sparse" in acc:
        sp = acc["sparse"]
        idx = block(sp["indices"]["bufferView"], sp["indices"]["componentType"], sp["count"])
        out[idx] = block(sp["values"]["bufferView"], acc["componentType"], sp["count"] * width).reshape(-1, width)
    return out


def _evaluate_glb(path: Path, key: int) -> np.ndarray:
    """Vertices of animation key ``key`` computed from the file's contents alone (glTF 2.0 section 3.7)."""
    doc, binary = read_glb(path)
    prim = doc["meshes"][0]["primitives"][0]
    pos = _accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
    anim = doc["animations"][0]
    mesh_node = next(i for i, n in enumerate(doc["nodes"]) if "mesh" in n)
    rot = {}
    for ch in anim["channels"]:
        out = _accessor(doc, binary, anim["samplers"][ch["sampler"]]["output"])
        if ch["target"]["path"] == "weights":
            assert ch["target"]["node"] == mesh_node
            weights = out.reshape(-1, len(prim["targets"]))[key]
        else:
            rot[ch["target"]["node"]] = out[key]
    for t, target in enumerate(prim["targets"]):
        pos = pos + weights[t] * _accessor(doc, binary, target["POSITION"])
    skin = doc["skins"][doc["nodes"][mesh_node]["skin"]]
    parent = {c: i for i, n in enumerate(doc["nodes"]) for c in n.get("children", [])}
    world: dict[int, np.ndarray] = {}
    for j in skin["joints"]:  # parents are listed first
        local = np.eye(4)
        local[:3, :3] = _quat_matrix(rot[j])
        local[:3, 3] = doc["nodes"][j]["translation"]
        world[j] = world[parent[j]] @ local if j in parent else local
    ibm = _accessor(doc, binary, skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    mats = np.stack([world[j] @ ibm[i] for i, j in enumerate(skin["joints"])])
    jidx = _accessor(doc, binary, prim["attributes"]["JOINTS_0"]).astype(np.int64)
    jw = _accessor(doc, binary, prim["attributes"]["WEIGHTS_0"]).astype(np.float64)
    m = np.einsum("vk,vkab->vab", jw, mats[jidx])
    return np.einsum("vab,vb->va", m[:, :3, :3], pos) + m[:, :3, 3]


def test_glb_file_evaluates_to_the_rig(head, tmp_path):
    """The written file, decoded and evaluated independently, gives FLAME's vertices at every key."""
    p = _random_params(4, seed=1)
    verts = FlameRig(head.to(dtype=torch.float64))(**p).numpy()
    writer = HeadAnimationWriter(head_gltf_rig(head, animated=("neck", "jaw", "left_eye", "right_eye")))
    writer.add(verts[:2], _pose(p)[:2])
    writer.add(verts[2:], _pose(p)[2:])
    colors = np.random.default_rng(0).uniform(0, 1, (head.n_verts, 3))
    path = tmp_path / "head.glb"
    size = writer.write(path, head.faces.numpy(), fps=FPS, duration=4.5 / FPS, colors=colors)
    assert path.stat().st_size == size
    for key in range(4):
        assert np.linalg.norm(_evaluate_glb(path, key) - verts[key], axis=1).max() < 2e-6
    doc, binary = read_glb(path)
    times = _accessor(doc, binary, doc["animations"][0]["samplers"][0]["input"])[:, 0]
    assert np.allclose(times, [0, 1 / FPS, 2 / FPS, 3 / FPS, 4.5 / FPS])  # held last frame up to the duration
    assert np.abs(_evaluate_glb(path, 4) - verts[3]).max() < 2e-6
    weights = _accessor(doc, binary, doc["animations"][0]["samplers"][0]["output"])
    assert weights.min() >= 0 and weights.max() <= 1  # unit weights (Blender clamps shape keys)
    prim = doc["meshes"][0]["primitives"][0]
    assert np.allclose(_accessor(doc, binary, prim["attributes"]["COLOR_0"]), colors, atol=1e-6)
    assert len(doc["meshes"][0]["extras"]["targetNames"]) == len(prim["targets"])
    assert any("sparse" in doc["accessors"][t["POSITION"]] for t in prim["targets"])  # local shapes stored sparsely
    assert [n["name"] for n in doc["nodes"][:5]] == ["head", "neck", "jaw", "left_eye", "right_eye"]


# ----------------------------------------------------------------------------------------------- render exports
@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1.2 s of the sample ("hello, my...") rendered with a small random-weight rig-output model (fast):
    the same motion as .npz, .glb and Live Link CSV."""
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import save_checkpoint

    out = tmp_path_factory.mktemp("exports")
    cfg = Audio2MeshConfig(
        fps=30, enc_dim=32, enc_layers=1, enc_heads=2, d_model=32, n_heads=2, n_layers=1, n_mels=40, output="rig"
    )
    torch.manual_seed(0)
    save_checkpoint(out / "model.pt", Audio2Mesh(cfg, ["spk_a"], 7931))
    audio, sr = sf.read(asset_path("samples", "hello.wav"))
    sf.write(out / "hello12.wav", audio[: int(1.2 * sr)], sr)
    # speech motion only: the rig's expression/jaw basis reproduces it exactly (head motion: see test_glb_with_life)
    common = [str(out / "hello12.wav"), "--model", str(out / "model.pt"), "--size", "16", "--fps", str(FPS), "--quiet",
              "--head-motion", "still", "--blinks", "off"]  # fmt: skip
    assert main(["render", *common, "-o", str(out / "a.mp4"), "--export-mesh", str(out / "a.npz")]) == 0
    assert (
        main(
            [
                "render",
                *common,
                "-o",
                str(out / "b.mp4"),
                "--export-mesh",
                str(out / "b.glb"),
                "--export-arkit",
                str(out / "b.csv"),
            ]
        )  # fmt: skip
        == 0
    )
    return out


def test_glb_with_life(clip, tmp_path):
    """With head motion, blinks and gaze (the CLI default) the .glb carries them as neck/eye rotations and
    morph weights; the fit stays within 3 mm of the rendered vertices (the life rig is not FLAME's skinning)."""
    common = [str(clip / "hello12.wav"), "--model", str(clip / "model.pt"), "--size", "16", "--fps", str(FPS),
              "--quiet", "--head-motion", "natural", "--blinks", "on"]  # fmt: skip
    out = tmp_path / "life.glb"
    assert main(["render", *common, "-o", str(tmp_path / "l.mp4"), "--export-mesh", str(out)]) == 0
    doc, _ = read_glb(out)
    still, _ = read_glb(clip / "b.glb")
    assert doc["asset"]["extras"]["max_vertex_error_m"] < 3e-3
    assert doc["asset"]["extras"]["frames"] == still["asset"]["extras"]["frames"]


def test_render_glb_matches_npz(clip):
    with np.load(clip / "a.npz") as z:
        verts, fps = z["vertices"], float(z["fps"])
    doc, binary = read_glb(clip / "b.glb")
    assert doc["asset"]["extras"]["max_vertex_error_m"] < 1e-6
    assert doc["asset"]["extras"]["frames"] == len(verts) == 30
    for key in (0, 12, len(verts) - 1):
        assert np.linalg.norm(_evaluate_glb(clip / "b.glb", key) - verts[key], axis=1).max() < 1e-5
    times = _accessor(doc, binary, doc["animations"][0]["samplers"][0]["input"])[:, 0]
    assert times[-1] == pytest.approx(1.2, abs=1e-6)  # the audio's duration
    assert np.allclose(times[:-1], np.arange(len(verts)) / fps, atol=1e-6)


def _node_with_validator() -> tuple[str, dict] | None:
    node = shutil.which("node")
    if node is None:
        return None
    env = dict(os.environ)
    npm = shutil.which("npm")
    if npm:
        root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True).stdout.strip()
        env["NODE_PATH"] = os.pathsep.join(p for p in (env.get("NODE_PATH", ""), root) if p)
    return node, env


def test_glb_passes_khronos_validator(clip):
    found = _node_with_validator()
    if found is None:
        pytest.skip("node is not installed (CI installs node and gltf-validator)")
    node, env = found
    res = subprocess.run(
        [node, str(SUPPORT / "gltf_validate.js"), str(clip / "b.glb")], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["info"]["animationCount"] == 1 and report["info"]["hasSkins"] and report["info"]["hasMorphTargets"]


def test_blender_imports_glb(clip, tmp_path):
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("blender is not installed (CI installs Debian's blender)")
    frames = [0, 14, 29]
    res = subprocess.run(
        [blender, "-b", "--factory-startup", "--python", str(SUPPORT / "blender_gltf_frames.py"), "--",
         str(clip / "b.glb"), str(tmp_path / "bl.npz"), str(FPS), *map(str, frames)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "BLENDER_OK" in res.stdout, res.stdout[-3000:] + res.stderr[-3000:]
    with np.load(tmp_path / "bl.npz") as b, np.load(clip / "a.npz") as z:
        for i, f in enumerate(frames):
            assert np.linalg.norm(b["vertices"][i] - z["vertices"][f], axis=1).max() < 1e-4  # 0.1 mm
        # the imported animation spans the clip: frame 0 .. audio seconds * fps (1.2 s at 25 fps)
        assert b["frame_range"].tolist() == [0, 30]
        assert b["action_range"][1] == pytest.approx(1.2 * FPS, abs=1e-3)


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0].split(","), [ln.split(",") for ln in lines[1:]]


def test_render_arkit_csv(clip):
    header, rows = _read_csv(clip / "b.csv")
    assert header == LIVE_LINK_HEADER
    assert len(rows) == 30 and all(r[1] == "61" for r in rows)
    for i, r in enumerate(rows):  # HH:MM:SS:FF.fff, FF counted at the fps
        h, m, s, ff = r[0].split(":")
        assert int(h) * 3600 + int(m) * 60 + int(s) + float(ff) / FPS == pytest.approx(i / FPS, abs=1e-6)
    w = np.array([[float(x) for x in r[2:54]] for r in rows])
    assert w.min() >= 0 and w.max() <= 1


@pytest.mark.slow
def test_shipped_model_arkit_bilabial_and_open_vowel():
    """The shipped model on the sample's first 1.2 s: the /m/ frames close the lips, the open vowels open the jaw."""
    from l2t_gs.audio.io import load_audio
    from l2t_gs.models.checkpoint import load_model
    from l2t_gs.pipeline import default_model_path

    model = load_model(default_model_path())
    audio = load_audio(asset_path("samples", "hello.wav"), sr=16000)[: int(1.2 * 16000)]
    p = model.predict_params(audio, fps=FPS)
    w = load_arkit_mapping(model.head).from_coefficients(rig_coefficients(p["expr"].numpy(), p["jaw_pose"].numpy()))
    col = {n: i for i, n in enumerate(ARKIT_SHAPES)}
    segs = json.loads(asset_path("samples", "hello.json").read_text())
    mids = {s["phone"]: [] for s in segs}
    for s in segs:
        if s["end"] < 1.2:
            mids[s["phone"]].append(round((s["start"] + s["end"]) / 2 * FPS))
    jaw_open = max(w[f - 1 : f + 2, col["jawOpen"]].max() for f in mids["ah"] + mids["ay"])
    assert jaw_open > 0.2
    for f in mids["m"]:  # the bilabial: lips closed (and pressed), jaw less open than on the vowels
        assert w[f - 1 : f + 2, col["mouthClose"]].max() + w[f - 1 : f + 2, col["mouthPressLeft"]].max() > 0.5
        assert w[f, col["jawOpen"]] < jaw_open - 0.1


# ----------------------------------------------------------------------------------------------- ARKit mapping
def test_arkit_names_and_mapping(head):
    assert len(ARKIT_SHAPES) == 52 and len(set(ARKIT_SHAPES)) == 52
    assert ["Timecode", "BlendShapeCount", *LIVE_LINK_SHAPES, *LIVE_LINK_ROTATIONS] == LIVE_LINK_HEADER
    spec = json.loads(asset_path("head", "arkit_builtin.json").read_text())
    assert set(spec["shapes"]) == set(ARKIT_SHAPES)
    m = load_arkit_mapping(head)
    col = {n: i for i, n in enumerate(ARKIT_SHAPES)}
    distinct = ("eyeBlinkLeft", "eyeLookUpRight", "jawOpen", "jawLeft", "mouthClose", "mouthRollLower")
    pairs = ("mouthSmile", "mouthPress", "mouthFrown", "browDown", "mouthUpperUp")
    for k, name in enumerate(ARKIT_SHAPES):
        if not spec["shapes"][name]:
            assert not m.matrix[:, k].any()  # not on this head: no rig motion
            continue
        a = np.zeros((1, 52))
        a[0, k] = 0.8
        back = m.from_coefficients(m.to_coefficients(a))[0]
        # the recovered weights make the same face, within 2% of the shape's own vertex motion
        err = (m.to_coefficients(back[None]) - m.to_coefficients(a))[0]
        ref = (m.to_coefficients(a) - m.rest)[0]
        assert err @ m.metric @ err < 0.02**2 * (ref @ m.metric @ ref), name
        if name in distinct:
            assert back[k] == pytest.approx(0.8, abs=0.01), name
        stem = name.removesuffix("Left").removesuffix("Right")
        if stem in pairs:  # a symmetric rig shape is shared evenly by the left/right pair
            left, right = back[col[stem + "Left"]], back[col[stem + "Right"]]
            assert left == pytest.approx(0.4, abs=0.01) and right == pytest.approx(0.4, abs=0.01), name


def test_arkit_solution_is_optimal(head):
    """KKT conditions of the bounded least-squares problem hold at the returned weights."""
    m = load_arkit_mapping(head)
    p = _random_params(5, seed=3)
    c = rig_coefficients(p["expr"].numpy(), p["jaw_pose"].numpy(), p["eyes_pose"].numpy())
    a = m.from_coefficients(c, iterations=3000).astype(np.float64)
    h = m.matrix.T @ m.metric @ m.matrix
    lam = RIDGE * np.where(np.diag(h) > 0, np.diag(h), 1.0)
    grad = a @ (h + np.diag(lam)) - (c - m.rest) @ m.metric @ m.matrix
    scale = np.abs(grad).max() + np.abs((c - m.rest) @ m.metric @ m.matrix).max()
    tol = 1e-3 * scale
    assert np.all(grad[a <= 1e-6] >= -tol)
    assert np.all(grad[a >= 1 - 1e-6] <= tol)
    mid = (a > 1e-3) & (a < 1 - 1e-3)
    assert np.all(np.abs(grad[mid]) <= tol)


def test_arkit_articulation_bilabial_and_open_vowel(head):
    """The phone-driven rig (articulation module): /m/ gives mouthClose + mouthPress, /aa/ jawOpen."""
    from l2t_gs.motion.articulation import articulate

    segs = [("sil", 0.0, 0.2), ("aa", 0.2, 0.45), ("m", 0.45, 0.6), ("aa", 0.6, 0.85), ("sil", 0.85, 1.0)]
    tr = articulate(segs, fps=FPS)
    w = load_arkit_mapping(head).from_coefficients(rig_coefficients(tr.expr, tr.jaw_pose, tr.eyes_pose))
    col = {n: i for i, n in enumerate(ARKIT_SHAPES)}
    m, a = round(0.525 * FPS), round(0.325 * FPS)
    assert w[m, col["mouthClose"]] > 0.2 and w[m, col["mouthPressLeft"]] > 0.2
    assert w[m, col["mouthPressLeft"]] == pytest.approx(w[m, col["mouthPressRight"]], abs=0.01)
    assert w[a, col["jawOpen"]] > 0.5 and w[a, col["mouthClose"]] < 0.05
    assert w[m, col["jawOpen"]] < 0.1


def test_euler_yaw_pitch_roll():
    assert np.allclose(euler_yaw_pitch_roll(np.array([0.0, 0.3, 0.0])), [0.3, 0, 0])
    assert np.allclose(euler_yaw_pitch_roll(np.array([0.2, 0.0, 0.0])), [0, 0.2, 0])
    assert np.allclose(euler_yaw_pitch_roll(np.array([0.0, 0.0, -0.1])), [0, 0, -0.1])


# ----------------------------------------------------------------------------------------------- PLY
def _inria_load_ply(path: Path, max_sh_degree: int = 3):
    """The reference 3DGS reader's way (gaussian_model.py load_ply), degree fixed at 3."""
    plyfile = pytest.importorskip("plyfile")
    plydata = plyfile.PlyData.read(str(path))
    el = plydata.elements[0]
    xyz = np.stack((np.asarray(el["x"]), np.asarray(el["y"]), np.asarray(el["z"])), axis=1)
    opacities = np.asarray(el["opacity"])[..., np.newaxis]
    features_dc = np.zeros((xyz.shape[0], 3, 1))
    for c in range(3):
        features_dc[:, c, 0] = np.asarray(el[f"f_dc_{c}"])
    extra_f_names = [p.name for p in el.properties if p.name.startswith("f_rest_")]
    extra_f_names = sorted(extra_f_names, key=lambda x: int(x.split("_")[-1]))
    assert len(extra_f_names) == 3 * (max_sh_degree + 1) ** 2 - 3
    features_extra = np.zeros((xyz.shape[0], len(extra_f_names)))
    for idx, attr_name in enumerate(extra_f_names):
        features_extra[:, idx] = np.asarray(el[attr_name])
    features_extra = features_extra.reshape((features_extra.shape[0], 3, (max_sh_degree + 1) ** 2 - 1))
    scale_names = sorted([p.name for p in el.properties if p.name.startswith("scale_")], key=lambda x: int(x[6:]))
    scales = np.stack([np.asarray(el[n]) for n in scale_names], 1)
    rot_names = sorted([p.name for p in el.properties if p.name.startswith("rot")], key=lambda x: int(x.split("_")[-1]))
    rots = np.stack([np.asarray(el[n]) for n in rot_names], 1)
    return xyz, features_dc, features_extra, opacities, scales, rots


def test_export_ply_sh_degree_3_loads_in_inria_reader(tmp_path, capsys):
    from l2t_gs.gaussians import load_avatar
    from l2t_gs.gaussians.export import world_space_ply
    from l2t_gs.gaussians.ply import read_gaussian_ply, with_sh_degree

    out3, out1 = tmp_path / "d3.ply", tmp_path / "d1.ply"
    assert main(["avatar", "export-ply", "--avatar", "default", "--out", str(out3), "--sh-degree", "3"]) == 0
    assert main(["avatar", "export-ply", "--avatar", "default", "--out", str(out1)]) == 0
    assert "SH degree 3" in capsys.readouterr().out
    ref = world_space_ply(load_avatar("default"))
    k = ref.sh.shape[1]
    assert read_gaussian_ply(out1).sh_degree == ref.sh_degree  # default unchanged
    xyz, dc, extra, opac, scales, rots = _inria_load_ply(out3)
    assert extra.shape == (ref.num_splats, 3, 15)
    assert np.array_equal(xyz, ref.means) and np.array_equal(scales, ref.log_scales) and np.array_equal(rots, ref.quats)
    assert np.array_equal(dc[:, :, 0], ref.sh[:, 0]) and np.array_equal(opac[:, 0], ref.opacity_logits)
    assert np.array_equal(extra[:, :, : k - 1], ref.sh[:, 1:].transpose(0, 2, 1))
    assert not extra[:, :, k - 1 :].any()
    with pytest.raises(AssertionError):  # the reference reader refuses the default degree-1 file
        _inria_load_ply(out1)
    with pytest.raises(L2TError, match="cannot lower"):
        with_sh_degree(ref, 0)


def test_export_options_refuse_bad_paths(tmp_path, capsys):
    wav = tmp_path / "s.wav"
    sf.write(wav, np.zeros(16000), 16000)
    for flag, name in (("--export-mesh", "m.obj"), ("--export-arkit", "a.txt")):
        code = main(["render", str(wav), "-o", str(tmp_path / "t.mp4"), flag, str(tmp_path / name), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and flag in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.wav"]


# ----------------------------------------------------------------------------------------------- extras
def test_missing_align_extra_names_it(monkeypatch):
    from l2t_gs.speech import align

    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import fails as if not installed
    with pytest.raises(L2TError, match=r"l2t-gs\[align\]"):
        align._decoder({})


def test_missing_teacher_extra_names_it(monkeypatch):
    from l2t_gs.training.data import teacher_video

    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(L2TError, match=r"l2t-gs\[teacher\].*opencv-python"):
        teacher_video._cv2()


def test_rig_exports_need_a_rig_model(tmp_path, capsys):
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import save_checkpoint

    cfg = Audio2MeshConfig(
        fps=30, enc_dim=32, enc_layers=1, enc_heads=2, d_model=32, n_heads=2, n_layers=1, n_mels=40, output="vertices"
    )
    save_checkpoint(tmp_path / "v.pt", Audio2Mesh(cfg, ["spk_a"], 7931))
    wav = tmp_path / "s.wav"
    sf.write(wav, np.zeros(8000), 16000)
    for flag, name in (("--export-mesh", "m.glb"), ("--export-arkit", "a.csv")):
        argv = ["render", str(wav), "-o", str(tmp_path / "t.mp4"), "--model", str(tmp_path / "v.pt"), "--quiet"]
        assert main([*argv, flag, str(tmp_path / name)]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "rig-output model" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.wav", "v.pt"]
