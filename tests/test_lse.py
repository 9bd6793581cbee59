"""LSE-D / LSE-C / offset: syncnet_python's definitions, and a trained SyncNet3D scoring synthetic motion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_syncnet3d import shifted, tiny_expert

from l2t_gs.errors import L2TError
from l2t_gs.training.data.datasets import load_dataset
from l2t_gs.training.metrics.evaluate import evaluate, get_metric
from l2t_gs.training.metrics.lse import LSE, sync_scores

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    return tiny_expert(tmp_path_factory)


@pytest.fixture(scope="module")
def val_clips(expert):
    data, _, _ = expert
    ds = load_dataset(data, split="val")
    return [ds[i] for i in range(len(ds))]


@pytest.fixture(scope="module")
def metric(expert):
    return LSE(expert[1])


# --------------------------------------------------------------------------- definitions
def _syncnet_python(
    feat_video: torch.Tensor, feat_audio: torch.Tensor, vshift: int
) -> tuple[np.ndarray, float, float, int]:
    """syncnet_python's ``calc_pdist`` + offset/confidence, restated loop by loop (reference for the vectorised one)."""
    win = 2 * vshift + 1
    padded = torch.nn.functional.pad(feat_audio, (0, 0, vshift, vshift))
    dists = [
        torch.nn.functional.pairwise_distance(feat_video[[i], :].repeat(win, 1), padded[i : i + win, :])
        for i in range(len(feat_video))
    ]
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return mdist.numpy(), float(minval), float(torch.median(mdist) - minval), int(vshift - minidx)


@pytest.mark.parametrize("n", [40, 7])
def test_sync_scores_reproduce_syncnet_python(n):
    g = torch.Generator().manual_seed(n)
    video, audio = torch.randn(n, 16, generator=g), torch.randn(n, 16, generator=g)  # unnormalised, like syncnet's
    for vshift in (15, 3):
        ref_mdist, ref_d, ref_c, ref_off = _syncnet_python(video, audio, vshift)
        s = sync_scores(video, audio, vshift, pad="zeros")
        np.testing.assert_allclose(s.mean_dist, ref_mdist[::-1], atol=1e-4)  # ours ascend in offset
        assert s.offsets.tolist() == list(range(-vshift, vshift + 1))
        assert s.lse_d == pytest.approx(ref_d, abs=1e-4) and s.lse_c == pytest.approx(ref_c, abs=1e-4)
        assert s.offset == ref_off and s.windows == n


@pytest.mark.parametrize("pad", ["zeros", "valid"])
@pytest.mark.parametrize("k", [-7, -2, 0, 1, 4, 15])
def test_offset_sign_motion_lagging_audio_is_positive(pad, k):
    g = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(80, 8, generator=g), dim=-1)
    motion = audio[(torch.arange(80) - k).clamp(0, 79)]  # motion window i shows audio window i - k: motion lags
    s = sync_scores(motion, audio, 15, pad)
    assert s.offset == k
    assert s.lse_d < 0.5 * float(np.median(s.mean_dist))  # a sharp minimum
    assert s.lse_c == pytest.approx(float(np.sort(s.mean_dist)[15]) - s.lse_d)


def test_sync_scores_edge_cases():
    e = torch.randn(10, 4)
    s = sync_scores(e[:0], e[:0])
    assert s.windows == 0 and math.isnan(s.lse_d) and math.isnan(s.lse_c)
    s = sync_scores(e, e, vshift=0)
    assert s.offset == 0 and s.lse_d == pytest.approx(0.0) and s.lse_c == pytest.approx(0.0)
    # "valid": offsets with no pair at all are left out of min and median
    s = sync_scores(e[:3], e[:3], vshift=5, pad="valid")
    assert np.isnan(s.mean_dist).sum() == 6 and s.offset == 0  # |offset| >= 3 has no pair among 3 windows
    with pytest.raises(ValueError, match="pad"):
        sync_scores(e, e, pad="edge")
    with pytest.raises(ValueError, match="shape"):
        sync_scores(e, e[:5])


# --------------------------------------------------------------------------- a trained expert
def test_ground_truth_is_in_sync(metric, val_clips):
    for pad in ("zeros", "valid"):
        m = LSE(metric.expert, pad=pad)
        for clip in val_clips:
            (s,) = m.scores(clip.audio, clip.audio_sr, [clip.vertices.numpy()], clip.template.numpy())
            assert s.offset == 0, (clip.name, pad)
            assert s.lse_c > 0.1


