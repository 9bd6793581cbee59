"""Motion metrics against brute-force loops and analytic cases; region files; the evaluation API."""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from l2t_gs.errors import L2TError
from l2t_gs.training.metrics import (
    Regions,
    bilabial_segments,
    builtin_regions,
    closure_flags,
    fdd,
    lip_gap,
    load_regions,
    lve,
    pearson,
    resolve_regions,
    segment_frames,
    upper_face_dynamics,
)
from l2t_gs.training.metrics.evaluate import LVE, ClipContext, Metric, evaluate, register_metric

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- brute-force references
def brute_lve(pred, gt, lips):
    per_frame = []
    for t in range(gt.shape[0]):
        worst = -1.0
        for v in lips:
            e = sum((float(pred[t, v, c]) - float(gt[t, v, c])) ** 2 for c in range(3))
            worst = max(worst, e)
        per_frame.append(worst)
    return per_frame


def brute_dynamics(verts, template, upper):
    stds = []
    for v in upper:
        sq = [sum((float(verts[t, v, c]) - float(template[v, c])) ** 2 for c in range(3)) for t in range(len(verts))]
        mean = sum(sq) / len(sq)
        stds.append(math.sqrt(sum((s - mean) ** 2 for s in sq) / len(sq)))
    return sum(stds) / len(stds)


def brute_pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    va = sum((x - ma) ** 2 for x in a)
    vb = sum((y - mb) ** 2 for y in b)
    return cov / math.sqrt(va * vb)


def brute_closure(gap, phones, fps, thr):
    flags = []
    for label, start, end in phones:
        if label.lower().rstrip("012") not in ("p", "b", "m"):
            continue
        frames = [t for t in range(len(gap)) if start <= t / fps < end]
        if not frames:
            mid = math.floor((start + end) / 2 * fps + 0.5)
            frames = [mid] if 0 <= mid < len(gap) else []
        if frames:
            flags.append(min(gap[t] for t in frames) < thr)
    return flags


def rand_seq(t=13, v=40):
    template = RNG.normal(size=(v, 3))
    gt = template + 0.01 * RNG.normal(size=(t, v, 3))
    pred = template + 0.01 * RNG.normal(size=(t, v, 3))
    return pred.astype(np.float32), gt.astype(np.float32), template.astype(np.float32)


# --------------------------------------------------------------------------- metric definitions
def test_lve_matches_brute_force():
    pred, gt, _ = rand_seq()
    lips = [3, 7, 8, 20, 39]
    assert lve(pred, gt, lips) == pytest.approx(np.mean(brute_lve(pred, gt, lips)), rel=1e-9)
    # torch tensors work as well
    assert lve(torch.from_numpy(pred), torch.from_numpy(gt), lips) == pytest.approx(lve(pred, gt, lips))


def test_fdd_matches_brute_force():
    pred, gt, template = rand_seq()
    upper = [0, 1, 2, 10, 33]
    want = brute_dynamics(gt, template, upper) - brute_dynamics(pred, template, upper)
    assert fdd(pred, gt, template, upper) == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert upper_face_dynamics(gt, template, upper) == pytest.approx(brute_dynamics(gt, template, upper), rel=1e-9)


def test_lip_gap_and_pearson_match_brute_force():
    pred, gt, _ = rand_seq()
    g = lip_gap(gt, (4, 9))
    want = [math.dist(gt[t, 4].tolist(), gt[t, 9].tolist()) for t in range(len(gt))]
    np.testing.assert_allclose(g, want, rtol=1e-6)
    a, b = RNG.normal(size=50), RNG.normal(size=50)
    assert pearson(a, b) == pytest.approx(brute_pearson(a.tolist(), b.tolist()), rel=1e-12)


def test_closure_matches_brute_force():
    fps = 30.0
    gap = RNG.uniform(0.0, 3.0, size=90)
    phones = []
    t = 0.0
    for i in range(40):
        dur = float(RNG.uniform(0.005, 0.2))
        phones.append((["P", "b", "m", "AA1", "s", "M0"][i % 6], t, t + dur))
        t += dur
    got = closure_flags(gap, bilabial_segments(phones), fps, 1.0)
    assert got.tolist() == brute_closure(gap.tolist(), phones, fps, 1.0)
    assert got.size > 10


