"""SyncNet3D: Wav2Lip mel, windows, the expert, its training command, checkpoints and the sync loss.

The helpers :func:`make_sync_dataset` and :func:`tiny_expert` are shared with ``test_lse.py``: a tiny dataset in
FaceFormer's layout whose lips open with the loudness envelope of the audio (random syllable-like bursts, so
every offset is distinguishable), and a SyncNet3D trained on it in a few seconds (cached per test session).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.cli.train import register as register_train
from l2t_gs.errors import L2TError
from l2t_gs.training.losses.sync import SyncLoss, sync_loss_factory
from l2t_gs.training.models.sync_mel import (
    MEL_FPS,
    SyncMel,
    mel_frame_count,
    mel_start,
    slaney_mel_filterbank,
    sync_mel,
)
from l2t_gs.training.models.syncnet3d import (
    SyncNet3D,
    SyncNet3DConfig,
    load_syncnet3d,
    read_syncnet3d_checkpoint,
    save_syncnet3d,
)
from l2t_gs.training.syncnet3d import (
    SamplingConfig,
    WindowBank,
    _negative_windows,
    load_recipe,
    sample_batch,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 16000
TINY_MODEL = {"embed_dim": 32, "audio_channels": 32, "motion_hidden": 32}
TINY_RECIPE = {
    "model": TINY_MODEL,
    "train": {
        "epochs": 4,
        "steps_per_epoch": 75,
        "batch_size": 32,
        "lr": 2e-3,
        "warmup_steps": 20,
        "log_every": 25,
        "threads": 1,  # tiny networks: one thread is faster, and far faster on a busy machine
    },
    "data": {},
    "sampling": {},
    "eval": {},
}


# --------------------------------------------------------------------------- shared helpers
def envelope(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A loudness envelope at 16 kHz: pauses and bursts of 60-250 ms, smoothed over 30 ms."""
    n = int(seconds * SR)
    env = np.zeros(n, np.float32)
    t = 0
    while t < n:
        d = int(rng.uniform(0.06, 0.25) * SR)
        env[t : t + d] = 0.0 if rng.random() < 0.3 else rng.uniform(0.4, 1.0)
        t += d
    k = int(0.03 * SR)
    return np.convolve(env, np.ones(k) / k, mode="same").astype(np.float32)


def make_sync_dataset(
    root: Path,
    fps: int = 30,
    subjects: tuple[str, ...] = ("spkA", "spkB", "spkC"),
    val_subjects: tuple[str, ...] = ("spkC",),
    sentences: int = 6,
    seconds: tuple[float, float] = (2.0, 3.0),
    n_verts: int = 24,
    n_lips: int = 12,
    seed: int = 0,
) -> Path:
    """Audio = envelope x (harmonics + noise); lip vertices open with the same envelope (in sync at ``fps``).

    Vertices ``0 .. n_lips-1`` are the lips (``regions.npz``); val subjects are unseen in training.
    """
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True)
    (root / "vertices_npy").mkdir()
    templates = {s: rng.normal(scale=0.03, size=(n_verts, 3)).astype(np.float32) for s in subjects}
    direction = np.zeros((n_verts, 3), np.float32)
    direction[n_lips // 2 : n_lips, 1] = -1.0  # lower lip down
    direction[: n_lips // 2, 1] = 0.25  # upper lip up
    direction[:n_lips] += rng.normal(scale=0.2, size=(n_lips, 3))
    for si, s in enumerate(subjects):
        gain = 0.006 * (1 + 0.3 * si)
        for k in range(1, sentences + 1):
            env = envelope(rng, rng.uniform(*seconds))
            n = env.shape[0]
            t = np.arange(n) / SR
            f0 = rng.uniform(100, 250)
            voiced = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.28)) / h for h in range(1, 6))
            audio = 0.25 * env * (0.35 * voiced + 0.3 * rng.normal(size=n)) + 0.003 * rng.normal(size=n)
            frames = round(n / SR * fps)
            e = np.interp(np.arange(frames) / fps, t, env).astype(np.float32)
            verts = templates[s][None] + gain * e[:, None, None] * direction[None]
            verts += rng.normal(scale=1e-4, size=verts.shape).astype(np.float32)
            name = f"{s}_s{k:02d}"
            sf.write(root / "wav" / f"{name}.wav", audio.astype(np.float32), SR)
            np.save(root / "vertices_npy" / f"{name}.npy", verts.reshape(frames, -1).astype(np.float32))
    with open(root / "templates.pkl", "wb") as fh:
        pickle.dump(templates, fh)
    np.savez(root / "regions.npz", lips=np.arange(n_lips), upper_face=np.arange(n_lips, n_verts))
    train_subjects = [s for s in subjects if s not in val_subjects]
    splits = {"train": {"subjects": train_subjects}, "val": {"subjects": list(val_subjects)}}
    (root / "dataset.json").write_text(json.dumps({"version": 1, "fps": fps, "splits": splits}))
    return root


