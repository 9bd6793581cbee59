"""Lip-sync metrics (closure recall, false closures, openness r, AV offset), energy baseline, per-speaker tables."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from l2t_gs.training.metrics import lipsync as ls
from l2t_gs.training.metrics.energy_baseline import MAX_OPEN_MM, energy_gap_mm, frame_rms_db
from l2t_gs.training.metrics.motion import segment_frames

FPS = 30.0
# sil | b (mid: ah-b-ah) | aa 0.3 s | p after a pause (not mid) | ... | m at the very end (not mid)
PHONES = [
    ("sil", 0.0, 0.2),
    ("ah", 0.2, 0.4),
    ("b", 0.4, 0.5),
    ("aa1", 0.5, 0.8),
    ("sil", 0.8, 1.0),
    ("P", 1.0, 1.1),
    ("iy", 1.1, 1.3),
    ("ae", 1.3, 1.35),  # 50 ms: too short for a false closure
    ("eh", 1.35, 1.6),
    ("m", 1.6, 1.7),
]
N = 60


def _frames(phone_set: set[str], phones=PHONES) -> np.ndarray:
    idx = [segment_frames(a, b, FPS, N) for p, a, b in phones if ls.phone_label((p,)) in phone_set]
    return np.concatenate(idx) if idx else np.zeros(0, np.int64)


def _closing_on_bilabials() -> np.ndarray:
    gap = np.full(N, 10.0)
    gap[_frames({"p", "b", "m"})] = 0.0
    return gap


def test_closing_exactly_on_bilabials_gives_recall_one():
    c = ls.closure_counts(_closing_on_bilabials(), PHONES, FPS)
    assert c["bil"] == 3 and c["bil_mid"] == 1
    assert c["closed1"] == c["closed2"] == 3 and c["closed1_mid"] == c["closed2_mid"] == 1
    agg = ls.aggregate([ls.score_clip(_closing_on_bilabials(), PHONES, FPS)])
    assert agg["recall1"] == agg["recall2"] == agg["recall1_mid"] == agg["recall2_mid"] == 1.0
    assert agg["false_closures"] == 0 and agg["false_closure_rate"] == 0.0
    # 1.5 mm: closed at 2 mm, not at 1 mm
    gap = np.where(_closing_on_bilabials() == 0, 1.5, 10.0)
    c = ls.closure_counts(gap, PHONES, FPS)
    assert c["closed1"] == 0 and c["closed2"] == 3


def test_bilabials_at_the_aligners_floor_are_counted_apart():
    """A 30 ms 'b' (an aligner's shortest segment) and a 60 ms 'm': closing only the 'm' is recall 1/2
    overall and 1 on bilabials of at least ``LONG_BILABIAL_S``."""
    phones = [("sil", 0.0, 0.3), ("ah", 0.3, 0.5), ("b", 0.5, 0.53), ("ah", 0.53, 0.8), ("m", 0.8, 0.86)]
    phones.append(("sil", 0.86, 1.2))
    gap = np.full(int(1.2 * FPS) + 1, 10.0)
    gap[segment_frames(0.8, 0.86, FPS, gap.size)] = 0.0
    c = ls.closure_counts(gap, phones, FPS)
    assert (c["bil"], c["bil_long"], c["closed1"], c["closed1_long"], c["closed2_long"]) == (2, 1, 1, 1, 1)
    agg = ls.aggregate([ls.score_clip(gap, phones, FPS)])
    assert agg["recall1"] == 0.5 and agg["recall1_long"] == 1.0 and agg["bilabials_long"] == 1


def test_open_everywhere_gives_recall_zero():
    agg = ls.aggregate([ls.score_clip(np.full(N, 8.0), PHONES, FPS)])
    assert agg["recall1"] == agg["recall2"] == agg["recall1_mid"] == 0.0
    assert agg["bilabials"] == 3 and agg["bilabials_mid"] == 1
    assert agg["open_mm"] == 8.0 and math.isnan(agg["r"])  # constant gap: r undefined


def test_closure_window_is_widened_by_one_frame():
    gap = np.full(N, 10.0)
    f = segment_frames(0.4, 0.5, FPS, N)  # the mid-speech b
    gap[f[-1] + 1] = 0.0  # closes one frame late
    assert ls.closure_counts(gap, PHONES, FPS)["closed1_mid"] == 1
    gap = np.full(N, 10.0)
    gap[f[-1] + 2] = 0.0  # two frames late: missed
    assert ls.closure_counts(gap, PHONES, FPS)["closed1_mid"] == 0


def test_mid_speech_needs_touching_speech_neighbours():
    mids = [m for _, _, m in ls.bilabials(PHONES)]
    assert mids == [True, False, False]
    gap_before = [("ah", 0.0, 0.2), ("m", 0.25, 0.3), ("ah", 0.3, 0.5)]  # 50 ms hole = a pause
    assert [m for *_, m in ls.bilabials(gap_before)] == [False]
    sp = [("ah", 0.0, 0.2), ("b", 0.2, 0.3), ("sp", 0.3, 0.4)]
    assert [m for *_, m in ls.bilabials(sp)] == [False]


def test_closing_on_an_open_vowel_is_one_false_closure():
    gap = _closing_on_bilabials()
    aa = segment_frames(0.5, 0.8, FPS, N)
    gap[aa[len(aa) // 2]] = 0.5
    gap[segment_frames(1.3, 1.35, FPS, N)] = 0.0  # the 50 ms ae does not count
    gap[segment_frames(1.35, 1.6, FPS, N)[0]] = 0.0  # nor a closure on the edge frame of eh (coarticulation)
    fc = ls.false_closures(gap, PHONES, FPS)
    # open vowels >= 80 ms: ah, aa, eh
    assert fc["ov"] == 3 and fc["fc"] == 1
    agg = ls.aggregate([ls.score_clip(gap, PHONES, FPS)])
    assert agg["false_closures"] == 1 and agg["false_closure_rate"] == pytest.approx(1 / 3)
    assert agg["open_mm"] == pytest.approx(10.0)


def test_reference_with_itself_has_r_one_and_offset_zero():
    ref = ls.openness_reference(PHONES, FPS, N)
    assert ref.shape == (N,) and ref.min() >= 0 and ref.max() <= max(ls.OPENNESS_MM.values())
    assert ls.lagged_pearson(ref, ref, 0) == pytest.approx(1.0)
    off, r = ls.av_offset(ref, ref)
    assert off == 0 and r == pytest.approx(1.0)
    row = ls.score_clip(ref, PHONES, FPS)
    assert row["r"] == pytest.approx(1.0) and row["offset"] == 0


@pytest.mark.parametrize("k", [3, -4, 10])
def test_shifted_curve_gives_the_offset_with_lips_lagging_positive(k):
    rng = np.random.default_rng(0)
    ref = np.convolve(rng.normal(size=200), np.ones(5) / 5, mode="same")
    gap = np.roll(ref, k)  # gap[t] = ref[t - k]: the lips lag the phones by k frames
    off, r = ls.av_offset(gap, ref)
    assert off == k and r == pytest.approx(1.0)


def test_openness_reference_steps_and_smoothing():
    ref = ls.openness_reference(PHONES, FPS, N, smooth_s=0.0)
    assert ref[segment_frames(0.5, 0.8, FPS, N)].tolist() == [ls.OPENNESS_MM["aa"]] * 9
    assert ref[0] == 0.0 and ref[segment_frames(1.6, 1.7, FPS, N)].max() == 0.0
    smooth = ls.openness_reference(PHONES, FPS, N)
    assert abs(smooth.sum() - ref.sum()) < 0.05 * ref.sum()  # smoothing keeps the area (away from edges)


def test_energy_baseline_silence_closed_loud_tone_open():
    sr = 16000
    silence = np.zeros(sr)
    assert np.all(energy_gap_mm(silence, sr, FPS, 30) == 0.0)
    t = np.arange(sr) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    gap = energy_gap_mm(tone, sr, FPS, 30)
    assert np.all(gap[1:-1] > 0.8 * MAX_OPEN_MM * 0.8) and np.all(gap <= MAX_OPEN_MM)
    # tone then silence: open, then closed
    mixed = np.concatenate([tone, silence])
    g = energy_gap_mm(mixed, sr, FPS, 60)
    assert g[5:25].min() > 5.0 and g[35:].max() == 0.0
    db = frame_rms_db(tone, sr, FPS, 30)
    assert db[10] == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.1)


def _random_clip(rng):
    phones, t = [], 0.0
    for _ in range(rng.integers(8, 20)):
        p = rng.choice(["sil", "p", "b", "m", "aa", "ah", "eh", "iy", "t", "s", "ow"])
        d = float(rng.uniform(0.03, 0.2))
        phones.append((str(p), t, t + d))
        t += d
    n = int(t * FPS) + 1
    gap = rng.uniform(0, 4, n) * rng.integers(0, 2, n) + rng.uniform(0, 1, n)
    return gap, phones


def test_per_speaker_aggregation_matches_brute_force():
    rng = np.random.default_rng(1)
    clips = [(f"spk{i % 3}", *_random_clip(rng)) for i in range(12)]
    rows = [(s, ls.score_clip(g, ph, FPS)) for s, g, ph in clips]
    table = ls.per_speaker(rows)
    assert list(table) == ["spk0", "spk1", "spk2", "all"]

    def brute(sel):
        bil = c1 = c2 = mid = c1m = lng = c1l = ov = fc = 0
        rs = []
        for _, gap, ph in sel:
            for i, (p, a, b) in enumerate(ph):
                f = segment_frames(a, b, FPS, gap.size)
                if p in ("p", "b", "m") and f.size:
                    w = np.arange(max(f[0] - 1, 0), min(f[-1] + 2, gap.size))
                    is_mid = 0 < i < len(ph) - 1 and ph[i - 1][0] != "sil" and ph[i + 1][0] != "sil"
                    bil += 1
                    c1 += gap[w].min() < 1
                    c2 += gap[w].min() < 2
                    mid += is_mid
                    c1m += is_mid and gap[w].min() < 1
                    lng += b - a >= 0.04
                    c1l += b - a >= 0.04 and gap[w].min() < 1
                if p in ls.OPEN_VOWELS and b - a >= 0.08 and f.size:
                    core = segment_frames(a + 0.25 * (b - a), b - 0.25 * (b - a), FPS, gap.size)
                    ov += 1
                    fc += gap[core].min() < 1
            r = np.corrcoef(gap, ls.openness_reference(ph, FPS, gap.size))[0, 1]
            rs.append(r)
        return {
            "bilabials": bil,
            "recall1": c1 / bil,
            "recall2": c2 / bil,
            "recall1_mid": c1m / mid if mid else math.nan,
            "bilabials_long": lng,
            "recall1_long": c1l / lng if lng else math.nan,
            "false_closures": fc,
            "false_closure_rate": fc / ov,
            "r": float(np.mean(rs)),
        }

    for subject in ("spk0", "spk1", "spk2", "all"):
        sel = [c for c in clips if subject in ("all", c[0])]
        want = brute(sel)
        got = table[subject]
        assert got["clips"] == len(sel)
        for k, v in want.items():
            assert got[k] == pytest.approx(v, nan_ok=True), (subject, k)


def test_markdown_table_puts_systems_side_by_side():
    rows = [("a", ls.score_clip(_closing_on_bilabials(), PHONES, FPS))]
    model = ls.per_speaker(rows)
    base = ls.per_speaker([("a", ls.score_clip(np.full(N, 8.0), PHONES, FPS))])
    md = ls.markdown_table({"model": model, "energy": base})
    lines = md.splitlines()
    assert lines[0].startswith("| subject | clips | p/b/m | close<1mm model | close<1mm energy |")
    assert len(lines) == 4 and lines[-1].startswith("| **all** | 1 | 3 | 1.000 | 0.000 |")


def test_phone_objects_and_tuples_agree():
    objs = [SimpleNamespace(phone=p.upper(), start=a, end=b) for p, a, b in PHONES]
    gap = _closing_on_bilabials()
    a, b = ls.score_clip(gap, PHONES, FPS), ls.score_clip(gap, objs, FPS)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_openness_table_matches_the_rig():
    pytest.importorskip("torch")
    rig = ls.openness_from_rig()
    assert set(rig) == set(ls.OPENNESS_MM)
    for p, v in ls.OPENNESS_MM.items():
        assert rig[p] == pytest.approx(v, abs=1e-9), p


# --------------------------------------------------------------------------- through evaluate and the CLI
def _clips():
    """Two subjects x one clip of a 4-vertex 'head': vertex 1 (lower lip) moves with the GT gap curve."""
    sr = 16000
    gap_m = _closing_on_bilabials() / 1000.0
    out = []
    for subject in ("spk_a", "spk_b"):
        v = np.zeros((N, 4, 3), np.float32)
        v[:, 1, 1] = -gap_m
        v[:, 2:, 1] = 0.05
        audio = (0.2 * np.sin(2 * np.pi * 200 * np.arange(2 * sr) / sr)).astype(np.float32)
        phones = [SimpleNamespace(phone=p, start=a, end=b) for p, a, b in PHONES]
        out.append(
            SimpleNamespace(name=f"{subject}_s01", subject=subject, audio=audio, audio_sr=sr, vertices=v,
                            template=v[0], fps=FPS, phones=phones)
        )  # fmt: skip
    return out


def test_lipsync_metric_in_evaluate():
    from l2t_gs.training.metrics.evaluate import evaluate
    from l2t_gs.training.metrics.lipsync_eval import markdown_report, per_speaker_systems
    from l2t_gs.training.metrics.regions import Regions

    regions = Regions(lips=np.array([0, 1]), upper_face=np.array([2, 3]), lip_pair=(0, 1), source="test")
    res = evaluate(lambda clip: clip.vertices, _clips(), regions, metrics=["lipsync"])
    assert res.overall["ls_recall1"] == res.overall["ls_gt_recall1"] == 1.0
    assert res.overall["ls_bilabials"] == 6 and res.overall["ls_energy_recall1"] == 0.0  # a steady tone never closes
    tabs = per_speaker_systems(res)
    assert list(tabs) == ["model", "gt", "energy"] and list(tabs["model"]) == ["spk_a", "spk_b", "all"]
    assert tabs["energy"]["all"]["open_mm"] > 5
    md = markdown_report(res, systems=["model", "energy"])
    assert "close<1mm model | close<1mm energy" in md and md.splitlines()[-1].startswith("| **all** | 2 | 6 |")
    assert "ls_r" in res.clips[0].values and "lipsync" in res.to_dict()["metrics"]


def test_eval_cli_per_speaker(tmp_path, monkeypatch, capsys):
    import json

    from l2t_gs.cli import eval as eval_cli
    from l2t_gs.cli.main import main

    clips = _clips()
    monkeypatch.setattr(eval_cli, "_load_model", lambda spec, device="cpu": lambda clip: clip.vertices)
    monkeypatch.setattr("l2t_gs.training.data.datasets.load_dataset", lambda root, kind="auto", split="test": clips)
    regions = tmp_path / "regions.json"
    regions.write_text(json.dumps({"lips": [0, 1], "upper_face": [2, 3], "lip_pair": [0, 1]}))
    out = tmp_path / "r.json"
    argv = ["eval", "--model", "m", "--data", str(tmp_path), "--regions", str(regions), "--metrics", "lve",
            "--per-speaker", "--json", str(out), "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| subject | clips | p/b/m |" in text and "close<1mm energy" in text
    report = json.loads(out.read_text())
    assert report["lipsync"]["per_speaker"]["model"]["all"]["recall1"] == 1.0
    assert report["overall"]["ls_energy_recall1"] == 0.0
    assert main([*argv[:-3], "--baseline", "none", "--quiet", "--device", "cpu"]) == 0
    assert "energy" not in capsys.readouterr().out
