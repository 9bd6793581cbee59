"""The context contact head: its window (against a brute-force convolution), streaming equal to the whole
clip, a new head leaving the model unchanged, the checkpoint field, and its trainer on a tiny corpus."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.errors import L2TError
from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
from l2t_gs.models.contact_context import ContactContext

pytestmark = pytest.mark.usefixtures("one_thread")

_SMALL = dict(output="rig", head="builtin", enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _brute(head: ContactContext, feats: np.ndarray) -> np.ndarray:
    """The head by explicit sums over each output frame's window (zeros outside the clip), float64."""

    def arr(p: torch.Tensor) -> np.ndarray:
        return p.detach().double().numpy()

    w1, b1, w2, b2 = arr(head.conv1.weight), arr(head.conv1.bias), arr(head.conv2.weight), arr(head.conv2.bias)
    w3, b3 = arr(head.out.weight), arr(head.out.bias)
    x = feats.mean(1)  # [T, C]
    n, k1, k2 = x.shape[0], w1.shape[2], w2.shape[2]

    def conv(inp: np.ndarray, w: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
        out = np.zeros((n, w.shape[0]))
        for t in range(n):
            out[t] = b
            for j in range(k):
                s = t + j - k // 2
                if 0 <= s < n:
                    out[t] += w[:, :, j] @ inp[s]
        return out

    h = _gelu(conv(_gelu(conv(x, w1, b1, k1)), w2, b2, k2))
    return h @ w3[:, :, 0].T + b3


def _randomised(head: ContactContext, seed: int = 0, std: float = 0.3) -> ContactContext:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return head.eval()


def test_the_head_equals_a_brute_force_window_and_reads_only_its_radius():
    head = _randomised(ContactContext(audio_dim=6, context=2, hidden=5, dropout=0.0))
    assert head.radius == 4
    feats = torch.randn(1, 25, 2, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        got = head.double()(feats)[0].numpy()
    np.testing.assert_allclose(got, _brute(head, feats[0].numpy()), atol=1e-10)
    # a change at frame 12 reaches frames 8..16 and no others
    moved = feats.clone()
    moved[0, 12] += 1.0
    with torch.no_grad():
        diff = np.abs(head(moved)[0].numpy() - got).max(1)
    assert (diff[8:17] > 1e-9).all() and (diff[:8] == 0).all() and (diff[17:] == 0).all()


def test_an_ensemble_is_the_mean_of_its_members_each_a_head_of_its_own():
    """Members side by side (grouped convolutions): member j equals a one-member head holding member j's
    slices of the weights, and the ensemble's logits are the members' mean."""
    ens = _randomised(ContactContext(audio_dim=6, context=2, hidden=5, dropout=0.0, members=3)).double()
    feats = torch.randn(1, 20, 1, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    with torch.no_grad():
        members = ens.member_logits(feats)[0].numpy()  # [T, 3, 2]
        np.testing.assert_allclose(ens(feats)[0].numpy(), members.mean(1), atol=1e-12)
    for j in range(3):
        one = ContactContext(audio_dim=6, context=2, hidden=5, dropout=0.0).double().eval()
        h = slice(5 * j, 5 * (j + 1))
        with torch.no_grad():
            one.conv1.weight.copy_(ens.conv1.weight[h])
            one.conv1.bias.copy_(ens.conv1.bias[h])
            one.conv2.weight.copy_(ens.conv2.weight[h])
            one.conv2.bias.copy_(ens.conv2.bias[h])
            one.out.weight.copy_(ens.out.weight[2 * j : 2 * j + 2])
            one.out.bias.copy_(ens.out.bias[2 * j : 2 * j + 2])
        np.testing.assert_allclose(members[:, j], _brute(one, feats[0].numpy()), atol=1e-10)
    assert np.abs(members[:, 0] - members[:, 1]).max() > 0.1  # the members differ


def _model(context: int = 0) -> Audio2Mesh:
    torch.manual_seed(0)
    cfg = Audio2MeshConfig(contact_head=True, contact_context=context, **_SMALL)
    return Audio2Mesh(cfg, subjects=["a"], n_verts=7931).eval()


def test_a_new_context_head_leaves_the_model_unchanged_and_streams_exactly():
    from l2t_gs.training.contact_head import with_context_head

    src = _model()
    model = with_context_head(src, context=3, hidden=8, dropout=0.3).eval()
    audio = 0.1 * torch.randn(16000 * 4, generator=torch.Generator().manual_seed(2))
    before = src.predict_params(audio, contacts=False)["contacts"]
    np.testing.assert_array_equal(model.predict_params(audio, contacts=False)["contacts"].numpy(), before.numpy())
    _randomised(model.contact_context)
    n = model.n_frames(audio.shape[0], model.fps)
    with torch.no_grad():
        whole = torch.sigmoid(
            model(audio[None], n, torch.tensor([-1]), src.head.v_template[None].float())["contact_logits"][0]
        )
    for chunk in (0.5, 1.0, 10.0):
        streamed = model.predict_params(audio, contacts=False, chunk_seconds=chunk)["contacts"]
        assert float((streamed - whole).abs().max()) < 1e-5, chunk
    assert float((whole - before).abs().max()) > 0.1  # the head does change the probabilities


def test_context_config_is_validated_and_stored_only_when_set(tmp_path):
    from l2t_gs.models.checkpoint import load_model, read_checkpoint, save_checkpoint

    with pytest.raises(L2TError, match="contact_context needs contact_head"):
        Audio2MeshConfig(output="rig", contact_context=3).validate()
    with pytest.raises(L2TError, match="contact_context"):
        Audio2MeshConfig(output="rig", contact_head=True, contact_context=-1).validate()
    with pytest.raises(L2TError, match="contact_dropout"):
        Audio2MeshConfig(output="rig", contact_head=True, contact_context=2, contact_dropout=1.0).validate()
    save_checkpoint(tmp_path / "plain.pt", _model())
    stored = read_checkpoint(tmp_path / "plain.pt")["config"]
    assert not {"contact_context", "contact_hidden", "contact_dropout"} & set(stored)  # older versions read it
    model = _model(context=2)
    save_checkpoint(tmp_path / "ctx.pt", model)
    assert read_checkpoint(tmp_path / "ctx.pt")["config"]["contact_context"] == 2
    back = load_model(tmp_path / "ctx.pt")
    assert back.contact_context is not None and back.contact_context.radius == 4
    for a, b in zip(back.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert "contact_members" not in read_checkpoint(tmp_path / "ctx.pt")["config"]  # one member: as before
    with pytest.raises(L2TError, match="contact_members"):
        Audio2MeshConfig(output="rig", contact_head=True, contact_context=2, contact_members=0).validate()
    torch.manual_seed(0)
    cfg = Audio2MeshConfig(contact_head=True, contact_context=2, contact_members=3, **_SMALL)
    ens = Audio2Mesh(cfg, subjects=["a"], n_verts=7931)
    save_checkpoint(tmp_path / "ens.pt", ens)
    assert read_checkpoint(tmp_path / "ens.pt")["config"]["contact_members"] == 3
    assert load_model(tmp_path / "ens.pt").contact_context.members == 3


# ------------------------------------------------------------------------------------------ trainer
FPS, SR = 30.0, 16000


@pytest.fixture(scope="module")
def dips(tmp_path_factory) -> object:
    """A corpus in which every "m" is a 100 ms silence in a hum: what a contact head can learn from audio."""
    from l2t_gs.gaussians import load_avatar

    root = tmp_path_factory.mktemp("dips")
    for sub in ("wav", "vertices_npy", "phones"):
        (root / sub).mkdir()
    neutral = load_avatar("default").neutral_vertices().float().numpy()
    (root / "templates.pkl").write_bytes(pickle.dumps({"spk": neutral}, protocol=2))
    rng = np.random.default_rng(0)
    for k in range(10):
        seconds = 3.0
        t = np.arange(int(seconds * SR)) / SR
        audio = 0.3 * np.sin(2 * np.pi * (140 + 10 * k) * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
        phones, at = [], 0.2
        phones.append({"phone": "sil", "start": 0.0, "end": at})
        while at < seconds - 0.6:
            vowel = float(rng.uniform(0.15, 0.35))
            phones.append({"phone": "AA", "start": at, "end": at + vowel})
            phones.append({"phone": "M", "start": at + vowel, "end": at + vowel + 0.1})
            audio[int((at + vowel) * SR) : int((at + vowel + 0.1) * SR)] = 0.0
            at += vowel + 0.1
        phones.append({"phone": "AA", "start": at, "end": seconds})
        name = f"spk_s{k:02d}"
        sf.write(root / "wav" / f"{name}.wav", audio.astype(np.float32), SR)
        frames = round(seconds * FPS)
        np.save(root / "vertices_npy" / f"{name}.npy", np.repeat(neutral.reshape(1, -1), frames, 0).astype(np.float16))
        (root / "phones" / f"{name}.json").write_text(json.dumps(phones))
    spec = {"version": 1, "fps": FPS, "splits": {"train": {"sentences": [0, 7]}, "val": {"sentences": [8, 9]}}}
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def test_the_trainer_learns_contacts_from_the_audio_and_writes_a_loadable_model(dips, tmp_path, capsys):
    from l2t_gs.cli.main import main
    from l2t_gs.models.checkpoint import load_model, save_checkpoint
    from l2t_gs.training.data.datasets import load_dataset

    src_path = tmp_path / "src.pt"
    save_checkpoint(src_path, _model())
    out = tmp_path / "ctx.pt"
    argv = ["train", "contact-head", "--model", str(src_path), "--data", str(dips), "--out", str(out),
            "--steps", "300", "--batch", "8", "--crop", "60", "--hidden", "16", "--lr", "1e-2", "--pos-weight", "1",
            "--members", "2", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "trained the context contact head on 8 clips" in capsys.readouterr().err
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["loss_last_100"] < 0.8 * report["loss_first_100"]  # 0.27 / 0.43 measured
    model = load_model(out)
    assert model.config.contact_context == 3 and model.config.contact_hidden == 16
    assert model.config.contact_members == 2
    # on the held-out clips the bilabial frames now score above the vowel frames, by a wide margin
    # (medians measured: 0.78 against 0.37)
    val = load_dataset(dips, split="val")
    on, off = [], []
    for i in range(len(val)):
        c = val[i]
        p = model.predict_params(c.audio, contacts=False)["contacts"][:, 0].numpy()
        tg = c.contact_targets()[:, 0].numpy()[: p.shape[0]]
        on.append(p[: tg.shape[0]][tg >= 1.0])
        off.append(p[: tg.shape[0]][tg == 0.0])
    assert np.median(np.concatenate(on)) > np.median(np.concatenate(off)) + 0.3


def test_a_seed_fixes_the_trained_head(dips, tmp_path):
    """The new head's random start is drawn after seeding: the same seed trains the same weights."""
    from l2t_gs.models.checkpoint import save_checkpoint
    from l2t_gs.training.contact_head import ContactHeadConfig, train_contact_head

    src = tmp_path / "src.pt"
    save_checkpoint(src, _model())
    torch.manual_seed(123)  # whatever the caller's random state, the seed decides
    runs = []
    for k, seed in enumerate((0, 0, 1)):
        cfg = ContactHeadConfig(hidden=4, steps=3, batch=2, crop=30, seed=seed)
        out = tmp_path / f"h{k}.pt"
        train_contact_head(src, dips, out, cfg, limit=2, progress=False)
        runs.append(torch.load(out, map_location="cpu", weights_only=False)["model"])
    keys = [k for k in runs[0] if k.startswith("contact_context.")]
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in keys)
    assert any(not torch.equal(runs[0][k], runs[2][k]) for k in keys)


def test_trainer_errors_are_one_line(dips, tmp_path, capsys):
    from l2t_gs.cli.main import main
    from l2t_gs.models.checkpoint import save_checkpoint

    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, Audio2Mesh(Audio2MeshConfig(**_SMALL), subjects=["a"], n_verts=7931))
    for argv, message in (
        (["--model", str(plain)], "no contact head"),
        (["--model", str(plain), "--context", "0"], "--context"),
        (["--model", str(plain), "--members", "0"], "--members"),
    ):
        out = tmp_path / "x.pt"
        code = main(["train", "contact-head", "--data", str(dips), "--out", str(out), *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and message in err[0], err
        assert not out.exists()


def test_phone_clips_filters_subjects_and_limits_in_order(dips, tmp_path):
    from l2t_gs.training.data.datasets import load_dataset, phone_clips

    ds = load_dataset(dips, split="all")
    assert [c.name for c in phone_clips(ds, ["sp?"], 3)] == ["spk_s00", "spk_s01", "spk_s02"]
    assert list(phone_clips(ds, ["other-*"])) == []
    (dips / "phones" / "spk_s00.json").rename(tmp_path / "s00.json")  # a clip without phones is skipped
    try:
        assert [c.name for c in phone_clips(load_dataset(dips, split="all"), None, 2)] == ["spk_s01", "spk_s02"]
    finally:
        (tmp_path / "s00.json").rename(dips / "phones" / "spk_s00.json")


def test_augmented_copies_are_cached_deterministically_with_the_same_targets(dips):
    """``--augment N``: every clip is cached N + 1 times (its audio, then N random channels of it), with
    the clip's own contact targets; the copies differ from the original, and a seed fixes them."""
    from l2t_gs.training.contact_head import _cache, with_context_head
    from l2t_gs.training.data.datasets import load_dataset, phone_clips

    model = with_context_head(_model(), context=2, hidden=4, dropout=0.0).eval()
    ds = load_dataset(dips, split="train")

    def cache(seed: int) -> list:
        return _cache(model, phone_clips(ds, None, 2), augment=2, seed=seed)[0]

    a, b, c = cache(0), cache(0), cache(1)
    assert len(a) == 6
    for k in range(6):
        assert torch.equal(a[k][0], b[k][0])  # deterministic for a seed
        assert torch.equal(a[k][2], a[3 * (k // 3)][2])  # the clip's targets for every copy
    for clip in (0, 3):
        assert float((a[clip + 1][0] - a[clip][0]).abs().max()) > 1e-3  # a copy is not the original
        assert torch.equal(a[clip][0], c[clip][0])  # the original does not depend on the seed
    assert any(float((a[k][0] - c[k][0]).abs().max()) > 1e-3 for k in (1, 2, 4, 5))  # copies do


# ------------------------------------------------------------------------------------------ contact encoder
def _with_encoder(seed: int = 4) -> Audio2Mesh:
    """A small model with a context head reading its own encoder, both randomised away from the shared one."""
    from l2t_gs.training.contact_head import with_context_head

    model = with_context_head(_model(), context=2, hidden=6, dropout=0.0, contact_encoder=True).eval()
    _randomised(model.contact_context, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.contact_encoder.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def test_a_contact_encoder_starts_as_the_shared_one_and_streams_exactly():
    from l2t_gs.training.contact_head import with_context_head

    src = _model()
    fresh = with_context_head(src, context=2, hidden=6, dropout=0.0, contact_encoder=True).eval()
    shared, own = fresh.encoder.state_dict(), fresh.contact_encoder.state_dict()
    assert all(torch.equal(shared[k], own[k]) for k in shared)  # a copy to start from
    audio = 0.1 * torch.randn(16000 * 4, generator=torch.Generator().manual_seed(5))
    model = _with_encoder()
    n = model.n_frames(audio.shape[0], model.fps)
    with torch.no_grad():
        out = model(audio[None], n, torch.tensor([-1]), src.head.v_template[None].float())
        whole = torch.sigmoid(out["contact_logits"][0])
        # the head reads the contact encoder's features, not the shared ones
        shared_feats = model.encode(audio[None], n)
        own_feats = model.encode(audio[None], n, contacts=True)
    assert float((own_feats - shared_feats).abs().max()) > 1e-3
    for chunk in (0.5, 1.0, 10.0):
        streamed = model.predict_params(audio, contacts=False, chunk_seconds=chunk)["contacts"]
        assert float((streamed - whole).abs().max()) < 1e-5, chunk


def test_crops_are_encoded_as_the_whole_clip_encodes_them():
    """Training crops of the head's own encoder (with context each side, exact sub-sample shift) equal
    the whole clip's features at the same frames."""
    from l2t_gs.training.contact_head import _encoded_crops

    model = _with_encoder()
    audio = 0.1 * torch.randn(16000 * 6, generator=torch.Generator().manual_seed(6))
    n = model.n_frames(audio.shape[0], model.fps)
    with torch.no_grad():
        whole = model.encode(audio[None], n, contacts=True)[0]
        crops = [(audio, 0, 40, n), (audio, 37, 77, n), (audio, n - 40, n, n)]
        got = _encoded_crops(model, crops, 40)
    for b, (_a, s, e, _n) in enumerate(crops):
        err = float((got[b, : e - s] - whole[s:e]).abs().max())
        assert err < 1e-4, (s, e, err)


def test_the_trainer_tunes_the_heads_own_encoder_only(dips, tmp_path):
    from l2t_gs.models.checkpoint import load_model, read_checkpoint, save_checkpoint
    from l2t_gs.training.contact_head import ContactHeadConfig, train_contact_head

    src_path = tmp_path / "src.pt"
    src = _model()
    save_checkpoint(src_path, src)
    out = tmp_path / "enc.pt"
    cfg = ContactHeadConfig(hidden=4, steps=4, batch=2, crop=30, tune_encoder=1e-3)
    train_contact_head(src_path, dips, out, cfg, limit=2, progress=False)
    assert read_checkpoint(out)["config"]["contact_encoder"] is True
    model = load_model(out)
    before = src.encoder.state_dict()
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())  # motion path as it was
    own = model.contact_encoder.state_dict()
    assert any(not torch.equal(before[k], own[k]) for k in before)  # the head's copy was trained
    with pytest.raises(L2TError, match="contact_encoder needs"):
        Audio2MeshConfig(output="rig", contact_head=True, contact_encoder=True).validate()
    with pytest.raises(L2TError, match="--tune-encoder"):
        ContactHeadConfig(tune_encoder=-1.0)
    save_checkpoint(tmp_path / "plain.pt", _model(context=2))
    assert "contact_encoder" not in read_checkpoint(tmp_path / "plain.pt")["config"]


def test_the_second_step_goes_on_from_the_trained_head_with_its_own_encoder(dips, tmp_path, capsys):
    """``--tune-encoder`` on a model whose context head is trained: the copy starts as the shared encoder
    (the same contacts as the source), the head keeps its shape and starts from its trained weights, and
    only the copy, the heads and nothing of the motion path change."""
    from l2t_gs.cli.main import main
    from l2t_gs.models.checkpoint import load_model, save_checkpoint
    from l2t_gs.training.contact_head import ContactHeadConfig, train_contact_head, with_own_encoder

    src = _model(context=2)
    _randomised(src.contact_context, 3)
    audio = 0.1 * torch.randn(16000 * 3, generator=torch.Generator().manual_seed(7))
    copy = with_own_encoder(src).eval()
    with torch.no_grad():
        a = src.predict_params(audio, contacts=False)["contacts"]
        b = copy.predict_params(audio, contacts=False)["contacts"]
    assert float((a - b).abs().max()) < 1e-6
    src_path = tmp_path / "ctx.pt"
    save_checkpoint(src_path, src)
    out = tmp_path / "two.pt"
    cfg = ContactHeadConfig(hidden=9, steps=3, batch=2, crop=30, tune_encoder=1e-3, lr=1e-9)
    report = train_contact_head(src_path, dips, out, cfg, limit=2, progress=False)
    model = load_model(out)
    assert model.config.contact_encoder and model.config.contact_hidden == src.config.contact_hidden
    assert report["config"]["hidden"] == src.config.contact_hidden and report["config"]["context"] == 2
    before, after = src.state_dict(), model.state_dict()
    for k, v in before.items():
        if k.startswith("contact_context."):  # from the trained weights (a learning rate of 1e-9 barely moves them)
            assert float((after[k] - v).abs().max()) < 1e-5, k
        elif not k.startswith("decoder.contact_out"):
            assert torch.equal(after[k], v), k
    own = model.contact_encoder.state_dict()
    assert any(not torch.equal(before["encoder." + k], own[k]) for k in own)
    # a head that already has its own encoder, or no --tune-encoder: one line, nothing written
    for model_path, extra in ((src_path, []), (out, ["--tune-encoder", "1e-4"])):
        bad = tmp_path / "bad.pt"
        argv = ["train", "contact-head", "--model", str(model_path), "--data", str(dips), "--out", str(bad)]
        code = main([*argv, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(err) == 1 and "already has a context contact head" in err[0], err
        assert not bad.exists()


def test_the_event_term_enters_training_and_is_validated(dips, tmp_path):
    from dataclasses import replace

    from l2t_gs.models.checkpoint import save_checkpoint
    from l2t_gs.training.contact_head import ContactHeadConfig, train_contact_head

    src = tmp_path / "src.pt"
    save_checkpoint(src, _model())
    base = ContactHeadConfig(hidden=4, steps=3, batch=2, crop=30)
    weights = []
    for k, cfg in enumerate((base, replace(base, event_weight=2.0))):
        out = tmp_path / f"e{k}.pt"
        report = train_contact_head(src, dips, out, cfg, limit=2, progress=False)
        assert report["config"]["event_weight"] == cfg.event_weight
        weights.append(torch.load(out, map_location="cpu", weights_only=False)["model"])
    keys = [k for k in weights[0] if k.startswith("contact_context.")]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in keys)  # same seed, the term changed the steps
    for bad in ({"event_weight": -1.0}, {"event_weight": math.inf}, {"event_widen": 16}, {"event_widen": -1}):
        with pytest.raises(L2TError, match="--event-weight"):
            ContactHeadConfig(**bad)