def test_segment_frames_definition():
    fps = 10.0
    np.testing.assert_array_equal(segment_frames(0.1, 0.35, fps, 100), [1, 2, 3])  # [start, end): 0.1, 0.2, 0.3
    np.testing.assert_array_equal(segment_frames(0.1, 0.3, fps, 100), [1, 2])  # end excluded
    np.testing.assert_array_equal(segment_frames(0.12, 0.17, fps, 100), [1])  # no frame inside: nearest to mid
    np.testing.assert_array_equal(segment_frames(0.16, 0.19, fps, 100), [2])
    np.testing.assert_array_equal(segment_frames(0.95, 2.0, fps, 12), [10, 11])  # cut at the end
    assert segment_frames(5.0, 6.0, fps, 12).size == 0  # after the motion


def test_analytic_cases():
    pred, gt, template = rand_seq()
    lips, upper = list(range(10)), list(range(20, 40))
    assert lve(gt, gt, lips) == 0.0
    assert fdd(gt, gt, template, upper) == 0.0
    assert pearson(lip_gap(gt, (1, 2)), lip_gap(gt, (1, 2))) == pytest.approx(1.0)
    offset = np.array([0.003, -0.004, 0.0])  # |offset|^2 = 2.5e-5 on every vertex
    assert lve(gt + offset, gt, lips) == pytest.approx(2.5e-5, rel=1e-6)
    assert math.isnan(pearson(np.ones(10), np.arange(10.0)))
    assert math.isnan(pearson([1.0], [2.0]))
    # a still prediction has no upper-face dynamics: FDD equals the ground truth's dynamics
    still = np.broadcast_to(template, gt.shape)
    assert fdd(still, gt, template, upper) == pytest.approx(upper_face_dynamics(gt, template, upper))


def test_bilabial_labels():
    phones = [("P", 0, 1), ("b", 1, 2), ("M1", 2, 3), ("AA", 3, 4), ("em", 4, 5), ("p", 6, 6)]
    assert bilabial_segments(phones) == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]


# --------------------------------------------------------------------------- regions
def test_builtin_regions():
    r = builtin_regions()
    assert r.lips.size > 100 and r.upper_face.size > 500 and r.lip_pair is not None
    assert np.intersect1d(r.lips, r.upper_face).size == 0
    assert resolve_regions(None, r.n_verts).lip_pair == r.lip_pair


def test_region_files(tmp_path):
    lips, fore, eyes = [1, 2, 3], [10, 11], [12, 13, 11]
    np.savez(tmp_path / "r.npz", mask_lips=np.array(lips), upper_face=np.array([10, 11, 12]), lip_pair=[2, 3])
    r = load_regions(tmp_path / "r.npz")
    assert r.lips.tolist() == lips and r.upper_face.tolist() == [10, 11, 12] and r.lip_pair == (2, 3)

    masks = {"lips": np.array(lips), "forehead": np.array(fore), "eye_region": np.array(eyes), "nose": np.array([5])}
    (tmp_path / "FLAME_masks.pkl").write_bytes(pickle.dumps(masks, protocol=2))
    r = load_regions(tmp_path / "FLAME_masks.pkl")
    assert r.upper_face.tolist() == [10, 11, 12, 13] and r.lip_pair is None

    (tmp_path / "r.json").write_text(json.dumps({"lips": lips, "upper_face": [20, 21], "n_verts": 30}))
    r = load_regions(tmp_path / "r.json")
    assert r.n_verts == 30 and r.upper_face.tolist() == [20, 21]
    with pytest.raises(L2TError, match="30-vertex"):
        r.check(40)

    root = tmp_path / "biwi"
    (root / "regions").mkdir(parents=True)
    (root / "regions" / "lve.txt").write_text("1, 2, 3")
    (root / "regions" / "fdd.txt").write_text("7,\n8")
    r = resolve_regions(None, 50, data_root=root, lip_pair=(1, 3))  # regions/ found in the data root
    assert r.lips.tolist() == lips and r.upper_face.tolist() == [7, 8] and r.lip_pair == (1, 3)


