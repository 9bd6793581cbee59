"""``l2t-gs eval`` on a tiny generated dataset (built-in head topology): table, JSON, error lines."""

from __future__ import annotations

import argparse
import json
import pickle
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.cli import eval as eval_cli
from l2t_gs.errors import L2TError
from l2t_gs.training.metrics.motion import segment_frames

FPS = 30.0
SR = 16000
PHONES = [
    {"phone": "M", "start": 0.10, "end": 0.20},
    {"phone": "AA1", "start": 0.20, "end": 0.45},
    {"phone": "B", "start": 0.45, "end": 0.55},
    {"phone": "IY0", "start": 0.55, "end": 0.80},
]


def _sequence(rig, n_expr: int, frames: int, phase: float) -> np.ndarray:
    """Jaw opening and closing, lips closed on the bilabials of PHONES."""
    expr = torch.zeros(frames, n_expr, dtype=torch.float64)
    jaw = torch.zeros(frames, 3, dtype=torch.float64)
    jaw[:, 0] = 0.08 * (1 + torch.sin(torch.arange(frames) / 2.5 + phase))
    for seg in PHONES:
        if seg["phone"] in ("M", "B"):
            idx = segment_frames(seg["start"], seg["end"], FPS, frames)
            expr[idx, 0], jaw[idx, 0] = 1.0, 0.0
    expr[:, 9] = 0.3 * torch.sin(torch.arange(frames) / 4.0 + phase)  # brows move a little
    return rig(expr=expr, jaw_pose=jaw).float().numpy()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Custom dataset: 2 subjects x 2 test sentences (+1 train), 1 s each, built-in head meshes."""
    from l2t_gs.rig import FlameRig, load_head_model

    model = load_head_model("builtin", dtype=torch.float64)
    rig = FlameRig(model)
    root = tmp_path_factory.mktemp("evaldata")
    for sub in ("wav", "vertices_npy", "phones"):
        (root / sub).mkdir()
    template = model.v_template.float().numpy()
    (root / "templates.pkl").write_bytes(pickle.dumps({"spk_a": template, "spk_b": template}, protocol=2))
    frames = 30
    for k, (subject, sent) in enumerate([("spk_a", 1), ("spk_a", 2), ("spk_b", 1), ("spk_b", 2), ("spk_a", 9)]):
        name = f"{subject}_s{sent:02d}"
        verts = _sequence(rig, model.n_expr, frames, phase=0.7 * k)
        np.save(root / "vertices_npy" / f"{name}.npy", verts.reshape(frames, -1))
        t = np.arange(int(frames / FPS * SR) + 160 * k) / SR  # lengths differ: the fake model keys on them
        sf.write(root / "wav" / f"{name}.wav", (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
        (root / "phones" / f"{name}.json").write_text(json.dumps(PHONES))
    spec = {
        "version": 1,
        "fps": FPS,
        "subjects": ["spk_a", "spk_b"],
        "train_subjects": ["spk_a", "spk_b"],
        "splits": {"train": {"sentences": [9, 9]}, "test": {"sentences": [1, 2]}},
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


class GroundTruthModel:
    """Stands in for Audio2Mesh: returns the clip's own motion, optionally perturbed (no training needed)."""

    def __init__(self, root, noise: float = 0.0, n_verts: int | None = None) -> None:
        self.root, self.noise = root, noise
        self.subjects = ("spk_a", "spk_b")
        self.n_verts = n_verts
        self.calls: list[tuple[str | None, float]] = []

    def predict(self, audio, template, style=None, fps=30.0):
        self.calls.append((style, fps))
        by_length = {sf.info(p).frames: p.stem for p in (self.root / "wav").glob("*.wav")}
        v = np.load(self.root / "vertices_npy" / f"{by_length[len(audio)]}.npy").reshape(30, -1, 3)
        rng = np.random.default_rng(len(self.calls))
        return torch.from_numpy(v + self.noise * rng.normal(size=v.shape).astype(np.float32))


def _cli(argv: list[str]) -> int:
    """Run ``l2t-gs eval`` the way ``l2t_gs.cli.main`` does (one error line, exit status 1)."""
    parser = argparse.ArgumentParser(prog="l2t-gs")
    eval_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", *argv])
    try:
        return int(args.func(args) or 0)
    except L2TError as exc:
        print(f"l2t-gs: error: {exc}", file=sys.stderr)
        return 1


