"""Head motion, blinks, brows and gaze ("life"): prosody, generators, the PoseVAE, the rig application,
statistics on a long clip, seed determinism, and the still/off path rendering today's frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from l2t_gs.audio.prosody import prosody
from l2t_gs.errors import L2TError
from l2t_gs.motion import head_motion as hm
from l2t_gs.motion.blinks import BLINK_DURATION_RANGE_S, blink_events, lid_curve
from l2t_gs.motion.gaze import gaze_track, saccade_duration_s
from l2t_gs.motion.life import LifeConfig, LifeRig, LifeTrack
from l2t_gs.training.metrics import life as lm

SR, FPS = 16000, 25.0


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-like voiced bursts (harmonic complex, F0 100-180 Hz, varying loudness) in phrases of
    2-4 s separated by 0.4-0.8 s pauses: a stand-in for speech with known prosody."""
    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    while t < seconds:
        phrase = rng.uniform(2.0, 4.0)
        p_t = 0.0
        while p_t < phrase:
            d = rng.uniform(0.12, 0.3)
            n = int(d * SR)
            f0 = rng.uniform(100, 180) * np.linspace(1.0, rng.uniform(0.9, 1.1), n)
            ph = 2 * np.pi * np.cumsum(f0) / SR
            x = sum(np.sin(k * ph) / k for k in range(1, 6))
            env = np.sin(np.pi * np.arange(n) / n) ** 0.5
            out += [0.1 * rng.uniform(0.3, 1.0) * env * x, np.zeros(int(rng.uniform(0.03, 0.08) * SR))]
            p_t += d + 0.05
        pause = np.zeros(int(rng.uniform(0.4, 0.8) * SR))
        out.append(pause)
        t += phrase + len(pause) / SR
    a = np.concatenate(out)[: int(seconds * SR)].astype(np.float32)
    return a + 1e-4 * rng.normal(size=a.size).astype(np.float32)


@pytest.fixture(scope="module")
def long_clip():
    a = speechlike(60.0, seed=3)
    return a, prosody(a, FPS)