@pytest.mark.parametrize("pad", ["valid", "zeros"])
@pytest.mark.parametrize("k", [-6, -3, 2, 5, 9])
def test_shifted_ground_truth_reports_the_shift(metric, val_clips, k, pad):
    m = LSE(metric.expert, pad=pad)
    for clip in val_clips:
        v = clip.vertices.numpy()
        gt, shift = m.scores(clip.audio, clip.audio_sr, [v, shifted(v, k)], clip.template.numpy())
        assert shift.offset == k, clip.name
        if pad == "valid":  # with zero padding, edge pairs at distance 1 lower the shifted clip's minimum
            assert shift.lse_d > gt.lse_d - 0.02, clip.name


def test_still_face_scores_clearly_worse(metric, val_clips):
    for clip in val_clips:
        v, tpl = clip.vertices.numpy(), clip.template.numpy()
        gt, still = metric.scores(clip.audio, clip.audio_sr, [v, np.repeat(tpl[None], len(v), 0)], tpl)
        assert still.lse_d > gt.lse_d + 0.1, clip.name
        assert still.lse_c < 0.5 * gt.lse_c, clip.name


def test_audio_at_another_rate_is_resampled(metric, val_clips):
    from l2t_gs.audio.io import resample

    clip = val_clips[0]
    v, tpl = clip.vertices.numpy(), clip.template.numpy()
    (a,) = metric.scores(clip.audio, 16000, [v], tpl)
    (b,) = metric.scores(resample(clip.audio.numpy(), 16000, 22050), 22050, [v], tpl)
    assert b.offset == a.offset == 0 and b.lse_d == pytest.approx(a.lse_d, abs=0.05)


# --------------------------------------------------------------------------- the eval metric
def test_lse_in_the_evaluation_registry(expert, metric):
    data, run, _ = expert
    ds = load_dataset(data, split="val")
    res = evaluate(lambda clip: shifted(clip.vertices.numpy(), 3), ds, metrics=[metric, "lve"])
    for row in res.clips:
        assert row.values["lse_offset"] == 3 and row.values["lse_offset_gt"] == 0
        assert row.values["lse_windows"] == row.values["lse_windows_gt"] > 0
    o = res.overall
    assert o["lse_offset0"] == 0.0 and o["lse_offset0_gt"] == 1.0 and o["lse_offset_abs"] == 3.0
    assert o["lse_clips"] == len(ds) and math.isfinite(o["lse_d"]) and math.isfinite(o["lse_c_gt"])
    assert o["lse_d"] == pytest.approx(np.mean([r.values["lse_d"] for r in res.clips]))
    table = res.table()
    assert "LSE-D" in table and "LSE-C GT" in table
    report = res.to_dict()
    assert report["metrics"]["lse"]["vshift"] == 15 and report["metrics"]["lse"]["syncnet"] == str(run)
    assert "motion lags audio" in report["metrics"]["lse"]["definition"]
    # ground truth as the prediction: in sync
    res = evaluate(lambda clip: clip.vertices, ds, metrics=[LSE(run, with_gt=False)])
    assert res.overall["lse_offset0"] == 1.0 and "lse_d_gt" not in res.overall


def test_lse_user_errors(expert, metric, tmp_path):
    data, run, _ = expert
    with pytest.raises(L2TError, match="needs a SyncNet3D expert"):
        get_metric("lse")
    with pytest.raises(L2TError, match="not found"):
        LSE(tmp_path / "nope")
    with pytest.raises(L2TError, match="padding"):
        LSE(run, pad="edge")
    from test_syncnet3d import make_sync_dataset

    other = make_sync_dataset(tmp_path / "d25", fps=25, sentences=1, subjects=("spkA", "spkC"))
    ds = load_dataset(other, split="val")
    with pytest.raises(L2TError, match="works at 30 fps but the data is 25 fps"):
        evaluate(lambda clip: clip.vertices, ds, metrics=[metric])
    bigger = make_sync_dataset(tmp_path / "d30", n_verts=30, sentences=1, subjects=("spkA", "spkC"))
    with pytest.raises(L2TError, match="24-vertex meshes"):
        evaluate(lambda clip: clip.vertices, load_dataset(bigger, split="val"), metrics=[metric])