def test_region_errors(tmp_path):
    with pytest.raises(L2TError, match="FLAME_masks.pkl"):
        resolve_regions(None, 5023)
    with pytest.raises(L2TError, match="lve.txt"):
        resolve_regions(None, 23370)
    (tmp_path / "r.json").write_text(json.dumps({"lips": [1, 99], "upper_face": [2]}))
    with pytest.raises(L2TError, match="vertex 99"):
        resolve_regions(tmp_path / "r.json", 50)
    (tmp_path / "n.json").write_text(json.dumps({"upper_face": [2]}))
    with pytest.raises(L2TError, match="no 'lips'"):
        load_regions(tmp_path / "n.json")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(L2TError, match="not a readable"):
        load_regions(tmp_path / "bad.npz")
    (tmp_path / "r.txt").write_text("1, 2")
    with pytest.raises(L2TError, match="unknown type"):
        load_regions(tmp_path / "r.txt")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "lve.txt").write_text("1")
    with pytest.raises(L2TError, match="lacks fdd.txt"):
        load_regions(tmp_path / "d")
    (tmp_path / "d" / "fdd.txt").write_text("1, x")
    with pytest.raises(L2TError, match="integer vertex indices"):
        load_regions(tmp_path / "d")
    with pytest.raises(L2TError, match="two vertex indices"):
        Regions(np.array([1]), np.array([2])).with_lip_pair((1, 2, 3))


# --------------------------------------------------------------------------- evaluate() with a callable
@dataclass
class FakeClip:
    name: str
    subject: str
    vertices: np.ndarray
    template: np.ndarray
    fps: float = 30.0
    phones: list | None = None
    audio: np.ndarray | None = None


def _regions(v=40):
    return Regions(lips=np.arange(5), upper_face=np.arange(20, 40), lip_pair=(0, 1), source="test")


def test_evaluate_aggregates_like_codetalker():
    clips, preds = [], {}
    for i, (subject, t) in enumerate([("A", 10), ("A", 17), ("B", 5)]):
        pred, gt, template = rand_seq(t=t)
        clips.append(FakeClip(f"{subject}_s{i}", subject, gt, template))
        preds[clips[-1].name] = pred
    res = evaluate(lambda c: preds[c.name], clips, _regions(), metrics=["lve", "fdd"])
    lips, upper = list(range(5)), list(range(20, 40))
    pooled = [e for c in clips for e in brute_lve(preds[c.name], c.vertices, lips)]  # frames of all clips
    assert res.overall["lve_raw"] == pytest.approx(np.mean(pooled), rel=1e-9)
    assert res.overall["lve_mm2"] == pytest.approx(np.mean(pooled) * 1e6, rel=1e-9)
    per_clip_fdd = [
        brute_dynamics(c.vertices, c.template, upper) - brute_dynamics(preds[c.name], c.template, upper) for c in clips
    ]
    assert res.overall["fdd_raw"] == pytest.approx(np.mean(per_clip_fdd), rel=1e-9)
    assert res.subjects["A"]["clips"] == 2 and res.subjects["A"]["frames"] == 27
    assert res.subjects["B"]["fdd_raw"] == pytest.approx(per_clip_fdd[2], rel=1e-9)
    assert "overall" in res.table() and "LVE mm^2" in res.table()


def test_evaluate_units_and_lengths():
    pred, gt, template = rand_seq(t=12)
    clip_m = FakeClip("A_1", "A", gt, template)
    clip_mm = FakeClip("A_1", "A", gt * 1000, template * 1000)
    r_m = evaluate(lambda c: pred[:10], [clip_m], _regions(), metrics=["lve", "fdd"])
    r_mm = evaluate(lambda c: pred[:10] * 1000, [clip_mm], _regions(), metrics=["lve", "fdd"], unit_m=1e-3)
    assert r_m.clips[0].frames == 10 and r_m.clips[0].frames_gt == 12
    assert any("differ in length" in n for n in r_m.notes)
    for k in ("lve_mm2", "fdd_mm2"):
        assert r_mm.overall[k] == pytest.approx(r_m.overall[k], rel=1e-4)