# --------------------------------------------------------------------------- prosody
def test_pitch_of_a_known_chirp_and_silence():
    t = np.arange(2 * SR) / SR
    f = 110.0 + 60.0 * t  # Hz, 110 -> 230
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR)
    x[SR : SR + SR // 4] = 0.0
    p = prosody(x.astype(np.float32), FPS)
    frames = np.arange(p.n_frames) / FPS
    truth = 110.0 + 60.0 * frames
    ok = p.voiced
    assert ok.sum() > 0.75 * p.n_frames
    assert np.max(np.abs(p.f0[ok] / truth[ok] - 1)) < 0.03
    silent = (frames > 1.04) & (frames < 1.21)
    assert not p.speech[silent].any() and not p.voiced[silent].any()


# --------------------------------------------------------------------------- blinks and gaze
def test_lid_shape_closes_fast_and_opens_slowly():
    from l2t_gs.motion.blinks import Blinks

    b = Blinks(np.array([0.5]), np.array([0.3]), np.array([1.0]))
    lid = lid_curve(b, 100, 100.0)  # 10 ms frames
    apex = int(np.argmax(lid))
    assert lid[apex] == pytest.approx(1.0) and apex == 60  # 0.5 s + 0.3 / 3
    above = np.flatnonzero(lid > 0.5)
    rise, fall = apex - above[0], above[-1] - apex
    assert 1.5 < fall / rise < 3.0
    assert lid[49] == 0 and lid[81] == 0


def test_blink_rate_and_duration_on_a_long_clip(long_clip):
    _, p = long_clip
    rates, durs = [], []
    for s in range(4):
        ev = blink_events(p.speech, FPS, np.random.default_rng(s), hm.phrase_ends(p))
        st = lm.blink_stats(lid_curve(ev, p.n_frames, FPS), FPS)
        rates.append(st["blink_rate_per_min"])
        durs.append(ev.duration)
        assert st["blinks"] == len(ev)  # every blink is visible at 25 fps (the apex is on a frame)
    expect = 26.0 * p.speech.mean() + 17.0 * (1 - p.speech.mean())  # speaking / rest rates
    assert abs(np.mean(rates) - expect) < 5.0, (rates, expect)
    d = np.concatenate(durs)
    lo, hi = BLINK_DURATION_RANGE_S
    assert d.min() >= lo and d.max() <= hi and 0.17 < np.median(d) < 0.23


def test_saccades_follow_the_main_sequence_and_eyes_counter_the_head():
    assert saccade_duration_s(np.array([10.0]))[0] == pytest.approx(0.043)
    n = 500
    head = np.zeros((n, 6))
    head[:, 1] = 0.05 * np.sin(np.arange(n) / 30)
    a = gaze_track(n, FPS, np.random.default_rng(1), None)
    b = gaze_track(n, FPS, np.random.default_rng(1), head[:, :3])
    np.testing.assert_allclose(b[:, 1], np.clip(a[:, 1] - head[:, 1], -0.436, 0.436), atol=1e-3)
    assert np.array_equal(a[:, :3], a[:, 3:])
    assert np.abs(a).max() < np.radians(13)
    st = lm.gaze_stats(gaze_track(3000, FPS, np.random.default_rng(2)), FPS)  # 2 minutes
    assert 0.5 < st["fixation_median_s"] < 1.6 and 25 < st["saccades_per_min"] < 90


# --------------------------------------------------------------------------- head motion
def test_procedural_head_motion_amplitude_and_spectrum(long_clip):
    _, p = long_clip
    h = hm.procedural_head_motion(p, np.random.default_rng(0))
    st = lm.head_stats(h, FPS)
    assert 1.0 < st["rot_sd_deg_max"] < 4.0
    assert st["power_below_2hz"] > lm.REFERENCE_RANGES["power_below_2hz"][0] + 0.05  # mostly slow motion
    assert lm.prosody_coupling(h, p)["r_pitchrot_f0"] > 0.2  # the head rises with pitch


def loud_quiet_blocks(order: np.ndarray, block_s: float = 2.0) -> np.ndarray:
    """Syllables (0.2 s harmonic bursts, 0.1 s gaps) in blocks of ``block_s``, loud (1) or quiet (0.2,
    -14 dB: still speech) as ``order`` [B] says: loudness alternates while the syllables stay the same."""
    n = int(0.2 * SR)
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 5)) * np.sin(np.pi * t / 0.2)
    per = int(round(block_s / 0.3))
    parts = []
    for loud in order:
        parts += [(0.2 if loud else 0.04) * x, np.zeros(int(0.1 * SR))] * per
    return np.concatenate(parts).astype(np.float32) + 1e-4


def _block_coupling(head_fn) -> tuple[float, float, float, float]:
    """(r of speed with loudness, chance threshold, BA, BA chance) of ``head_fn(audio, prosody)`` on
    alternating loud/quiet blocks; the threshold is mean + 3 SD of the same r for motion generated on 8
    clips with shuffled block orders (motion not coupled to this clip's loudness)."""
    order = np.arange(12) % 2 == 0
    a = loud_quiet_blocks(order)
    p = prosody(a, FPS)
    head = head_fn(a, p)
    r = lm.prosody_coupling(head, p)["r_speed_energy"]
    rng = np.random.default_rng(0)
    null = []
    for _ in range(8):
        a2 = loud_quiet_blocks(rng.permutation(order))
        h2 = head_fn(a2, prosody(a2, FPS))[: p.n_frames]
        null.append(lm.prosody_coupling(h2, p)["r_speed_energy"])
    ab, mb = lm.audio_beats(p), lm.motion_beats(head, FPS)
    dur = p.n_frames / FPS
    return r, float(np.mean(null) + 3 * np.std(null)), lm.beat_alignment(ab, mb), lm.beat_alignment_chance(ab, mb, dur)


def test_procedural_speed_follows_loudness_and_pauses_on_onsets():
    """Loud and quiet blocks of the same syllables: the corpus track moves faster in the loud blocks (r of
    speed with loudness above 0.3 and above its shuffled-blocks null) and its kinematic beats fall on the
    syllable onsets (BA above its shifted-beats chance level)."""
    r, thr, ba, chance = _block_coupling(lambda a, p: hm.procedural_head_motion(p, np.random.default_rng(1)))
    assert r > max(0.3, thr), (r, thr)
    assert ba > chance + 0.05, (ba, chance)


