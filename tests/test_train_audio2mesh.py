"""``l2t-gs train audio2mesh``: runs, resume after interruption, recipes, losses, DDP, user errors."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.errors import L2TError
from l2t_gs.models.checkpoint import load_model, read_checkpoint
from l2t_gs.training.audio2mesh import dump_toml, load_recipe, train
from l2t_gs.training.losses.registry import LOSSES, build_losses

pytestmark = pytest.mark.usefixtures("one_thread")


TINY_RECIPE = {
    "model": {"d_model": 16, "n_layers": 1, "enc_dim": 16, "enc_layers": 1, "n_mels": 40, "dropout": 0.1},
    "train": {"epochs": 2, "batch_size": 2, "lr": 1e-3, "crop_s": 0.6, "checkpoint_every": 2, "log_every": 1},
    "data": {},
    "loss": {"vertex": 1.0, "velocity": 0.5},
}


def make_dataset(
    root: Path,
    n_verts: int = 30,
    subjects: tuple[str, ...] = ("spkA", "spkB"),
    sentences: int = 4,
    seconds: float = 0.8,
    fps: int = 30,
    seed: int = 0,
    templates: dict[str, np.ndarray] | None = None,
    basis: np.ndarray | None = None,
) -> Path:
    """A tiny dataset in FaceFormer's layout (custom ``dataset.json``): vertices move with the audio envelope.

    Sentences 1..N-1 of every subject are ``train``, sentence N is ``val``.
    """
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True)
    (root / "vertices_npy").mkdir()
    if templates is None:
        templates = {s: rng.normal(scale=0.05, size=(n_verts, 3)).astype(np.float32) for s in subjects}
    if basis is None:
        basis = rng.normal(scale=0.002, size=(n_verts, 3)).astype(np.float32)
    for s in subjects:
        for k in range(1, sentences + 1):
            n = int(seconds * 16000) + int(rng.integers(0, 3200))
            t = np.arange(n) / 16000
            env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1.5, 4.0) * t)
            audio = 0.3 * env * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.normal(size=n)
            frames = round(n / 16000 * fps)
            e = np.interp(np.arange(frames) / fps, t, env).astype(np.float32)
            verts = templates[s][None] + e[:, None, None] * basis[None]
            sf.write(root / "wav" / f"{s}_s{k:02d}.wav", audio.astype(np.float32), 16000)
            np.save(root / "vertices_npy" / f"{s}_s{k:02d}.npy", verts.reshape(frames, -1).astype(np.float32))
    with open(root / "templates.pkl", "wb") as fh:
        pickle.dump(templates, fh)
    splits = {
        "train": {"subjects": list(subjects), "sentences": [1, sentences - 1]},
        "val": {"subjects": list(subjects), "sentences": [sentences, sentences]},
    }
    (root / "dataset.json").write_text(json.dumps({"version": 1, "fps": fps, "splits": splits}))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("a2m") / "data")


def recipe(**sections) -> dict:
    out = {k: dict(v) for k, v in TINY_RECIPE.items()}
    for k, v in sections.items():
        out[k] = out[k] | v
    return out


def run_cli(*argv: str) -> int:
    """``l2t-gs train ...`` in-process (registers the ``train`` group if main.py does not yet)."""
    from l2t_gs.cli import main as cli_main
    from l2t_gs.cli import train as cli_train

    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "train" not in sub.choices:
        return cli_train.main(list(argv[1:]))
    return cli_main.main(list(argv))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["model"]


# --------------------------------------------------------------------------- runs
def test_train_writes_a_run_and_the_model_predicts(dataset, tmp_path):
    out = tmp_path / "run"
    summary = train(dataset, out, recipe(), progress=False)
    assert summary["steps"] == 2 * 3  # 6 train clips / batch 2, 2 epochs
    for name in ("last.pt", "best.pt", "config.toml", "train_log.csv", "val_log.csv"):
        assert (out / name).is_file(), name
    cfg = load_recipe(out / "config.toml")
    assert cfg["model"]["fps"] == 30.0 and cfg["model"]["d_model"] == 16 and cfg["train"]["unit_scale"] == 1000.0
    assert cfg["model"]["offset_scale"] == pytest.approx(1e-3)
    rows = (out / "train_log.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,lr,loss,vertex,velocity") and len(rows) == 7
    assert len((out / "val_log.csv").read_text().splitlines()) == 3
    last = read_checkpoint(out / "last.pt")
    assert last["train"]["step"] == 6 and last["train"]["epoch"] == 2 and "optimizer" in last["train"]
    model = load_model(out)
    assert model.subjects == ["spkA", "spkB"] and model.n_verts == 30
    audio, _ = sf.read(dataset / "wav" / "spkA_s01.wav", dtype="float32")
    tmpl = pickle.loads((dataset / "templates.pkl").read_bytes())["spkA"]
    assert model.predict(audio, tmpl, style="spkA").shape[1:] == (30, 3)
    # rerunning a finished run does nothing; raising --epochs continues it
    assert train(dataset, out, recipe(), progress=False)["steps"] == 6
    assert train(dataset, out, recipe(), epochs=3, progress=False)["steps"] == 9


def test_training_reduces_the_validation_loss(dataset, tmp_path):
    r = recipe(train={"epochs": 8, "lr": 3e-3}, model={"dropout": 0.0})
    train(dataset, tmp_path / "run", r, progress=False)
    rows = (tmp_path / "run" / "val_log.csv").read_text().splitlines()[1:]
    val = [float(r.split(",")[2]) for r in rows]
    assert val[-1] < 0.7 * val[0]


def test_resume_after_interruption_continues_exactly(dataset, tmp_path):
    r = recipe(train={"epochs": 2})
    train(dataset, tmp_path / "straight", r, progress=False)

    class Killed(Exception):
        pass

    def kill_at_step_5(info: dict) -> None:
        if info["step"] == 5:
            raise Killed  # after step 5 ran, before it was checkpointed (checkpoint_every = 2)

    with pytest.raises(Killed):
        train(dataset, tmp_path / "resumed", r, callbacks=[kill_at_step_5], progress=False)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["train"]["step"] == 4  # mid-epoch 2
    summary = train(dataset, tmp_path / "resumed", r, progress=False)
    assert summary["steps"] == 6
    a, b = _weights(tmp_path / "straight" / "last.pt"), _weights(tmp_path / "resumed" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-exact: seeded per step, order per epoch
    steps = [int(line.split(",")[0]) for line in (tmp_path / "resumed" / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 7))  # the lost step's log row was dropped and rewritten


def test_resume_refuses_a_different_model_config_or_topology(dataset, tmp_path):
    out = tmp_path / "run"
    train(dataset, out, recipe(train={"epochs": 1}), progress=False)
    with pytest.raises(L2TError, match="different \\[model\\] config \\(d_model\\)"):
        train(dataset, out, recipe(model={"d_model": 32}), progress=False)
    resolved = load_recipe(out / "config.toml")  # the run's own resolved recipe resumes it
    assert train(dataset, out, resolved, epochs=2, progress=False)["steps"] == 6
    other = make_dataset(tmp_path / "other", n_verts=31)
    with pytest.raises(L2TError, match="wrong topology"):
        train(other, out, recipe(), progress=False)


def test_rig_output_trains_on_the_heads_topology(tmp_path):
    from flame_factory import make_head_model

    from l2t_gs.rig import FlameRig, save_head_model

    head = make_head_model(n_verts=40, n_expr=5, seed=1, dtype=torch.float32)
    head_path = save_head_model(head, tmp_path / "head.npz")
    rig = FlameRig(head)
    with torch.no_grad():
        jaw_dir = (rig(jaw_pose=torch.tensor([[0.2, 0.0, 0.0]])) - rig())[0].numpy() * 0.5
    tmpl = {"spkA": head.v_template.numpy(), "spkB": head.v_template.numpy() * 1.01}
    data = make_dataset(tmp_path / "data", n_verts=40, templates=tmpl, basis=jaw_dir)
    r = recipe(model={"output": "rig", "head": str(head_path), "dropout": 0.0}, loss={"rig_l2": 0.01})
    summary = train(data, tmp_path / "run", r, progress=False)
    assert np.isfinite(summary["val_loss"])
    model = load_model(tmp_path / "run")
    assert model.rig is not None and model.n_expr == 5
    with pytest.raises(L2TError, match="head's topology"):
        train(make_dataset(tmp_path / "d41", n_verts=41), tmp_path / "run41", r, progress=False)


# --------------------------------------------------------------------------- recipes and losses
@pytest.mark.parametrize("name", ["vocaset", "biwi", "corpus"])
def test_packaged_recipes_are_valid(name):
    from l2t_gs.models.audio2mesh import Audio2MeshConfig
    from l2t_gs.training.audio2mesh import DataConfig, TrainConfig
    from l2t_gs.training.common import typed_table

    r = load_recipe(name)
    cfg = Audio2MeshConfig.from_dict(r["model"])
    typed_table(TrainConfig, r["train"], "[train]").validate()
    typed_table(DataConfig, r["data"], "[data]")
    assert set(r["loss"]) <= set(LOSSES)
    assert cfg.output == ("rig" if name == "corpus" else "vertices")
    assert load_recipe(dump_toml_path(r, name)) == r


def dump_toml_path(r: dict, name: str) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / f"{name}.toml"
    path.write_text(dump_toml(r))
    return path


@pytest.fixture
def scratch_losses():
    """Losses a test registers are gone after it."""
    before = set(LOSSES.choices())  # the built-in losses first
    yield
    for name in set(LOSSES.choices()) - before:
        LOSSES.remove(name)


def test_custom_loss_plugs_in_through_the_registry(dataset, tmp_path, scratch_losses):
    seen: dict = {}

    @LOSSES.register("test_mouth_energy")
    def factory(options, model, device):
        scale = options.pop("scale", 1.0)
        assert not options

        def fn(ctx):
            seen.setdefault("shapes", (tuple(ctx.pred.shape), tuple(ctx.mask.shape)))
            return scale * ctx.pred.diff(dim=1).square().mean()

        return fn

    r = recipe(train={"epochs": 1}, loss={"test_mouth_energy": {"weight": 0.1, "scale": 2.0}})
    train(dataset, tmp_path / "run", r, progress=False)
    assert "test_mouth_energy" in (tmp_path / "run" / "train_log.csv").read_text().splitlines()[0]
    assert seen["shapes"][0][0] == 2 and seen["shapes"][0][2:] == (30, 3)
    with pytest.raises(L2TError, match="unknown loss 'nope'"):
        train(dataset, tmp_path / "run2", recipe(loss={"nope": 1.0}), progress=False)


def test_one_loss_registry_holds_every_loss():
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig

    names = set(LOSSES.choices())
    assert {"vertex", "velocity", "rig_l2", "lip_gap", "sync", "lipread"} <= names
    for name in names:  # each built-in loss lives in one of the registry's modules, with a one-line help
        assert LOSSES.get(name).__module__ in LOSSES.modules and LOSSES.help(name), name
    model = Audio2Mesh(Audio2MeshConfig(d_model=16, enc_dim=16, enc_layers=1, n_layers=1), ["a"], 10)
    losses = build_losses({"velocity": 2.0, "vertex": 0}, model, torch.device("cpu"))
    assert list(losses) == ["velocity"] and losses["velocity"][0] == 2.0
    with pytest.raises(L2TError, match="weight of 'vertex'"):
        build_losses({"vertex": -1}, model, torch.device("cpu"))


# --------------------------------------------------------------------------- CLI and user errors
def test_cli_trains_and_reports_user_errors_in_one_line(dataset, tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(dump_toml(recipe(train={"epochs": 1})))
    out = tmp_path / "run"
    rc = run_cli("train", "audio2mesh", "--data", str(dataset), "--out", str(out), "--config", str(cfg),
                 "--max-steps", "2", "--device", "cpu", "--seed", "3", "--no-progress")  # fmt: skip
    assert rc == 0 and read_checkpoint(out / "last.pt")["train"]["step"] == 2
    capsys.readouterr()

    empty = tmp_path / "empty"
    (empty / "wav").mkdir(parents=True)
    (empty / "vertices_npy").mkdir()
    (empty / "templates.pkl").write_bytes(pickle.dumps({"spkA": np.zeros((30, 3), np.float32)}))
    (empty / "dataset.json").write_text(json.dumps({"version": 1, "fps": 30}))
    bad_ckpt = tmp_path / "corrupt_run"
    bad_ckpt.mkdir()
    (bad_ckpt / "last.pt").write_bytes(b"\x00" * 100)
    cases = [
        (["--data", str(empty), "--out", str(tmp_path / "r1")], "no clips"),
        (["--data", str(dataset), "--out", str(bad_ckpt)], "corrupt"),
        (["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")], "does not exist"),
        (["--data", str(dataset), "--out", str(tmp_path / "r3"), "--config", "nope"], "recipe not found"),
    ]
    for args, message in cases:
        if "--config" not in args:
            args = [*args, "--config", str(cfg)]
        rc = run_cli("train", "audio2mesh", *args, "--no-progress")
        err = capsys.readouterr().err.strip()
        assert rc == 1 and message in err and "\n" not in err and err.startswith("l2t-gs: error:"), (args, err)


# --------------------------------------------------------------------------- distributed
def _torchrun(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "l2t_gs.cli.train", "audio2mesh", *args]  # fmt: skip
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_ddp_two_cpu_processes_with_gloo(dataset, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(dump_toml(recipe(train={"epochs": 2, "batch_size": 1})))
    out = tmp_path / "ddp"
    res = _torchrun(["--data", str(dataset), "--out", str(out), "--config", str(cfg), "--no-progress"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    last = read_checkpoint(out / "last.pt")
    assert last["train"]["world_size"] == 2
    assert last["train"]["step"] == 2 * 3  # 6 clips, 1 per rank per step -> 3 steps per epoch
    assert (out / "best.pt").is_file() and len((out / "val_log.csv").read_text().splitlines()) == 3
    assert res.stderr.count("trained 6 steps") == 1  # only rank 0 reports


@pytest.mark.slow
def test_killed_training_process_resumes_from_last_checkpoint(dataset, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(dump_toml(recipe(train={"epochs": 40, "checkpoint_every": 1})))
    out = tmp_path / "run"
    args = ["--data", str(dataset), "--out", str(out), "--config", str(cfg), "--no-progress"]
    cmd = [sys.executable, "-m", "l2t_gs.cli.train", "audio2mesh", *args]
    # cwd: `python -m` puts it first on sys.path, and a source checkout must not shadow the installed package
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "last.pt").is_file() and read_checkpoint(out / "last.pt")["train"]["step"] >= 10:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(out / "last.pt")["train"]["step"]
    assert 10 <= killed_at < 120
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming {out}" in res.stderr
    assert read_checkpoint(out / "last.pt")["train"]["step"] == 40 * 3