_CACHE: dict[str, tuple[Path, Path, dict]] = {}


def tiny_expert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """``(data, run, summary)``: the synthetic dataset and a SyncNet3D trained on it (once per session, ~5 s)."""
    if "tiny" not in _CACHE:
        base = tmp_path_factory.mktemp("syncnet3d")
        data = make_sync_dataset(base / "data")
        summary = train(data, base / "run", TINY_RECIPE, seed=0, progress=False)
        _CACHE["tiny"] = (data, base / "run", summary)
    return _CACHE["tiny"]


def shifted(v: np.ndarray, k: int) -> np.ndarray:
    """Motion delayed by ``k`` frames (``out[t] = v[t - k]``; edges repeat the first/last frame)."""
    if k > 0:
        return np.concatenate([np.repeat(v[:1], k, 0), v[:-k]])
    if k < 0:
        return np.concatenate([v[-k:], np.repeat(v[-1:], -k, 0)])
    return v


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    return tiny_expert(tmp_path_factory)


def _tiny_model(fps: float = 30.0, n_verts: int = 24, n_lips: int = 12, **kw) -> SyncNet3D:
    torch.manual_seed(0)
    return SyncNet3D(SyncNet3DConfig(fps=fps, **(TINY_MODEL | kw)), list(range(n_lips)), n_verts)


# --------------------------------------------------------------------------- mel features
def _reference_mel(x: np.ndarray) -> np.ndarray:
    """Wav2Lip's ``melspectrogram`` re-derived in numpy (float64) from its definition."""
    y = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]]).astype(np.float64)
    y = np.pad(y, 400, mode="reflect")
    n_frames = 1 + (len(y) - 800) // 200
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(800) / 800)  # periodic Hann
    frames = np.stack([y[i * 200 : i * 200 + 800] * win for i in range(n_frames)])
    mag = np.abs(np.fft.rfft(frames, axis=1)).T  # [401, frames]

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f < 1000, 3 * f / 200, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27))

    def mel_to_hz(m):
        return np.where(m < 15, 200 * m / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))

    pts = mel_to_hz(np.linspace(hz_to_mel(55), hz_to_mel(7600), 82))
    fft = np.linspace(0, 8000, 401)
    fb = np.zeros((80, 401))
    for i in range(80):
        lo, c, hi = pts[i : i + 3]
        fb[i] = np.maximum(0, np.minimum((fft - lo) / (c - lo), (hi - fft) / (hi - c))) * 2 / (hi - lo)
    db = 20 * np.log10(np.maximum(1e-5, fb @ mag)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4)


def test_sync_mel_matches_wav2lip_definition():
    rng = np.random.default_rng(1)
    x = (0.3 * rng.normal(size=12345) * np.hanning(12345)).astype(np.float32)
    mel = sync_mel(torch.from_numpy(x)).numpy()
    ref = _reference_mel(x)
    assert mel.shape == ref.shape == (80, mel_frame_count(12345)) == (80, 12345 // 200 + 1)
    np.testing.assert_allclose(mel, ref, atol=2e-3)
    assert mel.min() >= -4 and mel.max() <= 4
    batch = SyncMel()(torch.from_numpy(np.stack([x, x[::-1].copy()])))
    assert batch.shape == (2, 80, 62)
    np.testing.assert_allclose(batch[0].numpy(), mel, atol=1e-5)


def test_sync_mel_filterbank_and_tone():
    fb = slaney_mel_filterbank()
    assert fb.shape == (80, 401) and (fb >= 0).all()
    assert (fb.sum(1) > 0).all()  # no empty band between 55 and 7600 Hz
    t = np.arange(SR) / SR
    mel = sync_mel(torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)))
    peak_hz = float((fb.argmax(1) * 20.0)[int(mel[:, 40].argmax())])  # band centre, 20 Hz per FFT bin
    assert abs(peak_hz - 1000) < 60
    assert sync_mel(torch.zeros(100)).shape == (80, 1)
    with pytest.raises(ValueError, match="16000"):
        sync_mel(torch.zeros(100), sr=22050)