def test_posevae_speed_follows_loudness():
    """The shipped PoseVAE on the same loud/quiet blocks: speed correlates with loudness above 0.3 and
    above the shuffled-blocks null; BA above chance."""
    from l2t_gs.models.life import head_pose

    cfg = LifeConfig("natural", "off", 1.0, seed=2)
    r, thr, ba, chance = _block_coupling(lambda a, p: head_pose(a, p.n_frames, FPS, cfg, p))
    assert r > max(0.3, thr), (r, thr)
    assert ba > chance + 0.05, (ba, chance)


def test_brows_rise_on_emphasis(long_clip):
    """Brow raises start shortly before the strongest stresses (prominence > 1) far more often than chance."""
    from l2t_gs.motion.life import face_life

    _, p = long_clip
    pr = hm.prominence(p)
    pk = hm.stress_peaks(p)
    strong = pk[pr[pk] > 1.0]
    hits, total = 0, 0
    for s in range(4):
        brow = face_life(p, s).brow
        on = np.flatnonzero((brow[1:] > 0) & (brow[:-1] == 0)) + 1  # raise onsets
        total += on.size
        hits += int((np.abs(on[:, None] + int(0.15 * FPS) - strong[None]).min(axis=1) <= 2).sum())
    chance = len(strong) * 5 / p.n_frames  # share of frames within +-2 of a strong stress
    assert total > 20 and hits / total > max(0.5, 3 * chance), (hits, total, chance)


def test_beat_alignment_analytic():
    a = np.array([1.0, 2.0, 3.0])
    assert lm.beat_alignment(a, a) == pytest.approx(1.0)
    assert lm.beat_alignment(a, a + lm.BA_SIGMA_S) == pytest.approx(np.exp(-0.5))
    assert lm.beat_alignment(a, np.array([1.0, 10.0])) == pytest.approx((1 + 2 * np.exp(-50.0)) / 3)


# --------------------------------------------------------------------------- PoseVAE
def test_posevae_is_seeded_continuous_and_in_range(long_clip):
    from l2t_gs.models.life import life_track

    a, p = long_clip
    cfg = LifeConfig("natural", "on", 1.0, seed=4)
    t1 = life_track(a, p.n_frames, FPS, cfg)
    t2 = life_track(a, p.n_frames, FPS, cfg)
    t3 = life_track(a, p.n_frames, FPS, dataclasses.replace(cfg, seed=5))
    for f in ("head", "lid", "brow", "eyes"):
        assert np.array_equal(getattr(t1, f), getattr(t2, f)), f
        assert not np.array_equal(getattr(t1, f), getattr(t3, f)), f
    st = lm.head_stats(t1.head, FPS)
    assert 0.7 < st["rot_sd_deg_max"] < 6.0 and np.abs(np.degrees(t1.head[:, :3])).max() < 15
    assert np.abs(t1.head[:, 3:]).max() < 0.015
    # continuous across windows: no step at window joins larger than the largest step elsewhere
    step = np.abs(np.diff(t1.head[:, :3], axis=0)).max(axis=1)
    joins = np.arange(40, p.n_frames - 1, 40) + 9  # where each window's cross-fade ends
    assert step[joins].max() <= np.percentile(step, 99.5) + 1e-9
    assert np.degrees(step).max() < 2.0  # < 50 deg/s at 25 fps
    # motion scale is a plain factor; still + off adds nothing
    t4 = life_track(a, p.n_frames, FPS, dataclasses.replace(cfg, motion_scale=0.5))
    np.testing.assert_allclose(t4.head, 0.5 * t1.head, atol=1e-12)
    assert life_track(a, p.n_frames, FPS, LifeConfig("still", "off")) is None


