"""The lip reader (visemes, network, checkpoints, user readers), its trainer and the lip-reading loss."""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.errors import L2TError
from l2t_gs.gaussians import load_avatar
from l2t_gs.speech.phones import PHONES
from l2t_gs.training.data.mouth import MouthCropSpec
from l2t_gs.training.data.teacher_video import TeacherCrops, save_teacher_crops
from l2t_gs.training.lipreader import AugmentConfig, augment, train_lipreader
from l2t_gs.training.losses.lipread import LipReadLoss, lipread_loss_factory, resample_time
from l2t_gs.training.models.lipreader import (
    PHONE_TO_VISEME,
    VISEMES,
    LipReader,
    LipReaderConfig,
    LipReaderNet,
    frame_labels,
    load_lipreader,
    save_lipreader,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def avatar():
    return load_avatar("default")


# --------------------------------------------------------------------------- synthetic talking data
#: viseme -> (expression coefficients by name, jaw opening in radians): a crude articulation for tests.
TARGETS: dict[str, tuple[dict[str, float], float]] = {
    "sil": ({}, 0.0),
    "bilabial": ({"lip_close": 1.0, "lip_press": 0.5}, 0.0),
    "labiodental": ({"labiodental": 1.0}, 0.04),
    "dental": ({"upper_lip_raise": 0.3}, 0.07),
    "alveolar": ({}, 0.08),
    "sibilant": ({"spread": 0.4}, 0.03),
    "postalveolar": ({"pucker": 0.5, "lower_lip_drop": 0.6}, 0.05),
    "velar": ({}, 0.13),
    "rhotic": ({"pucker": 0.4}, 0.07),
    "round_close": ({"pucker": 1.0}, 0.04),
    "round_open": ({"pucker": 0.6}, 0.15),
    "open": ({}, 0.22),
    "spread": ({"spread": 0.9}, 0.08),
}


def random_segments(rng: np.random.Generator, seconds: float) -> list[tuple[str, float, float]]:
    """Random phones of 60-160 ms between short silences."""
    spoken = [p for p in PHONES if p != "sil"]
    t = float(rng.uniform(0.1, 0.2))
    segs = [("sil", 0.0, t)]
    while t < seconds - 0.2:
        d = float(rng.uniform(0.06, 0.16))
        segs.append((spoken[rng.integers(len(spoken))], t, t + d))
        t += d
    segs.append(("sil", t, seconds))
    return segs


def articulate(model, segs: list[tuple[str, float, float]], fps: float, n: int) -> dict[str, torch.Tensor]:
    """Rig parameters ``expr [n, E]``, ``jaw_pose [n, 3]``: viseme targets at phone centres, linearly blended."""
    names = list(model.expr_names)
    keys = np.array([(s + e) / 2 for _, s, e in segs])
    expr_k = np.zeros((len(segs), model.n_expr))
    jaw_k = np.zeros(len(segs))
    for i, (p, _, _) in enumerate(segs):
        ex, jaw_k[i] = TARGETS[list(VISEMES)[PHONE_TO_VISEME[p]]]
        for k, v in ex.items():
            expr_k[i, names.index(k)] = v
    t = (np.arange(n) + 0.5) / fps
    expr = np.stack([np.interp(t, keys, expr_k[:, j]) for j in range(model.n_expr)], 1)
    jaw = np.zeros((n, 3))
    jaw[:, 0] = np.interp(t, keys, jaw_k)
    return {"expr": torch.tensor(expr, dtype=torch.float32), "jaw_pose": torch.tensor(jaw, dtype=torch.float32)}


def make_viseme_dataset(
    root: Path, subjects=("spkA", "spkB"), val=("spkB",), clips=2, seconds=1.0, fps=10, seed=0
) -> Path:
    """Built-in-head meshes articulated from random phones, in the corpus layout (phones/*.json)."""
    from l2t_gs.rig import FlameRig, load_head_model

    rng = np.random.default_rng(seed)
    model = load_head_model("builtin")
    rig = FlameRig(model)
    for d in ("wav", "vertices_npy", "phones"):
        (root / d).mkdir(parents=True)
    with torch.no_grad():
        template = rig()[0].numpy()
    for s in subjects:
        for c in range(1, clips + 1):
            n = int(round(seconds * fps * rng.uniform(0.9, 1.1)))
            segs = random_segments(rng, n / fps)
            with torch.no_grad():
                v = rig(**articulate(model, segs, fps, n))
            name = f"{s}_sentence{c:02d}"
            np.save(root / "vertices_npy" / f"{name}.npy", v.reshape(n, -1).numpy())
            sf.write(root / "wav" / f"{name}.wav", np.zeros(int(n / fps * 16000), np.float32), 16000)
            phones = [{"phone": p.upper() if i % 2 else p, "start": a, "end": b} for i, (p, a, b) in enumerate(segs)]
            (root / "phones" / f"{name}.json").write_text(json.dumps(phones))
    with open(root / "templates.pkl", "wb") as fh:
        pickle.dump(dict.fromkeys(subjects, template), fh)
    spec = {"version": 1, "fps": fps, "subjects": list(subjects)}
    spec["splits"] = {"train": {"subjects": [s for s in subjects if s not in val]}, "val": {"subjects": list(val)}}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


TINY = {
    "model": {"channels": [4, 8, 8, 8], "d_model": 16, "temporal_layers": 1, "fps": 10.0, "dropout": 0.0},
    "crop": {"height": 16, "width": 16},
    "train": {
        "epochs": 2,
        "batch_size": 2,
        "window": 6,
        "lr": 5e-3,
        "checkpoint_every": 2,
        "log_every": 1,
        "warmup_steps": 2,
        "device": "cpu",
    },  # fmt: skip
    "augment": {},
    "data": {},
}


# --------------------------------------------------------------------------- labels and network
def test_visemes_cover_every_phone_once_and_label_frames_at_their_centres():
    assert sorted(p for group in VISEMES.values() for p in group) == sorted(PHONES)
    segs = [
        SimpleNamespace(phone=p, start=a, end=b) for p, a, b in [("sil", 0, 0.1), ("M", 0.1, 0.25), ("aa", 0.3, 0.4)]
    ]
    # frame centres at 10 fps: 0.05 sil, 0.15 m, 0.25 gap -> sil, 0.35 aa, 0.45 past the end -> sil
    ids = frame_labels(segs, 10.0, 5)
    names = [list(VISEMES)[i] for i in ids]
    assert names == ["sil", "bilabial", "sil", "open", "sil"]
    assert [PHONES[i] for i in frame_labels(segs, 10.0, 5, labels="phone")] == ["sil", "m", "sil", "aa", "sil"]
    with pytest.raises(L2TError, match="not a canonical phone"):
        frame_labels([SimpleNamespace(phone="xx", start=0, end=1)], 10.0, 2)


@pytest.mark.parametrize("temporal", ["tcn", "gru"])
def test_network_shapes_and_protocol(temporal):
    cfg = LipReaderConfig(channels=(4, 8, 8, 8), d_model=16, temporal=temporal, temporal_layers=2)
    net = LipReaderNet(cfg, MouthCropSpec(height=16, width=24)).eval()
    assert isinstance(net, LipReader) and net.crop_size == (16, 24) and net.fps == 30.0
    x = torch.rand(2, 7, 1, 16, 24)
    assert net.features(x).shape == (2, 7, 16)
    assert net(x).shape == (2, 7, len(VISEMES))
    # brightness and contrast do not matter (per-sequence standardisation)
    torch.testing.assert_close(net.features(0.2 + 0.5 * x), net.features(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(L2TError, match="expects crops"):
        net.features(torch.rand(2, 7, 1, 16, 16))
    with pytest.raises(L2TError, match="temporal"):
        LipReaderConfig.from_dict({"temporal": "lstm"})


def test_augmentation_keeps_range_shape_and_sequence_consistency():
    x = torch.rand(3, 4, 1, 16, 16)
    x[:, :, :, 4:12, 4:12] = 0.1  # a dark mouth
    y = augment(x.clone(), AugmentConfig(), torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    same = augment(x[:, :1].expand(-1, 4, -1, -1, -1).clone(), AugmentConfig(noise=0.0), torch.Generator())
    torch.testing.assert_close(same[:, 1:], same[:, :1].expand(-1, 3, -1, -1, -1))  # one transform per sequence


# --------------------------------------------------------------------------- checkpoints and user readers
def test_checkpoint_round_trip_and_user_factories(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = LipReaderNet(LipReaderConfig(channels=(4, 8, 8, 8), d_model=16), MouthCropSpec(height=16, width=16)).eval()
    run = tmp_path / "run"
    run.mkdir()
    save_lipreader(run / "best.pt", net)
    x = torch.rand(1, 5, 1, 16, 16)
    for spec in (run, run / "best.pt", str(run / "best.pt")):
        back = load_lipreader(spec)
        assert not back.training and not any(p.requires_grad for p in back.parameters())
        torch.testing.assert_close(back.features(x), net.features(x))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(L2TError, match="corrupt"):
        load_lipreader(tmp_path / "bad.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(L2TError, match="not an l2t-gs lip reader"):
        load_lipreader(tmp_path / "other.pt")
    with pytest.raises(L2TError, match="not found"):
        load_lipreader(tmp_path / "missing.pt")

    module = tmp_path / "my_reader.py"
    module.write_text(
        textwrap.dedent(
            """
            import torch

            class MeanReader:
                crop_size = (16, 16)
                fps = 25.0
                def features(self, crops):
                    return crops.mean(dim=(2, 3, 4))[..., None].repeat(1, 1, 4)

            def make():
                return MeanReader()

            def broken():
                return object()
            """
        )
    )
    user = load_lipreader(f"{module}:make")
    assert isinstance(user, LipReader) and user.features(x).shape == (1, 5, 4)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_lipreader("my_reader:make").fps == 25.0
    with pytest.raises(L2TError, match="lacks crop_size, fps, features"):
        load_lipreader("my_reader:broken")
    with pytest.raises(L2TError, match="no attribute"):
        load_lipreader("my_reader:nothing")
    with pytest.raises(L2TError, match="cannot import"):
        load_lipreader("no_such_module_xyz:make")


# --------------------------------------------------------------------------- training
def test_training_run_resume_cache_and_cli(tmp_path, capsys):
    data = make_viseme_dataset(tmp_path / "ds")
    full = train_lipreader(data, tmp_path / "a", TINY, progress=False)
    a = tmp_path / "a"
    for name in ("best.pt", "last.pt", "config.toml", "train_log.csv", "val_log.csv", "metrics.json"):
        assert (a / name).is_file(), name
    metrics = json.loads((a / "metrics.json").read_text())
    assert metrics["split"] == "val" and metrics["val_frames"] > 0 and 0 <= metrics["val_frame_accuracy"] <= 1
    assert 0 < metrics["majority_baseline"] <= 1 and metrics["steps"] == full["steps"] == 4
    cached = sorted((a / "cache" / "train").glob("*.npz"))
    assert len(cached) == 2 and (a / "cache" / "manifest.json").is_file()
    with np.load(cached[0]) as z:
        assert z["crops"].dtype == np.uint8 and z["crops"].shape[1:] == (16, 16)
        assert z["labels"].shape[0] == z["crops"].shape[0]
    assert load_lipreader(a).crop_size == (16, 16)

    # an interrupted run resumes from last.pt and ends where the uninterrupted one did (same cache reused)
    b = tmp_path / "b"
    b.mkdir()
    shutil.copytree(a / "cache", b / "cache")
    stamps = {p: p.stat().st_mtime_ns for p in (b / "cache").rglob("*.npz")}

    def stop(info: dict) -> None:
        if info["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lipreader(data, b, TINY, progress=False, callbacks=[stop])
    resumed = train_lipreader(data, b, TINY, progress=False)
    assert resumed["steps"] == full["steps"]
    assert {p: p.stat().st_mtime_ns for p in (b / "cache").rglob("*.npz")} == stamps
    wa = torch.load(a / "last.pt", weights_only=True)["model"]
    wb = torch.load(b / "last.pt", weights_only=True)["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], msg=k)
    # a different [model] refuses to resume
    other = {**TINY, "model": {**TINY["model"], "d_model": 8}}
    with pytest.raises(L2TError, match="different"):
        train_lipreader(data, b, other, progress=False)

    # the command line
    from l2t_gs.cli.train import register as register_train

    parser = argparse.ArgumentParser()
    register_train(parser.add_subparsers(dest="cmd"))
    recipe = tmp_path / "tiny.toml"
    from l2t_gs.training.audio2mesh import dump_toml

    recipe.write_text(dump_toml(TINY))
    args = parser.parse_args(["train", "lipreader", "--data", str(data), "--out", str(a), "--config", str(recipe),
                              "--epochs", "3", "--no-progress"])  # fmt: skip
    assert args.func(args) == 0
    assert "held-out frame accuracy" in capsys.readouterr().err
    args = parser.parse_args(["train", "lipreader", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "c")])
    with pytest.raises(L2TError, match="does not exist"):
        args.func(args)


# --------------------------------------------------------------------------- the loss
#: A narrow window (the lips only, small margins) keeps the loss tests fast: fewer splats reach it.
NARROW = MouthCropSpec(height=16, width=16, window_scale=0.8, drop=0.0, splat_margin=0.1, depth_margin=0.3)


class PoolReader:
    """A user-style lip reader whose features are the crops average-pooled to 4 x 4 (sensitive to every
    mouth change, unlike an untrained network, whose global pooling makes its features nearly constant);
    it asks for a narrow crop window through the optional ``crop_spec``."""

    crop_size = (16, 16)
    fps = 10.0
    crop_spec = NARROW

    def features(self, crops: torch.Tensor) -> torch.Tensor:
        b, t = crops.shape[:2]
        return torch.nn.functional.avg_pool2d(crops.flatten(0, 1), 4).reshape(b, t, 16)


def make_pool_reader() -> PoolReader:
    return PoolReader()


@pytest.fixture(scope="module")
def motion(avatar):
    """Ground-truth talking meshes [1, 12, V, 3] at 10 fps and a still face of the same length."""
    segs = random_segments(np.random.default_rng(3), 1.2)
    gt = avatar.vertices_from_params(articulate(avatar.head_model, segs, 10.0, 12))[None]
    still = avatar.neutral_vertices()[None, None].expand_as(gt).clone()
    return gt, still


@pytest.fixture(scope="module")
def lipread(avatar):
    return LipReadLoss(PoolReader(), avatar, window=3, windows=1)


def test_lipread_loss_is_zero_for_the_teacher_and_larger_for_a_still_face(lipread, motion):
    gt, still = motion
    windows = [(0, 5, 3)]
    # a random window; the teacher is rendered by the compiled CPU path, the student by the differentiable one:
    # the same image up to rounding
    assert float(lipread(gt, fps=10.0, teacher_vertices=gt)) < 1e-12
    far = float(lipread(still, fps=10.0, teacher_vertices=gt, windows=windows))
    assert far > 1e-4
    # teacher crops (e.g. from a video) instead of teacher meshes: the same number
    crops = lipread.renderer.render(gt[0, 5:8])[None]
    far_crops = lipread(still[:, 5:8], fps=10.0, teacher_crops=crops, windows=[(0, 0, 3)])
    assert float(far_crops) == pytest.approx(far, rel=1e-5)
    unbatched = lipread(still[0, 5:8], fps=10.0, teacher_crops=crops[0], windows=[(0, 0, 3)])  # [T, ...] inputs
    assert float(unbatched) == pytest.approx(far, rel=1e-5)
    lipread.distance = "cosine"
    try:
        assert float(lipread(still, fps=10.0, teacher_vertices=gt, windows=windows)) > 1e-6
    finally:
        lipread.distance = "l2"
    with pytest.raises(L2TError, match="exactly one"):
        lipread(gt, fps=10.0)
    with pytest.raises(L2TError, match="distance"):
        LipReadLoss(PoolReader(), lipread.renderer.avatar, distance="l1")


def test_lipread_loss_gradient_points_toward_the_teacher(lipread, motion):
    gt, still = motion
    windows = [(0, 5, 2)]
    student = (0.5 * (gt + still)).requires_grad_(True)
    value = lipread(student, fps=10.0, teacher_vertices=gt, windows=windows)
    value.backward()
    grad = student.grad
    assert float(grad[0, :5].abs().sum()) == 0.0 and float(grad[0, 7:].abs().sum()) == 0.0  # only the window
    assert float(grad[0, 5:7].abs().sum()) > 0
    step = 0.2 * float(value.detach()) / float(grad.square().sum())  # first order: 20% lower
    with torch.no_grad():
        after = lipread(student - step * grad, fps=10.0, teacher_vertices=gt, windows=windows)
    assert float(after) < float(value.detach())


def test_lipread_loss_factory_with_a_teacher_folder_and_a_user_reader(avatar, lipread, motion, tmp_path):
    gt, still = motion
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    crops = lipread.renderer.render(gt[0, :7])
    save_teacher_crops(teacher / "clip1.npz", TeacherCrops(crops, 10.0))  # the video covers 7 frames
    opts = {"lipreader": f"{__file__}:make_pool_reader", "teacher": str(teacher), "window": 3, "windows": 1}
    fn = lipread_loss_factory(opts, SimpleNamespace(n_verts=avatar.n_verts), torch.device("cpu"))
    batch = SimpleNamespace(fps=10.0, names=["clip1"], starts=[4], templates=avatar.neutral_vertices()[None])
    scale = 1000.0
    ctx = SimpleNamespace(pred=gt[:, 4:10] * scale, target=gt[:, 4:10] * scale, scale=scale, step=5,
                          mask=torch.ones(1, 6, dtype=torch.bool), batch=batch)  # fmt: skip
    assert float(fn(ctx)) < 1e-5  # uint8 teacher crops: quantisation differences only (frames 4..6)
    ctx.pred = still[:, 4:10] * scale
    assert float(fn(ctx)) > 1e-4
    with pytest.raises(L2TError, match="unknown option"):
        lipread_loss_factory({**opts, "wights": 1}, None, torch.device("cpu"))
    with pytest.raises(L2TError, match="set lipreader"):
        lipread_loss_factory({}, None, torch.device("cpu"))
    with pytest.raises(L2TError, match="vertices"):
        lipread_loss_factory(opts, SimpleNamespace(n_verts=5023), torch.device("cpu"))


def test_resample_time_is_linear_and_identity_at_the_same_rate():
    x = torch.arange(6, dtype=torch.float32).view(1, 6, 1)
    assert resample_time(x, 30.0, 30.0) is x
    y = resample_time(x, 30.0, 15.0)  # frame centres 0.5, 2.5, 4.5 in input frames
    torch.testing.assert_close(y[0, :, 0], torch.tensor([0.5, 2.5, 4.5]))
    assert resample_time(x, 30.0, 60.0).shape == (1, 12, 1)


@pytest.mark.slow
def test_the_lip_reader_learns_visemes_and_its_loss_ranks_motions(tmp_path, avatar):
    """Default recipe on synthetic talking heads (4 speakers x 4 clips x 2 s at 30 fps, 48 x 48 crops): the
    held-out speaker's frames are classified far above the majority class, and with the trained reader the
    lip-read loss ranks ground truth < half-articulated < still motion."""
    data = make_viseme_dataset(tmp_path / "ds", ("s1", "s2", "s3", "s4"), val=("s4",), clips=4, seconds=2.0, fps=30)
    recipe = {
        "train": {"epochs": 6, "steps_per_epoch": 20, "device": "cpu"},
        "model": {},
        "crop": {},
        "augment": {},
        "data": {},
    }
    summary = train_lipreader(data, tmp_path / "run", recipe, progress=False)
    assert summary["val_frame_accuracy"] > max(0.4, 2 * summary["majority_baseline"]), summary
    from l2t_gs.training.data.datasets import load_dataset

    clip = load_dataset(data, split="val")[0]
    gt = clip.vertices[None]
    still = clip.template[None, None].expand_as(gt).clone()
    loss = LipReadLoss(tmp_path / "run", avatar, window=12, windows=3)
    windows = loss.sample_windows([clip.num_frames])
    values = [
        float(loss(v, fps=clip.fps, teacher_vertices=gt, templates=clip.template, windows=windows))
        for v in (gt, 0.5 * (gt + still), still)
    ]
    # ground truth against itself: zero up to float rounding (the teacher is rendered by the compiled
    # rasterizer, the student by the differentiable one)
    assert values[0] < 1e-6 and values[0] < values[1] < values[2], values