def test_wav2lip_window_pairing():
    assert mel_start(torch.arange(4), 30).tolist() == [0, 2, 5, 8]  # int(80 * i / 30)
    assert mel_start(torch.arange(4), 25).tolist() == [0, 3, 6, 9]
    assert mel_start(3, 30).item() == 8  # 240 / 30 exactly
    for fps, w, m in ((25, 5, 16), (30, 6, 16), (60, 12, 16), (24, 5, 17)):
        cfg = SyncNet3DConfig(fps=fps)
        assert (cfg.window_frames, cfg.mel_frames) == (w, m), fps
    assert MEL_FPS == 80


# --------------------------------------------------------------------------- the network
def test_shapes_embeddings_and_displacements():
    model = _tiny_model()
    assert (model.window_frames, model.mel_frames, model.n_lip) == (6, 16, 12)
    logits = model(torch.randn(5, 80, 16), torch.randn(5, 6, 12, 3))
    assert logits.shape == (5,)
    a = model.embed_audio(torch.randn(3, 80, 16))
    assert torch.allclose(a.norm(dim=-1), torch.ones(3))
    tpl = torch.randn(24, 3) * 0.03
    verts = tpl + torch.randn(10, 24, 3) * 0.001
    d = model.displacements(verts, tpl)
    assert d.shape == (10, 12, 3)
    # template lip size normalisation: scaling the whole head leaves the input unchanged
    assert torch.allclose(model.displacements(verts * 10, tpl * 10), d, atol=1e-5)
    # batched templates broadcast per clip
    assert torch.allclose(model.displacements(verts[None].repeat(2, 1, 1, 1), tpl[None].repeat(2, 1, 1))[1], d)
    # windows: audio must cover mel_start(i) + 16 frames; motion i + 6 frames
    assert model.window_count(30, 1000) == 25
    assert model.window_count(5, 1000) == 0
    assert model.window_count(30, int(mel_start(9, 30)) + 16) == 10
    with pytest.raises(L2TError, match="lip vertex indices"):
        SyncNet3D(SyncNet3DConfig(), [0, 30], 24)
    with pytest.raises(L2TError, match="lip_norm"):
        SyncNet3DConfig.from_dict({"lip_norm": "nope"})
    with pytest.raises(L2TError, match="unknown key"):
        SyncNet3DConfig.from_dict({"depth": 3})


def test_negative_sampling_respects_shifts_and_clip_bounds():
    g = torch.Generator().manual_seed(0)
    s = SamplingConfig(hard_prob=0.5, hard_min=2, hard_max=5, min_shift=2)
    n_motion = torch.full((20000,), 40)
    i = torch.randint(0, 40, (20000,), generator=g)
    j = _negative_windows(i, n_motion, g, s)
    shift = (j - i).abs()
    assert ((j >= 0) & (j < 40)).all() and (shift >= 2).all()
    hard = (shift <= 5).float().mean()
    assert 0.5 < hard < 0.65  # half hard, plus the random ones that land within 5 frames
    # a short clip at an edge: hard shifts flip sign or fall back to random ones
    j = _negative_windows(torch.zeros(1000, dtype=torch.long), torch.full((1000,), 4), g, s)
    assert ((j >= 2) & (j < 4)).all()


def test_batches_are_balanced_and_aligned(tmp_path):
    data = make_sync_dataset(tmp_path / "d", sentences=2, subjects=("spkA", "spkC"))
    from l2t_gs.training.data.datasets import load_dataset

    ds = load_dataset(data, split="train")
    model = _tiny_model()
    bank = WindowBank(ds, model, 4, "train")
    clip = ds[0]
    # the bank's windows are the model's own view of the clip
    mel = model.audio_features(clip.audio)
    disp = model.displacements(clip.vertices, clip.template)
    m, d = bank.gather(model, torch.tensor([0, 0]), torch.tensor([3, 7]), torch.tensor([3, 9]))
    assert torch.equal(m[1], model.mel_windows(mel, torch.tensor([7]))[0])
    assert torch.equal(d[1], disp[9:15])
    g = torch.Generator().manual_seed(0)
    mel_b, motion_b, label = sample_batch(bank, model, 4000, g, SamplingConfig())
    assert mel_b.shape == (4000, 80, 16) and motion_b.shape == (4000, 6, 12, 3)
    assert abs(float(label.mean()) - 0.5) < 0.03