def test_posevae_trains_saves_and_loads(tmp_path):
    from l2t_gs.models.posevae import load_posevae, pose_features
    from l2t_gs.training.posevae import train

    clips = [speechlike(6.0, seed=s) for s in range(2)]
    summary = train(tmp_path, clips, tracks=1, steps=3, batch=4, progress=False)
    assert summary["steps"] == 3 and (tmp_path / "posevae.pt").stat().st_size < 2_000_000
    model = load_posevae(tmp_path)
    f = pose_features(clips[0], 150, FPS)
    assert model.sample(f, seed=1).shape == (150, 6)
    np.testing.assert_array_equal(model.sample(f, seed=1), model.sample(f, seed=1))


def test_shipped_posevae_is_small():
    from l2t_gs.assets import asset_path

    assert asset_path("models", "posevae", "posevae.pt").stat().st_size < 2_000_000
    assert (asset_path("models", "posevae", "MODEL_CARD.md")).is_file()


# --------------------------------------------------------------------------- applying life to the rig
def _rig_parts():
    from l2t_gs.rig import FlameRig, load_head_model

    head = load_head_model("builtin")
    return head, FlameRig(head).double()


def test_life_rig_matches_flame_skinning_where_weights_are_rigid():
    """Independent reference: the FLAME rig itself with neck, eye poses and blink/brow coefficients (pose
    correctives off), on every vertex skinned without the global joint and with eye weights 0 or 1."""
    from l2t_gs.rig import FlameRig

    head, _ = _rig_parts()
    flat = dataclasses.replace(head, posedirs=torch.zeros_like(head.posedirs))
    rig = FlameRig(flat).double()
    names = list(head.expr_names)
    rng = np.random.default_rng(0)
    b = 3
    expr = torch.zeros(b, head.n_expr, dtype=torch.float64)
    expr[:, names.index("lip_close")] = 1.0
    jaw = torch.tensor(rng.uniform(0, 0.15, (b, 1)) * np.array([[1.0, 0, 0]]))
    base = rig(expr=expr, jaw_pose=jaw)  # the speech model's output: no neck, eyes, blinks
    track = LifeTrack(
        FPS, rng.normal(scale=[0.08, 0.1, 0.05, 0.004, 0.003, 0.004], size=(b, 6)), rng.uniform(0, 1, b),
        rng.uniform(0, 0.4, b), np.repeat(rng.normal(scale=0.15, size=(b, 3)), 2, axis=1).reshape(b, 6),
    )  # fmt: skip
    life = LifeRig(head, rig(expr=torch.zeros(1, head.n_expr, dtype=torch.float64))[0]).apply(base, track, 0)
    e2 = expr.clone()
    e2[:, names.index("blink_left")] += torch.tensor(track.lid)
    e2[:, names.index("blink_right")] += torch.tensor(track.lid)
    e2[:, names.index("brow_raise")] += torch.tensor(track.brow)
    ref = rig(
        expr=e2, jaw_pose=jaw, neck_pose=torch.tensor(track.head[:, :3]), eyes_pose=torch.tensor(track.eyes),
        translation=torch.tensor(track.head[:, 3:]),
    )  # fmt: skip
    w = head.lbs_weights
    rigid = (w[:, 0] == 0) & ((w[:, 3] == 0) | (w[:, 3] == 1)) & ((w[:, 4] == 0) | (w[:, 4] == 1))
    assert rigid.sum() > 0.8 * head.n_verts
    err = (life - ref)[:, rigid].abs().max().item()
    assert err < 1e-7, err  # metres (the joints are regressed in float32)
    assert (life - base).abs().max().item() > 5e-3  # and it moved


def test_closures_stay_closed_under_head_motion(long_clip):
    from l2t_gs.models.life import life_track
    from l2t_gs.motion.articulation import builtin_lip_pair

    head, rig = _rig_parts()
    a, p = long_clip
    n = 200
    names = list(head.expr_names)
    expr = torch.zeros(n, head.n_expr, dtype=torch.float64)
    expr[::2, names.index("lip_close")] = 1.0  # every other frame closed
    base = rig(expr=expr, jaw_pose=torch.zeros(n, 3, dtype=torch.float64))
    track = life_track(a[: int(n / FPS * SR)], n, FPS, LifeConfig("natural", "on", 2.0, seed=1))
    out = LifeRig(head, rig(expr=torch.zeros(1, head.n_expr, dtype=torch.float64))[0]).apply(base, track, 0)
    up, lo = builtin_lip_pair()
    gap0 = (base[:, up] - base[:, lo]).norm(dim=-1)
    gap1 = (out[:, up] - out[:, lo]).norm(dim=-1)
    assert gap0[::2].max() < 5e-4  # closed frames
    assert (gap1 - gap0).abs().max().item() < 1e-7  # metres: the mouth moves rigidly
    assert (out[:, up] - base[:, up]).norm(dim=-1).max().item() > 2e-3  # the head did move