def _head_clip(close_on_bilabials: bool, name="S_1", subject="S"):
    """A built-in head sequence: lips closed (lip_close=1) on every bilabial phone, jaw moving otherwise."""
    from l2t_gs.rig import FlameRig, load_head_model

    model = load_head_model("builtin", dtype=torch.float64)
    fps, t = 30.0, 45
    phones = [("m", 0.10, 0.20), ("AA", 0.20, 0.50), ("b", 0.50, 0.57), ("IY", 0.57, 1.00), ("p", 1.00, 1.10)]
    expr = torch.zeros(t, model.n_expr, dtype=torch.float64)
    jaw = torch.zeros(t, 3, dtype=torch.float64)
    jaw[:, 0] = 0.1 * (1 + torch.sin(torch.arange(t) / 3.0))
    for label, start, end in phones:
        frames = segment_frames(start, end, fps, t)
        if label in "mbp" and close_on_bilabials:
            expr[frames, 0] = 1.0
            jaw[frames, 0] = 0.0
    verts = FlameRig(model)(expr=expr, jaw_pose=jaw).float().numpy()
    template = model.v_template.float().numpy()
    return FakeClip(name, subject, verts, template, fps=fps, phones=phones)


def test_closure_and_correlation_on_the_builtin_head():
    closing = _head_clip(True)
    res = evaluate(lambda c: c.vertices, [closing])  # default regions: the built-in head's
    assert res.overall["closure_recall"] == 1.0 and res.overall["bilabials"] == 3
    assert res.overall["lip_corr"] == pytest.approx(1.0)
    assert res.overall["lve_mm2"] == 0.0 and res.overall["fdd_mm2"] == 0.0
    still = np.broadcast_to(closing.template, closing.vertices.shape)  # mouth at rest: 2 mm gap
    res = evaluate(lambda c: still, [closing])
    assert res.overall["closure_recall"] == 0.0 and res.overall["closure_recall_gt"] == 1.0
    assert math.isnan(res.overall["lip_corr"])  # a still mouth has no defined correlation
    report = res.to_dict(model="m")
    json.dumps(report, allow_nan=False)  # NaN written as null
    assert report["overall"]["lip_corr"] is None and report["regions"]["source"] == "builtin head"


def test_metrics_skip_without_phones_or_pair():
    pred, gt, template = rand_seq()
    regions = Regions(lips=np.arange(5), upper_face=np.arange(20, 40))  # no lip pair
    res = evaluate(lambda c: pred, [FakeClip("A_1", "A", gt, template)], regions)
    assert "closure_recall" not in res.overall and "lip_corr" not in res.overall
    assert any("lip_closure skipped" in n and "lip pair" in n for n in res.notes)
    assert "-" in res.table()


def test_custom_metric_plugs_in():
    class MaxJump(Metric):
        name = "max_jump"
        columns = ()

        def compute(self, ctx: ClipContext) -> dict[str, float]:
            return {"max_jump": float(np.abs(np.diff(ctx.pred, axis=0)).max())}

    register_metric("max_jump", MaxJump)
    pred, gt, template = rand_seq()
    res = evaluate(lambda c: pred, [FakeClip("A_1", "A", gt, template)], _regions(), metrics=["max_jump", LVE()])
    assert res.clips[0].values["max_jump"] > 0 and "lve_mm2" in res.overall


def test_evaluate_errors():
    pred, gt, template = rand_seq()
    clip = FakeClip("A_1", "A", gt, template)
    with pytest.raises(L2TError, match="different topology"):
        evaluate(lambda c: pred[:, :30], [clip], _regions())
    with pytest.raises(L2TError, match="empty"):
        evaluate(lambda c: pred, [], _regions())
    with pytest.raises(L2TError, match="non-finite"):
        evaluate(lambda c: pred * np.nan, [clip], _regions())
    with pytest.raises(L2TError, match="unknown metric"):
        evaluate(lambda c: pred, [clip], _regions(), metrics=["nope"])

    class Model:
        n_verts = 99
        subjects = ("A",)

        def predict(self, audio, template, style=None, fps=30.0):
            return pred

    with pytest.raises(L2TError, match="99-vertex"):
        evaluate(Model(), [clip], _regions())