# --------------------------------------------------------------------------- training and checkpoints
def test_training_learns_held_out_sync(expert):
    data, run, summary = expert
    m = summary["metrics"]
    for name in ("last.pt", "best.pt", "config.toml", "train_log.csv", "val_log.csv", "metrics.json"):
        assert (run / name).is_file(), name
    report = json.loads((run / "metrics.json").read_text())
    assert report["held_out"] and report["split"] == "val" and report["window_frames"] == 6
    assert report["metrics"]["binary_acc"] == pytest.approx(m["binary_acc"])
    assert m["binary_acc"] > 0.8  # unseen speaker; chance 0.5
    assert m["offset_acc_pm1"] > 0.4 > 0.1 > m["offset_chance"]
    assert m["clip_offset_acc"] == 1.0
    assert m["binary_acc_pos"] > 0.7 and m["binary_acc_neg"] > 0.6
    rows = (run / "train_log.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,lr,loss,acc,time_s" and len(rows) == 1 + 300 // 25
    assert len((run / "val_log.csv").read_text().splitlines()) == 5
    cfg = load_recipe(run / "config.toml")
    assert cfg["model"]["fps"] == 30.0 and cfg["train"]["steps_per_epoch"] == 75
    model = load_syncnet3d(run)
    assert not model.training and model.fps == 30.0 and model.lip_indices.tolist() == list(range(12))
    assert float(model.disp_scale) > 0


def test_resume_after_interruption_continues_exactly(tmp_path):
    data = make_sync_dataset(tmp_path / "d", sentences=2)
    r = {k: dict(v) for k, v in TINY_RECIPE.items()}
    r["train"] |= {"epochs": 2, "steps_per_epoch": 6, "checkpoint_every": 4}
    train(data, tmp_path / "full", r, progress=False)

    class Killed(Exception):
        pass

    def kill(row):
        if row["step"] == 9:
            raise Killed  # step 9 ran but was not checkpointed (last.pt is at step 8)

    with pytest.raises(Killed):
        train(data, tmp_path / "resumed", r, progress=False, callbacks=(kill,))
    assert read_syncnet3d_checkpoint(tmp_path / "resumed" / "last.pt")["train"]["step"] == 8
    train(data, tmp_path / "resumed", r, progress=False)
    a = read_syncnet3d_checkpoint(tmp_path / "full" / "last.pt")
    b = read_syncnet3d_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["train"]["step"] == b["train"]["step"] == 12
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    rows = (tmp_path / "resumed" / "train_log.csv").read_text().splitlines()
    steps = [int(x.split(",")[0]) for x in rows[1:]]
    assert steps == sorted(set(steps))  # no duplicated rows after the resume
    # a different model config is refused
    r["model"] = TINY_MODEL | {"embed_dim": 16}
    with pytest.raises(L2TError, match="different \\[model\\] config"):
        train(data, tmp_path / "resumed", r, progress=False, epochs=3)


def test_cli_registration_and_errors(tmp_path, capsys):
    data = make_sync_dataset(tmp_path / "d", sentences=2)
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        "[model]\nembed_dim = 16\naudio_channels = 16\nmotion_hidden = 16\n"
        "[train]\nbatch_size = 16\nsteps_per_epoch = 3\n"
    )
    parser = argparse.ArgumentParser(prog="l2t-gs")
    register_train(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "run"
    args = parser.parse_args(
        [*map(str, ["train", "syncnet3d", "--data", data, "--out", out, "--config", recipe]), "--epochs", "1"]
    )
    assert args.epochs == 1 and args.regions is None and args.threads is None
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "held-out (val, 2 clips) sync accuracy" in err and (out / "metrics.json").is_file()
    assert load_syncnet3d(out).config.embed_dim == 16
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatchsize = 3\n")
    args = parser.parse_args(
        ["train", "syncnet3d", "--data", str(data), "--out", str(tmp_path / "x"), "--config", str(bad)]
    )
    with pytest.raises(L2TError, match="unknown key\\(s\\) batchsize"):
        args.func(args)
    with pytest.raises(L2TError, match="recipe not found"):
        load_recipe("corpus")  # an Audio2Mesh recipe name is not a SyncNet3D recipe
    assert load_recipe("syncnet3d")["model"]["window_s"] == 0.2
    with pytest.raises(L2TError, match="no clips|does not exist"):
        train(tmp_path / "missing", tmp_path / "y", TINY_RECIPE, progress=False)


def test_checkpoint_errors_are_one_line(tmp_path):
    model = _tiny_model()
    path = save_syncnet3d(tmp_path / "m.pt", model)
    again = load_syncnet3d(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    torch.save({"format": "l2t-gs/audio2mesh", "format_version": 1}, tmp_path / "a2m.pt")
    data = torch.load(path, weights_only=True)
    torch.save(data | {"format_version": 99}, tmp_path / "future.pt")
    torch.save({k: v for k, v in data.items() if k != "model"}, tmp_path / "partial.pt")
    bad_state = dict(data)
    bad_state["model"] = {k: v for k, v in data["model"].items() if "audio_encoder" not in k}
    torch.save(bad_state, tmp_path / "mismatch.pt")
    cases = {
        "empty.pt": "is empty",
        "junk.pt": "corrupt, truncated",
        "trunc.pt": "corrupt, truncated",
        "a2m.pt": "not a SyncNet3D checkpoint \\(it is 'l2t-gs/audio2mesh'\\)",
        "future.pt": "format version 99",
        "partial.pt": "missing 'model'",
        "mismatch.pt": "does not match its config",
        "nothing.pt": "not found",
    }
    for name, msg in cases.items():
        with pytest.raises(L2TError, match=msg) as info:
            load_syncnet3d(tmp_path / name)
        assert "\n" not in str(info.value)
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    with pytest.raises(L2TError, match="no SyncNet3D checkpoint"):
        load_syncnet3d(empty_run)


# --------------------------------------------------------------------------- sync loss
def test_sync_loss_gradient_matches_finite_differences():
    model = _tiny_model(n_verts=5, n_lips=3).double()
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(1, 4800, generator=g, dtype=torch.float64) * 0.1  # 0.3 s: 9 frames, 3 scored windows
    tpl = torch.randn(1, 5, 3, generator=g, dtype=torch.float64) * 0.03
    verts = tpl[:, None] + torch.randn(1, 9, 5, 3, generator=g, dtype=torch.float64) * 0.003
    lips = verts[:, :, :3].clone().requires_grad_()  # finite differences on the lips (the rest gets no gradient)

    def with_lips(f: SyncLoss, x: torch.Tensor) -> torch.Tensor:
        return f(audio, torch.cat([x, verts[:, :, 3:]], dim=2), tpl)

    bce, cosine = SyncLoss(model), SyncLoss(model, kind="cosine")
    assert torch.autograd.gradcheck(lambda x: with_lips(bce, x), (lips,), eps=1e-7, atol=1e-6)
    assert torch.autograd.gradcheck(lambda x: with_lips(cosine, x), (lips,), eps=1e-7, atol=1e-6)
    v = verts.clone().requires_grad_()
    bce(audio, v, tpl).backward()
    assert v.grad[:, :, 3:].abs().max() == 0 and v.grad[:, :, :3].abs().max() > 0  # only lips get gradients
    assert all(p.grad is None for p in model.parameters())  # the expert is frozen


def test_sync_loss_windows_follow_mask_and_audio():
    model = _tiny_model()
    loss = SyncLoss(model)
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[1, 20:] = False
    lengths = torch.tensor([SR, 20 * SR // 30])
    valid = loss.valid_windows(mask, lengths)
    assert valid.shape == (2, 25)
    assert not valid[:, 0].any()  # mel frame 0's STFT window starts before the audio
    assert valid[0, 1:].sum() > 15 and int(valid[1].nonzero().max()) + 6 <= 20
    assert SyncLoss(model, windows=3).valid_windows(mask, lengths).shape == (2, 25)
    t = torch.zeros(2, 5, 24, 3, requires_grad=True)  # shorter than a window: zero loss, still differentiable
    out = loss(torch.zeros(2, 8000), t, torch.zeros(2, 24, 3))
    assert out.item() == 0.0 and out.requires_grad
    with pytest.raises(L2TError, match="30 fps"):
        loss(torch.zeros(1, SR), torch.zeros(1, 30, 24, 3), torch.zeros(1, 24, 3), fps=25)
    with pytest.raises(L2TError, match="24-vertex"):
        loss(torch.zeros(1, SR), torch.zeros(1, 30, 20, 3), torch.zeros(1, 20, 3))
    with pytest.raises(L2TError, match="kind"):
        SyncLoss(model, kind="l1")


def _batch_from(ds, shift: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    clips = [ds[i] for i in range(len(ds))]
    t = min(c.num_frames for c in clips)
    n = round(t * SR / 30)
    audio = torch.stack([c.audio[:n] for c in clips])
    verts = torch.stack([torch.from_numpy(shifted(c.vertices[:t].numpy(), shift)) for c in clips])
    tpl = torch.stack([c.template for c in clips])
    return audio, verts, tpl, torch.ones(len(clips), t, dtype=torch.bool)


def test_sync_loss_prefers_aligned_motion(expert):
    from l2t_gs.training.data.datasets import load_dataset

    data, run, _ = expert
    ds = load_dataset(data, split="val")
    for kind in ("bce", "cosine"):
        loss = SyncLoss(load_syncnet3d(run), kind=kind)
        aligned = float(loss(*_batch_from(ds)))
        for k in (-4, -2, 3, 6):
            assert aligned < float(loss(*_batch_from(ds, k))), (kind, k)
        audio, verts, tpl, mask = _batch_from(ds)
        still = tpl[:, None].expand_as(verts)
        assert aligned < float(loss(audio, still, tpl, mask)), kind


def test_sync_loss_factory_plugs_into_audio2mesh_training(expert, tmp_path):
    from l2t_gs.training.audio2mesh import train as train_a2m
    from l2t_gs.training.losses.registry import LOSSES

    data, run, _ = expert
    assert LOSSES.get("sync") is sync_loss_factory
    recipe = {
        "model": {"d_model": 16, "n_layers": 1, "enc_dim": 16, "enc_layers": 1, "n_mels": 40},
        "train": {"epochs": 1, "max_steps": 2, "batch_size": 2, "crop_s": 1.0, "log_every": 1, "threads": 1},
        "data": {},
        "loss": {"vertex": 1.0, "sync": {"weight": 0.1, "syncnet": str(run), "windows": 8}},
    }
    train_a2m(data, tmp_path / "a2m", recipe, progress=False)
    rows = (tmp_path / "a2m" / "train_log.csv").read_text().splitlines()
    assert "sync" in rows[0].split(",") and len(rows) == 3
    sync_vals = [float(r.split(",")[rows[0].split(",").index("sync")]) for r in rows[1:]]
    assert all(math.isfinite(v) and v > 0 for v in sync_vals)
    with pytest.raises(L2TError, match="set syncnet"):
        sync_loss_factory({}, None, torch.device("cpu"))
    with pytest.raises(L2TError, match="unknown option"):
        sync_loss_factory({"syncnet": str(run), "temperature": 1}, None, torch.device("cpu"))

    class Other:
        n_verts, fps = 100, 30.0

    with pytest.raises(L2TError, match="24-vertex meshes, the model predicts 100"):
        sync_loss_factory({"syncnet": str(run)}, Other(), torch.device("cpu"))


@pytest.mark.slow
def test_larger_expert_at_25_fps(tmp_path):
    """A bigger dataset at 25 fps (5-frame / 16-mel windows) and a longer run: stronger held-out numbers."""
    data = make_sync_dataset(
        tmp_path / "d", fps=25, subjects=("a", "b", "c", "d", "e"), val_subjects=("e",), sentences=10, seed=3
    )
    r = {k: dict(v) for k, v in TINY_RECIPE.items()}
    r["model"] = {"embed_dim": 64, "audio_channels": 64, "motion_hidden": 64}
    r["train"] |= {"epochs": 6, "steps_per_epoch": 150, "batch_size": 64}
    summary = train(data, tmp_path / "run", r, progress=False)
    m = summary["metrics"]
    assert summary["report"]["window_frames"] == 5 and summary["report"]["mel_frames"] == 16
    assert m["binary_acc"] > 0.85 and m["offset_acc_pm1"] > 0.5 and m["clip_offset_acc"] == 1.0
    shutil.rmtree(tmp_path / "d")
