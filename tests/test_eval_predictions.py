"""``l2t-gs eval --save-predictions`` / ``--protocol faceformer`` / the low-motion warning, and
``l2t-gs render --motion`` of saved predictions, ground truth and rig coefficients."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.cli.main import main
from l2t_gs.errors import L2TError
from l2t_gs.motion.file import open_motion
from l2t_gs.pipeline import RenderConfig, render_frames
from l2t_gs.training.data.datasets import load_dataset
from l2t_gs.training.metrics.evaluate import evaluate, motion_amount

pytestmark = pytest.mark.usefixtures("one_thread")

FPS, SR = 10.0, 16000


def _write_dataset(root, clips: list[tuple[str, int]], templates: dict, spec: dict, seconds: float = 0.4):
    """FaceFormer layout on the built-in head: each clip's vertices are its template plus a moving jaw-ish
    offset (a different phase per clip); audio lengths differ by clip so fakes can key on them."""
    for sub in ("wav", "vertices_npy"):
        (root / sub).mkdir(parents=True)
    (root / "templates.pkl").write_bytes(pickle.dumps(templates, protocol=2))
    frames = round(seconds * FPS)
    basis = np.zeros_like(next(iter(templates.values())))
    basis[:, 1] = 0.004 * np.sin(np.arange(basis.shape[0]) / 50.0)
    for k, (subject, sent) in enumerate(clips):
        name = f"{subject}_s{sent:02d}"
        n = int(seconds * SR) + 80 * k
        t = np.arange(n) / SR
        sf.write(root / "wav" / f"{name}.wav", (0.2 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), SR)
        w = np.sin(np.arange(frames) / 1.5 + k)[:, None, None]
        verts = templates[subject][None] + w * basis[None]
        np.save(root / "vertices_npy" / f"{name}.npy", verts.reshape(frames, -1).astype(np.float32))
    (root / "dataset.json").write_text(json.dumps({"version": 1, "fps": FPS} | spec))
    return root


@pytest.fixture(scope="module")
def neutral() -> np.ndarray:
    from l2t_gs.gaussians import load_avatar

    return load_avatar("default").neutral_vertices().float().numpy()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, neutral):
    """spk_a and spk_b train; test: spk_a (seen) and spk_c (unseen), sentences 1-2; template = the avatar's."""
    spec = {
        "subjects": ["spk_a", "spk_b", "spk_c"],
        "train_subjects": ["spk_a", "spk_b"],
        "splits": {"train": {"subjects": ["spk_a", "spk_b"], "sentences": [9, 9]},
                   "test": {"subjects": ["spk_a", "spk_c"], "sentences": [1, 2]}},
    }  # fmt: skip
    clips = [("spk_a", 1), ("spk_a", 2), ("spk_c", 1), ("spk_c", 2), ("spk_a", 9), ("spk_b", 9)]
    root = tmp_path_factory.mktemp("evalpred") / "data"
    return _write_dataset(root, clips, {s: neutral for s in ("spk_a", "spk_b", "spk_c")}, spec)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import save_checkpoint

    cfg = Audio2MeshConfig(fps=FPS, enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2, n_layers=1, n_mels=40,
                           offset_scale=0.01)  # fmt: skip
    torch.manual_seed(0)
    model = Audio2Mesh(cfg, ["spk_a", "spk_b"], 7931)
    with torch.no_grad():  # the output layer starts at zero (no motion): give it random weights to move
        model.decoder.out.weight.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, model)
    return path


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_saved_predictions_render_with_motion_to_the_models_frames(dataset, model_path, tmp_path, capsys):
    preds = tmp_path / "preds"
    rc = main(["eval", "--model", str(model_path), "--data", str(dataset), "--save-predictions", str(preds),
               "--device", "cpu", "--quiet", "--metrics", "lve,fdd"])  # fmt: skip
    assert rc == 0, _err(capsys)
    manifest = json.loads((preds / "predictions.json").read_text())
    assert manifest["fps"] == FPS and manifest["n_verts"] == 7931
    assert sorted(manifest["files"]) == ["spk_a_s01.npy", "spk_a_s02.npy", "spk_c_s01.npy", "spk_c_s02.npy"]
    assert (
        manifest["files"]["spk_a_s01.npy"]["style"] == "spk_a" and manifest["files"]["spk_c_s01.npy"]["style"] is None
    )
    saved = np.load(preds / "spk_a_s01.npy")
    assert saved.dtype == np.float32 and saved.shape == (4, 7931 * 3)  # VOCASET's vertices_npy layout
    from l2t_gs.models.checkpoint import load_model

    model = load_model(model_path)
    audio, _ = sf.read(dataset / "wav" / "spk_a_s01.wav", dtype="float32")
    tmpl = pickle.loads((dataset / "templates.pkl").read_bytes())["spk_a"]
    direct = model.predict(audio, np.zeros_like(tmpl), style="spk_a", fps=FPS)  # the offsets alone
    np.testing.assert_allclose(saved.reshape(4, -1, 3), direct.numpy() + tmpl, atol=1e-6)
    assert motion_amount(saved.reshape(4, -1, 3)) > 1e-4  # the predictions move (the check below means something)
    assert "barely move" not in _err(capsys)

    wav = dataset / "wav" / "spk_a_s01.wav"
    base = dict(size=32, fps=FPS, device="cpu")
    by_model = list(render_frames(wav, RenderConfig(model=str(model_path), style="spk_a", **base)))
    by_motion = list(render_frames(wav, RenderConfig(motion=str(preds / "spk_a_s01.npy"), **base)))
    assert len(by_model) == len(by_motion) == 4
    for a, b in zip(by_model, by_motion, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(by_model[0], by_model[2])  # frames differ: the motion shows


def test_faceformer_protocol_one_row_per_condition(dataset, tmp_path, capsys, monkeypatch):
    """A stand-in whose prediction is the ground truth shifted by a style-dependent amount: every condition's
    LVE is known in closed form (the shift's squared norm, in mm^2)."""
    from l2t_gs.cli import eval as eval_cli

    shift = {"spk_a": 0.001, "spk_b": 0.003}
    lengths = {sf.info(p).frames: p.stem for p in (dataset / "wav").glob("*.wav")}

    class Shifted:
        subjects, n_verts = ("spk_a", "spk_b"), 7931

        def predict(self, audio, template, style=None, fps=FPS):
            gt = np.load(dataset / "vertices_npy" / f"{lengths[len(audio)]}.npy").reshape(4, -1, 3)
            return torch.from_numpy(gt + np.float32(shift[style]))

    monkeypatch.setattr(eval_cli, "_load_model", lambda spec, device="cpu": Shifted())
    out, preds = tmp_path / "r.json", tmp_path / "p"
    rc = main(["eval", "--model", "x", "--data", str(dataset), "--protocol", "faceformer", "--json", str(out),
               "--save-predictions", str(preds), "--quiet", "--metrics", "lve"])  # fmt: skip
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "condition" and len(lines) == 6
    assert [ln.split()[0] for ln in (lines[2], lines[3], lines[5])] == ["spk_a", "spk_b", "mean"]
    assert set(lines[4].replace(" ", "")) == {"-"}
    report = json.loads(out.read_text())
    cond = report["conditions"]
    # spk_a: the seen subject's 2 clips under its own style + the unseen subject's 2; spk_b: the unseen 2 only
    assert (cond["spk_a"]["clips"], cond["spk_b"]["clips"]) == (4, 2)
    for style, rows in cond.items():
        # LVE: the max over lip vertices of the squared distance, a constant shift of (s, s, s): 3 s^2, in mm^2
        assert rows["lve_mm2"] == pytest.approx(3 * (shift[style] * 1000) ** 2, rel=1e-4)
    mean = float(lines[-1].split()[3])
    assert mean == pytest.approx(np.mean([cond["spk_a"]["lve_mm2"], cond["spk_b"]["lve_mm2"]]), rel=1e-3)
    expected_raw = np.mean([3 * shift["spk_a"] ** 2, 3 * shift["spk_b"] ** 2])  # data units^2 (metres)
    assert report["condition_mean"]["lve_raw"] == pytest.approx(expected_raw, rel=1e-4)
    styles = sorted((c["subject"], c["style"]) for c in report["clips"])
    assert styles == [("spk_a", "spk_a")] * 2 + [("spk_c", "spk_a")] * 2 + [("spk_c", "spk_b")] * 2
    names = sorted(p.name for p in preds.glob("*.npy"))
    assert names == ["spk_a_s01_condition_spk_a.npy", "spk_a_s02_condition_spk_a.npy",
                     "spk_c_s01_condition_spk_a.npy", "spk_c_s01_condition_spk_b.npy",
                     "spk_c_s02_condition_spk_a.npy", "spk_c_s02_condition_spk_b.npy"]  # fmt: skip
    rc = main(["eval", "--model", "x", "--data", str(dataset), "--protocol", "faceformer", "--style", "spk_a"])
    assert rc == 1 and "leave out --style" in _err(capsys)


def test_low_motion_warning(dataset):
    data = load_dataset(dataset, split="test")
    still = lambda clip: clip.template[None].expand(clip.num_frames, -1, -1)  # noqa: E731 - the template only
    res = evaluate(still, data, metrics=["lve"])
    assert res.motion_ratio == 0.0 and len(res.warnings) == 1 and "barely move" in res.warnings[0]
    gt = evaluate(lambda clip: clip.vertices, data, metrics=["lve"])
    assert gt.motion_ratio == pytest.approx(1.0) and gt.warnings == []
    small = evaluate(lambda clip: clip.template + 0.05 * (clip.vertices - clip.template), data, metrics=["lve"])
    assert small.motion_ratio == pytest.approx(0.05, rel=1e-4) and small.warnings
    # motion_amount: a vertex moving between two points 2d apart has std d
    v = np.zeros((2, 3, 3))
    v[0, 0, 0], v[1, 0, 0] = -1.0, 1.0
    assert motion_amount(v) == pytest.approx(1.0 / 3)


def test_motion_file_resampling_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    verts = rng.normal(size=(7, 5, 3)).astype(np.float32)
    np.save(tmp_path / "m.npy", verts.reshape(7, 15))
    m = open_motion(tmp_path / "m.npy", fps=30)
    out = np.concatenate([c["vertices"] for c in m.chunks(fps=25, n_out=8, chunk=3)])
    t_out = np.arange(8) / 25
    ref = np.stack([[np.interp(t_out, np.arange(7) / 30, verts[:, v, k]) for k in range(3)] for v in range(5)])
    np.testing.assert_allclose(out, ref.transpose(2, 0, 1), atol=1e-6)  # past the end: the last frame held
    np.savez(tmp_path / "rig.npz", expr=np.zeros((4, 12), np.float32), jaw_pose=np.zeros((4, 3), np.float32), fps=20)
    r = open_motion(tmp_path / "rig.npz", fps=60)  # what the file records wins over the fallback
    assert (r.kind, r.fps, r.n_frames, r.n_verts) == ("rig", 20.0, 4, None)
    (tmp_path / "vertices_npy").mkdir()
    np.save(tmp_path / "vertices_npy" / "c.npy", verts)
    (tmp_path / "dataset.json").write_text(json.dumps({"fps": 30, "vertices_fps": 60}))
    assert open_motion(tmp_path / "vertices_npy" / "c.npy").fps == 60.0  # a dataset's own files
    cases = {
        "m.npy": "--motion-fps",
        "bad.txt": ".npy or .npz",
        "missing.npy": "not found",
        "nan.npy": "NaN",
        "flat.npy": "vertices must be",
    }
    (tmp_path / "bad.txt").write_text("x")
    np.save(tmp_path / "nan.npy", np.full((3, 6), np.nan, np.float32))
    np.save(tmp_path / "flat.npy", np.zeros((3, 4), np.float32))
    for name, message in cases.items():
        with pytest.raises(L2TError, match=message):
            open_motion(tmp_path / name, fps=None if name == "m.npy" else 30)


def test_render_rig_coefficients_match_the_model(tmp_path, capsys):
    """A rig-output model's parameters, saved as an .npz, render like the model itself."""
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import save_checkpoint

    cfg = Audio2MeshConfig(fps=FPS, enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2, n_layers=1, n_mels=40,
                           output="rig")  # fmt: skip
    torch.manual_seed(1)
    model = Audio2Mesh(cfg, ["spk_a"], 7931)
    save_checkpoint(tmp_path / "rig.pt", model)
    wav = tmp_path / "a.wav"
    t = np.arange(int(0.3 * SR)) / SR
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 150 * t) * np.sin(2 * np.pi * 3 * t)).astype(np.float32), SR)
    audio, _ = sf.read(wav, dtype="float32")
    params = model.predict_params(audio, fps=FPS)
    np.savez(tmp_path / "params.npz", expr=params["expr"].numpy(), jaw_pose=params["jaw_pose"].numpy(), fps=FPS)
    base = dict(size=32, fps=FPS, device="cpu")
    a = np.stack(list(render_frames(wav, RenderConfig(model=str(tmp_path / "rig.pt"), **base))))
    b = np.stack(list(render_frames(wav, RenderConfig(motion=str(tmp_path / "params.npz"), **base))))
    assert a.shape == b.shape == (3, 32, 32, 3)
    diff = np.abs(a.astype(int) - b.astype(int))
    assert diff.mean() < 0.05 and diff.max() <= 8  # the rig in float32 both ways, different summation order
    out = tmp_path / "m.mp4"
    rc = main(["render", str(wav), "-o", str(out), "--motion", str(tmp_path / "params.npz"), "--size", "32", "--fps",
               "10", "--quiet", "--device", "cpu"])  # fmt: skip
    assert rc == 0 and out.is_file()
    np.save(tmp_path / "wrong.npy", np.zeros((3, 30), np.float32))
    rc = main(["render", str(wav), "-o", str(tmp_path / "w.mp4"), "--motion", str(tmp_path / "wrong.npy"),
               "--motion-fps", "10", "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "topology" in err and "\n" not in err and not (tmp_path / "w.mp4").exists()