def test_eval_table_and_json(dataset, tmp_path, monkeypatch, capsys):
    model = GroundTruthModel(dataset)
    monkeypatch.setattr(eval_cli, "_load_model", lambda spec, device="cpu": model)
    out = tmp_path / "report.json"
    assert _cli(["--model", "run", "--data", str(dataset), "--json", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].split()[:3] == ["subject", "clips", "frames"]
    assert [ln.split()[0] for ln in lines[2:]] == ["spk_a", "spk_b", "-------", "overall"]
    report = json.loads(out.read_text())
    assert report["split"] == "test" and len(report["clips"]) == 4
    assert report["overall"]["lve_mm2"] == 0.0 and report["overall"]["closure_recall"] == 1.0
    assert report["overall"]["bilabials"] == 8 and report["overall"]["lip_corr"] == pytest.approx(1.0)
    assert report["regions"]["source"] == "builtin head" and report["units"]["lve_mm2"] == "mm^2"
    assert set(report["subjects"]) == {"spk_a", "spk_b"}
    assert [s for s, _ in model.calls] == ["spk_a", "spk_a", "spk_b", "spk_b"] and model.calls[0][1] == FPS
    assert "wrote" in captured.err


def test_eval_noisy_prediction(dataset, monkeypatch, capsys):
    monkeypatch.setattr(eval_cli, "_load_model", lambda spec, device="cpu": GroundTruthModel(dataset, noise=0.002))
    assert _cli(["--model", "run", "--data", str(dataset), "--metrics", "lve,fdd", "--style", "spk_b"]) == 0
    captured = capsys.readouterr()
    overall = captured.out.splitlines()[-1].split()
    lve_mm2, fdd_mm2 = float(overall[3]), float(overall[4])
    assert lve_mm2 > 20  # max over ~270 lip vertices of 3 * (2 mm)^2 chi-square errors
    assert fdd_mm2 < 0  # noise adds upper-face motion: the prediction moves more than the truth
    assert "[1/4] spk_a_s01" in captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--split", "val"], "no clips in split 'val'"),
        (["--units", "furlong"], "--units"),
        (["--lip-pair", "1"], "--lip-pair"),
        (["--regions", "nope.npz"], "regions file not found"),
        (["--metrics", "lve,bogus"], "unknown metric 'bogus'"),
        (["--json", "missing/dir/out.json"], "output directory does not exist"),
        (["--style", "spk_z"], "not a subject of the model"),
    ],
)
def test_eval_bad_input(dataset, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(eval_cli, "_load_model", lambda spec, device="cpu": GroundTruthModel(dataset))
    assert _cli(["--model", "run", "--data", str(dataset), "--quiet", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("l2t-gs: error: ") and message in err[0], err


def test_eval_wrong_topology(dataset, monkeypatch, capsys):
    monkeypatch.setattr(eval_cli, "_load_model", lambda spec, device="cpu": GroundTruthModel(dataset, n_verts=5023))
    assert _cli(["--model", "run", "--data", str(dataset), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "5023-vertex" in err and "different topology" in err


def test_eval_missing_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(eval_cli, "_load_model", lambda spec, device="cpu": GroundTruthModel(tmp_path))
    assert _cli(["--model", "run", "--data", str(tmp_path / "none")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_load_model_errors_become_one_line(tmp_path, monkeypatch):
    import types

    def boom(path, device="cpu"):
        raise RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory\nmore")

    monkeypatch.setitem(sys.modules, "l2t_gs.models.checkpoint", types.SimpleNamespace(load_model=boom))
    with pytest.raises(L2TError, match=r"cannot load model x\.pt: RuntimeError: PytorchStreamReader") as info:
        eval_cli._load_model("x.pt")
    assert "\n" not in str(info.value)


def test_eval_with_main_entry_point(dataset, monkeypatch, capsys):
    from l2t_gs.cli import main as cli_main

    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "eval" not in sub.choices:
        pytest.skip("`eval` is not registered in l2t_gs.cli.main yet")
    monkeypatch.setattr(eval_cli, "_load_model", lambda spec, device="cpu": GroundTruthModel(dataset))
    assert cli_main.main(["eval", "--model", "run", "--data", str(dataset), "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("overall")


def test_evaluate_audio2mesh_on_a_loaded_dataset(dataset):
    """The real model interface (random weights) and the real dataset loader, through the API."""
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.training.data.datasets import load_dataset
    from l2t_gs.training.metrics.evaluate import evaluate

    data = load_dataset(dataset, split="test")
    cfg = Audio2MeshConfig(fps=FPS, enc_dim=32, enc_layers=1, enc_heads=2, d_model=32, n_heads=2, n_layers=1, n_mels=40)
    torch.manual_seed(0)
    model = Audio2Mesh(cfg, ["spk_a"], data.n_verts)
    res = evaluate(model, data, style="auto")
    assert [c.style for c in res.clips] == ["spk_a", "spk_a", None, None]
    assert all(c.frames == 30 for c in res.clips)
    assert res.overall["lve_mm2"] > 0 and np.isfinite(res.overall["fdd_mm2"])
    assert res.overall["bilabials"] == 8 and any("default style" in n for n in res.notes)
    res_all = evaluate(model, data, style="all", metrics=["lve"])
    assert len(res_all.clips) == 4 and res_all.overall["clips"] == 4


def _tiny_model(subjects, n_verts):
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig

    cfg = Audio2MeshConfig(fps=FPS, enc_dim=32, enc_layers=1, enc_heads=2, d_model=32, n_heads=2, n_layers=1, n_mels=40)
    torch.manual_seed(0)
    return Audio2Mesh(cfg, list(subjects), n_verts)


def test_eval_checkpoint_run_dir(dataset, tmp_path, capsys):
    from l2t_gs.models.checkpoint import save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "best.pt", _tiny_model(["spk_a", "spk_b"], 7931))
    out = tmp_path / "r.json"
    argv = ["--model", str(run), "--data", str(dataset), "--json", str(out), "--device", "cpu", "--quiet"]
    assert _cli(argv) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["clips"] == 4 and report["overall"]["lve_mm2"] > 0
    assert [c["style"] for c in report["clips"]] == ["spk_a", "spk_a", "spk_b", "spk_b"]
    assert capsys.readouterr().out.splitlines()[-1].startswith("overall")


def test_eval_checkpoint_errors(dataset, tmp_path, capsys):
    from l2t_gs.models.checkpoint import save_checkpoint

    def one_error(model_path) -> str:
        assert _cli(["--model", str(model_path), "--data", str(dataset), "--device", "cpu", "--quiet"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("l2t-gs: error: "), err
        return err[0]

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert "corrupt" in one_error(bad)
    good = tmp_path / "flame.pt"
    save_checkpoint(good, _tiny_model(["spk_a"], 5023))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    assert "corrupt" in one_error(truncated)
    assert "different topology" in one_error(good)  # a FLAME-topology model on built-in head data
    (tmp_path / "empty_run").mkdir()
    assert "no checkpoint in" in one_error(tmp_path / "empty_run")