def test_bad_life_options_are_user_errors():
    for kw in ({"head_motion": "wobble"}, {"blinks": "maybe"}, {"motion_scale": -1.0}):
        with pytest.raises(L2TError):
            LifeConfig(**kw).validate()


def test_render_options_and_still_off_path(tmp_path):
    from l2t_gs.cli.main import build_parser
    from l2t_gs.pipeline import RenderConfig

    args = build_parser().parse_args(["render", "a.wav", "-o", "b.mp4"])
    assert (args.head_motion, args.blinks, args.motion_scale, args.seed) == ("natural", "on", 1.0, 0)
    args = build_parser().parse_args(["render", "a.wav", "-o", "b.mp4", "--head-motion", "still", "--blinks", "off"])
    assert (args.head_motion, args.blinks) == ("still", "off")
    assert not RenderConfig().life().enabled  # the Python API's default is the speech motion alone


@pytest.mark.slow
def test_still_off_renders_the_reference_frames_and_natural_differs():
    from l2t_gs.assets import asset_path
    from l2t_gs.pipeline import RenderConfig, render_frames
    from l2t_gs.render.backend_cpu import fast_cpu_available

    if not fast_cpu_available():
        pytest.skip("the reference was rendered by the compiled CPU path")
    ref = np.load(__import__("pathlib").Path(__file__).parent / "data" / "reference_frames.npz")
    base = dict(size=96, fps=25.0, camera="front", backend="torch", device="cpu", quiet=True)
    idx = [int(i) for i in ref["indices"]]
    for cfg, same in (
        (RenderConfig(**base, head_motion="still", blinks="off"), True),
        (RenderConfig(**base, head_motion="natural", blinks="on", seed=2), False),
    ):
        frames = list(
            __import__("itertools").islice(render_frames(asset_path("samples", "hello.wav"), cfg), max(idx) + 1)
        )
        got = np.stack([frames[i] for i in idx])
        assert np.array_equal(got, ref["frames"]) == same


def test_eval_motion_reports_statistics_against_the_reference(tmp_path, capsys):
    from l2t_gs.audio.io import save_wav
    from l2t_gs.cli.main import main

    wav = tmp_path / "s.wav"
    save_wav(wav, speechlike(12.0, seed=9), 16000)
    out = tmp_path / "m.json"
    assert main(["eval-motion", str(wav), "--head-motion", "procedural", "--seeds", "0", "1", "--json", str(out)]) == 0
    res = __import__("json").loads(out.read_text())
    g = res["generated"]
    assert res["clips"] == 1 and abs(res["seconds"] - 12.0) < 0.01 and res["ba_sigma_s"] == lm.BA_SIGMA_S
    assert 0.0 <= g["beat_alignment"] <= 1.0 and g["diversity_apd_deg"] > 0.5
    assert set(g["in_reference_range"]) == set(lm.REFERENCE_RANGES)
    assert g["in_reference_range"]["rot_sd_deg_max"] and g["in_reference_range"]["power_below_2hz"]
    assert main(["eval-motion", str(wav), "--head-motion", "still"]) == 1


def test_blockwise_log_mel_equals_the_whole_signal():
    from l2t_gs.models.posevae import _MEL, _log_mel

    a = np.random.default_rng(0).normal(size=SR * 130).astype(np.float32) * 0.1  # > 2 blocks of 60 s
    whole = _MEL(torch.as_tensor(a)).numpy().T
    np.testing.assert_array_equal(_log_mel(a), whole)
