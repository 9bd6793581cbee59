"""Lip contacts: targets from phones, exact closure from contact probabilities, the Audio2Mesh contact
head (training, streaming, checkpoints) and the false-closure count."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from l2t_gs.errors import L2TError
from l2t_gs.motion import articulation as art
from l2t_gs.motion.contacts import apply_contacts, contact_targets, contact_weights, hold_peaks, lip_gap_mm
from l2t_gs.rig import FlameRig, load_head_model
from l2t_gs.training.metrics.motion import OPEN_VOWELS, false_closures, lip_gap
from l2t_gs.training.metrics.regions import builtin_regions

FPS = 30.0


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def head():
    hm = load_head_model("builtin")
    return hm, FlameRig(hm), builtin_regions().lip_pair


def segs(spec: str, start: float = 0.0) -> list[tuple[str, float, float]]:
    """'sil:200 ah:150 b:80 ...' (durations in ms) -> [(phone, start, end)]."""
    out, t = [], start
    for item in spec.split():
        ph, ms = item.split(":")
        out.append((ph, t, t + int(ms) / 1000))
        t += int(ms) / 1000
    return out


SEQ = "sil:200 ah:160 b:80 aa:180 m:90 aa:200 f:90 ay:220 p:70 ae:180 v:80 ah:160 m:100 sil:300"
# the same utterance with every contact replaced by an open vowel: motion that never closes
OPEN = "sil:200 ah:160 ah:80 aa:180 aa:90 aa:200 ah:90 ay:220 ah:70 ae:180 ah:80 ah:160 aa:100 sil:300"


def _mid(seg: tuple[str, float, float]) -> int:
    return int(round((seg[1] + seg[2]) / 2 * FPS))


def _n(s) -> int:
    return int(round(s[-1][2] * FPS))


def _gap_mm(head, params) -> np.ndarray:
    hm, rig, pair = head
    with torch.no_grad():
        v = rig(expr=torch.as_tensor(params["expr"]), jaw_pose=torch.as_tensor(params["jaw_pose"]))
    return lip_gap(v, pair) * 1000


# --------------------------------------------------------------------------- targets
def test_contact_targets_follow_the_phones():
    s = segs(SEQ)
    tg = contact_targets(s, FPS, _n(s))
    assert tg.shape == (_n(s), 2) and tg.dtype == np.float32
    assert tg.min() >= 0 and tg.max() <= 1
    for seg in s:
        i = _mid(seg)
        if seg[0] in ("p", "b", "m"):
            assert tg[i, 0] == 1.0 and tg[i, 1] == 0.0, seg
        elif seg[0] in ("f", "v"):
            assert tg[i, 1] == 1.0 and tg[i, 0] == 0.0, seg
        elif seg[0] in OPEN_VOWELS:
            assert tg[i, 0] == 0.0 and tg[i, 1] == 0.0, seg
    # the same windows as the articulation module's, ARPAbet with stress accepted
    upper = [(p.upper() + ("1" if p in OPEN_VOWELS else ""), a, b) for p, a, b in s]
    np.testing.assert_array_equal(contact_targets(upper, FPS, _n(s)), tg)
    seg = art.prepare_segments(s, _n(s) / FPS)
    t = np.arange(_n(s)) / FPS
    np.testing.assert_allclose(tg[:, 0], art.window_values(t, art.contact_windows(seg, {"p", "b", "m"}, 0.05)))
    assert contact_targets(s, FPS, 0).shape == (0, 2)


def test_contact_weights_ramp_smoothly():
    on = np.zeros(200, bool)
    on[80:90] = True
    for fps in (30.0, 100.0):
        w = contact_weights(on, fps)
        assert np.all(w[on] == 1.0)
        k = int(np.ceil(art.EDGE_S * fps))
        assert np.all(w[: 80 - k] == 0) and np.all(w[90 + k :] == 0)
        assert np.all(np.diff(w[:81]) >= 0) and np.all(np.diff(w[89:]) <= 0)
        # raised cosine: the per-frame change is at most its largest slope
        assert np.abs(np.diff(w)).max() <= np.pi / (2 * art.EDGE_S * fps) + 1e-9


# --------------------------------------------------------------------------- closing
@pytest.fixture(scope="module")
def closed(head):
    hm = head[0]
    s, o = segs(SEQ), segs(OPEN)
    n = _n(s)
    track = art.articulate(o, fps=FPS, n_frames=n, model=hm)
    params = {"expr": track.expr, "jaw_pose": track.jaw_pose}
    probs = contact_targets(s, FPS, n)
    out = apply_contacts(params, probs, hm, fps=FPS)
    return s, params, probs, out, _gap_mm(head, params), _gap_mm(head, out)


def test_apply_contacts_closes_the_lips_exactly(closed):
    s, params, probs, out, before, after = closed
    on = probs[:, 0] > 0.5
    assert on.sum() >= 12
    assert before[on].max() > 5.0  # the motion itself never closes
    assert after[on].max() < 1.0, after[on].round(2)
    assert out["expr"].dtype == params["expr"].dtype and out["expr"].shape == params["expr"].shape
    # labiodental frames: the lower lip goes onto the teeth
    lab = art.P_INDEX["labiodental"] - 1
    f_on = probs[:, 1] > 0.5
    assert f_on.sum() >= 4
    assert np.all(out["expr"][f_on, lab] == pytest.approx(1.0))


def test_apply_contacts_leaves_open_vowels_open(closed, head):
    s, params, probs, out, before, after = closed
    for seg in s:
        if seg[0] in OPEN_VOWELS and seg[2] - seg[1] >= 0.08:
            i = _mid(seg)
            assert before[i] >= 5.0 and after[i] >= 5.0, (seg, before[i], after[i])
    # frames farther than EDGE_S from every contact frame are untouched, bit for bit
    far = contact_weights((probs > 0.5).any(1), FPS) == 0
    np.testing.assert_array_equal(out["expr"][far], params["expr"][far])
    np.testing.assert_array_equal(out["jaw_pose"][far], params["jaw_pose"][far])
    assert false_closures(after, s, FPS) == 0


def test_lip_gap_of_the_pair_alone_equals_the_whole_skinned_head(head):
    """``lip_gap_mm`` skins two vertices; the reference skins the whole head (float64) and measures the
    same pair with the metric's ``lip_gap``: equal to 1e-9 mm, with fewer components and any pair."""
    hm, _, pair = head
    rig64 = FlameRig(hm.to(dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    expr = torch.randn(9, 12, generator=g, dtype=torch.float64) * 0.6
    jaw = torch.zeros(9, 3, dtype=torch.float64)
    jaw[:, 0] = torch.rand(9, generator=g, dtype=torch.float64) * 0.3
    full = torch.zeros(9, hm.n_expr, dtype=torch.float64)
    full[:, :12] = expr
    with torch.no_grad():
        verts = rig64(expr=full, jaw_pose=jaw)
    for p in (pair, (pair[1], 17)):
        ref = lip_gap(verts.numpy(), p) * 1000.0
        got = lip_gap_mm(expr.numpy(), jaw, hm, p if p != pair else None)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
    assert lip_gap_mm(expr.float(), jaw.float(), hm).dtype == np.float64


def test_the_lip_gap_gate_keeps_only_contacts_the_motion_agrees_with(head):
    """With ``gate_mm`` a contact frame closes only where the incoming lip gap is under the gate: motion
    that nearly closes at one bilabial and is wide open at another keeps just the first closure."""
    hm = head[0]
    s = segs(SEQ)
    n = _n(s)
    # nearly closed at the first bilabial (b), wide open elsewhere: the real phones with only 'b' kept
    track = art.articulate(
        segs(SEQ.replace("m:90", "aa:90").replace("p:70", "ah:70").replace("m:100", "aa:100")),
        fps=FPS,
        n_frames=n,
        model=hm,
    )
    params = {"expr": track.expr, "jaw_pose": track.jaw_pose}
    probs = contact_targets(s, FPS, n)
    before = _gap_mm(head, params)
    bil = [seg for seg in s if seg[0] in ("p", "b", "m")]
    near, wide = [_mid(x) for x in bil if before[_mid(x)] < 3.0], [_mid(x) for x in bil if before[_mid(x)] >= 5.0]
    assert near and len(wide) >= 2, before[[_mid(x) for x in bil]]
    ungated = _gap_mm(head, apply_contacts(params, probs, hm, fps=FPS))
    gated_params = apply_contacts(params, probs, hm, fps=FPS, gate_mm=3.0)
    gated = _gap_mm(head, gated_params)
    assert ungated[near + wide].max() < 1.0  # without a gate every bilabial closes
    assert gated[near].max() < 1.0  # the gate keeps the closure the motion agrees with
    np.testing.assert_allclose(gated[wide], before[wide], atol=1e-9)  # and leaves the others as they were
    # the gate is the only difference: frames beyond the ramps of the kept closure and of f/v are untouched
    on = probs[:, 0] > 0.5
    run = np.cumsum(np.diff(np.concatenate([[0], on.astype(int)])) == 1) * on  # run id per contact frame
    kept = np.isin(run, run[near]) & on
    far = (contact_weights(probs[:, 1] > 0.5, FPS) == 0) & (contact_weights(kept, FPS) == 0)
    assert far[wide].all()
    np.testing.assert_array_equal(gated_params["expr"][far], params["expr"][far])


def _hold_loop(on: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Brute-force reference of hold_peaks: walk the runs one by one."""
    out, i, n = np.zeros_like(on), 0, on.size
    while i < n:
        if not on[i]:
            i += 1
            continue
        j = i
        while j < n and on[j]:
            j += 1
        if j - i <= k:
            out[i:j] = True
        else:
            c = i + int(np.argmax(score[i:j]))  # first maximum
            a = max(i, min(c - (k - 1) // 2, j - k))
            out[a : a + k] = True
        i = j
    return out


def test_hold_peaks_matches_a_run_by_run_walk():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 40))
        on = rng.random(n) < rng.random()
        score = rng.integers(0, 4, n) / 3.0  # ties on purpose
        for k in (1, 2, 3, 5):
            np.testing.assert_array_equal(hold_peaks(on, score, k), _hold_loop(on, score, k))
        np.testing.assert_array_equal(hold_peaks(on, score, 0), on)
    # analytic: a run of 6 with its peak at frame 4 keeps frames 4 (k=1) and 4, 5 (k=2; centred, inside the run)
    on = np.array([0, 1, 1, 1, 1, 1, 1, 0, 1, 1], bool)
    score = np.array([0, 0.6, 0.7, 0.8, 0.9, 0.7, 0.6, 0, 0.9, 0.95])
    assert np.nonzero(hold_peaks(on, score, 1))[0].tolist() == [4, 9]
    assert np.nonzero(hold_peaks(on, score, 2))[0].tolist() == [4, 5, 8, 9]
    assert np.nonzero(hold_peaks(on, score, 3))[0].tolist() == [3, 4, 5, 8, 9]


def _peaks_loop(on: np.ndarray, score: np.ndarray, k: int, radius: int) -> np.ndarray:
    """Brute-force reference of hold_peaks with a radius: test each frame against its neighbours."""
    n = on.size

    def top(t: int) -> bool:  # the highest of the on frames within the radius
        near = range(max(0, t - radius), min(n, t + radius + 1))
        return bool(on[t]) and score[t] == max(score[u] for u in near if on[u])

    out = np.zeros_like(on)
    for t in range(n):
        if not top(t) or (t > 0 and top(t - 1) and score[t - 1] == score[t]):  # a plateau counts once
            continue
        i, j = t, t
        while i > 0 and on[i - 1]:
            i -= 1
        while j < n and on[j]:
            j += 1
        a = max(i, min(t - (k - 1) // 2, j - k))
        out[a : min(a + k, j)] = True
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_hold_peaks_with_a_radius_keeps_every_local_maximum(seed):
    rng = np.random.default_rng(seed)
    cases = [(rng.random(n) < rng.random(), n) for n in rng.integers(1, 40, 200)]
    for on, n in cases:  # distinct scores, or ties on purpose
        score = rng.random(n) if rng.random() < 0.5 else rng.integers(0, 4, n) / 3.0
        for k, radius in itertools.product((1, 2, 3), (1, 2, 4)):
            got = hold_peaks(on, score, k, radius)
            np.testing.assert_array_equal(got, _peaks_loop(on, score, k, radius), err_msg=f"{k} {radius}")
            assert not (got & ~on).any()
    # analytic: one run with two peaks 5 frames apart keeps both at radius 2, one at radius 0 or 5
    on = np.zeros(12, bool)
    on[2:10] = True
    score = np.array([0, 0, 0.6, 0.9, 0.7, 0.6, 0.5, 0.7, 0.8, 0.6, 0, 0])
    assert np.nonzero(hold_peaks(on, score, 1, 2))[0].tolist() == [3, 8]
    assert np.nonzero(hold_peaks(on, score, 1, 0))[0].tolist() == [3]
    assert np.nonzero(hold_peaks(on, score, 1, 5))[0].tolist() == [3]
    assert np.nonzero(hold_peaks(on, score, 2, 2))[0].tolist() == [3, 4, 8, 9]


def test_the_closure_hold_closes_at_the_surest_frame_only(head):
    """A long stretch of likely contact frames over an open vowel: without a hold the lips stay shut
    through all of it; with ``hold_s`` one (two) frame(s) at the probability peak close and the vowel's
    other frames keep the motion's opening beyond the ramp."""
    hm = head[0]
    s = segs("sil:200 aa:900 sil:200")
    n = _n(s)
    track = art.articulate(s, fps=FPS, n_frames=n, model=hm)
    params = {"expr": track.expr, "jaw_pose": track.jaw_pose}
    before = _gap_mm(head, params)
    probs = np.zeros((n, 2))
    on = np.arange(9, 24)  # 0.30 .. 0.77 s, well inside the vowel (0.2 .. 1.1 s)
    probs[on, 0] = 0.6 + 0.3 * np.exp(-0.5 * ((on - 17) / 2.0) ** 2)  # peak at frame 17
    whole = _gap_mm(head, apply_contacts(params, probs, hm, fps=FPS))
    assert whole[on].max() < 1.0  # every frame over the threshold closes
    for hold_s, kept in ((0.03, [17]), (0.07, [17, 18])):  # round(hold_s * fps) frames around the peak
        held = _gap_mm(head, apply_contacts(params, probs, hm, fps=FPS, hold_s=hold_s))
        assert held[kept].max() < 1.0, (hold_s, held[kept])
        far = np.setdiff1d(on, np.arange(kept[0] - 3, kept[-1] + 4))  # beyond the 70 ms ramps
        np.testing.assert_allclose(held[far], before[far], atol=1e-9)
        assert before[far].min() > 10.0


def test_apply_contacts_ramps_are_smooth(head):
    """At 60 fps the approach and release spread over several frames: the per-frame change of the lip
    gap stays within the raised cosine's slope times the opening it closes."""
    hm = head[0]
    fps = 60.0
    s, o = segs(SEQ), segs(OPEN)
    n = int(round(s[-1][2] * fps))
    track = art.articulate(o, fps=fps, n_frames=n, model=hm)
    params = {"expr": track.expr, "jaw_pose": track.jaw_pose}
    before = _gap_mm(head, params)
    after = _gap_mm(head, apply_contacts(params, contact_targets(s, fps, n), hm, fps=fps))
    slope = np.pi / (2 * art.EDGE_S * fps)
    bound = np.abs(np.diff(before)).max() + slope * before.max()
    assert np.abs(np.diff(after)).max() <= bound
    assert np.abs(np.diff(after)).max() < 0.6 * before.max()


def test_apply_contacts_on_tensors_and_without_contacts(head):
    hm = head[0]
    expr = torch.zeros(10, hm.n_expr)
    expr[:, hm.expr_names.index("lip_close")] = -1.0  # open lips
    params = {"expr": expr, "jaw_pose": torch.zeros(10, 3), "other": 1}
    none = apply_contacts(params, np.zeros((10, 2)), hm)
    assert none["expr"] is expr
    probs = torch.zeros(10, 2)
    probs[4:6, 0] = 0.9
    out = apply_contacts(params, probs, hm)
    assert isinstance(out["expr"], torch.Tensor) and out["expr"].dtype == torch.float32 and out["other"] == 1
    gap = _gap_mm(head, out)
    assert gap[4:6].max() < 1.0 and _gap_mm(head, params)[4] > 1.0
    with pytest.raises(ValueError, match="probs"):
        apply_contacts(params, np.zeros((9, 2)), hm)


# --------------------------------------------------------------------------- false closures
def test_false_closures_count_closed_open_vowels():
    s = segs("sil:200 ah:150 b:80 aa:60 m:80 iy:150 eh:100 sil:200")
    n = _n(s)
    gap = np.full(n, 8.0)
    assert false_closures(gap, s, FPS) == 0
    gap[_mid(s[1])] = 0.5  # ah (150 ms) closes
    gap[_mid(s[3])] = 0.5  # aa is too short to count
    gap[_mid(s[5])] = 0.5  # iy is not an open vowel
    assert false_closures(gap, s, FPS) == 1
    gap[_mid(s[6])] = 0.9  # eh: below 1 mm
    assert false_closures(gap, [(p.upper(), a, b) for p, a, b in s], FPS) == 2


# --------------------------------------------------------------------------- the model
def _tiny_config(**kw):
    from l2t_gs.models.audio2mesh import Audio2MeshConfig

    base = dict(output="rig", d_model=16, n_layers=1, enc_dim=16, enc_layers=1, n_mels=40, dropout=0.0)
    return Audio2MeshConfig(**(base | kw))


def test_contact_head_config_and_streaming(head, tmp_path):
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import load_model, model_payload, save_checkpoint

    with pytest.raises(L2TError, match="contact_head"):
        Audio2MeshConfig(output="vertices", contact_head=True).validate()
    hm, rig, pair = head
    torch.manual_seed(0)
    model = Audio2Mesh(_tiny_config(contact_head=True), ["a"], hm.n_verts, head=hm).eval()
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.normal(size=int(2.5 * 16000))).astype(np.float32)
    audio *= np.sin(np.linspace(0, 30, audio.size)) > 0
    # a contact head that switches on and off: logits along the main direction of the decoder features
    feats = []
    hook = model.decoder.norm.register_forward_hook(lambda m, i, o: feats.append(o[0]))
    model.predict_params(audio)
    hook.remove()
    h = torch.cat(feats)
    u = torch.linalg.svd(h - h.mean(0), full_matrices=False).Vh[0]
    proj = (h - h.mean(0)) @ u
    with torch.no_grad():
        model.decoder.contact_out.weight.copy_(torch.stack([u, -u]) * 8.0 / proj.std())
        model.decoder.contact_out.bias.copy_(-8.0 * (h.mean(0) @ u) / proj.std() * torch.tensor([1.0, -1.0]))
    params = model.predict_params(audio)
    assert set(params) == {"expr", "jaw_pose", "contacts"} and params["contacts"].shape == (75, 2)
    on = params["contacts"][:, 0] > 0.5
    assert 0 < int(on.sum()) < 75
    assert _gap_mm(head, params)[on.numpy()].max() < 1.0
    raw = model.predict_params(audio, contacts=False)
    torch.testing.assert_close(raw["contacts"], params["contacts"])
    assert not torch.equal(raw["expr"], params["expr"])
    # vertices: chunked streaming equals the whole clip; contacts applied as in predict_params
    neutral = rig(expr=torch.zeros(1, hm.n_expr))[0]
    whole, probs = model.predict(audio, neutral, chunk_seconds=30.0, return_contacts=True)
    chunked = model.predict(audio, neutral, chunk_seconds=0.3)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    torch.testing.assert_close(probs, params["contacts"], atol=1e-6, rtol=0)
    assert lip_gap(whole, pair)[on.numpy()].max() * 1000 < 1.0
    # with a closure hold and a peak radius the stream still equals the whole clip
    model.config.contact_hold_s, model.config.contact_peak_s = 0.04, 0.07
    held = model.predict(audio, neutral, chunk_seconds=30.0)
    assert not torch.equal(held, whole)
    for chunk in (0.3, 0.7):
        torch.testing.assert_close(model.predict(audio, neutral, chunk_seconds=chunk), held, atol=1e-5, rtol=0)
    model.config.contact_hold_s, model.config.contact_peak_s = 0.0, 0.0
    # checkpoints carry the flag; models without a contact head store no new key
    save_checkpoint(tmp_path / "c.pt", model)
    back = load_model(tmp_path / "c.pt")
    assert back.config.contact_head and back.decoder.contact_out is not None
    torch.testing.assert_close(back.predict_params(audio)["expr"], params["expr"])
    plain = Audio2Mesh(_tiny_config(), ["a"], hm.n_verts, head=hm)
    assert "contact_head" not in model_payload(plain)["config"]
    assert model_payload(model)["config"]["contact_head"] is True
    assert plain.decoder.contact_out is None and "contact_logits" not in plain(
        torch.zeros(1, 8000), 15, torch.tensor([0]), neutral[None]
    )


def test_checkpoint_without_contact_head_keeps_the_old_format(tmp_path):
    """A model without a contact head stores neither ``contact_head`` nor ``contact_threshold`` (checkpoints
    stay readable by versions that predate contacts), loads without the head and predicts what it did."""
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import load_model, read_checkpoint, save_checkpoint

    torch.manual_seed(0)
    cfg = Audio2MeshConfig(output="rig", head="builtin", enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2)
    model = Audio2Mesh(cfg, subjects=["a"], n_verts=7931).eval()
    path = save_checkpoint(tmp_path / "m.pt", model)
    stored = read_checkpoint(path)["config"]
    assert "contact_head" not in stored and "contact_threshold" not in stored
    again = load_model(path)
    assert again.config.contact_head is False and again.decoder.contact_out is None
    audio = torch.randn(16000) * 0.1
    a, b = model.predict_params(audio, fps=FPS), again.predict_params(audio, fps=FPS)
    assert set(b) == {"expr", "jaw_pose"}
    torch.testing.assert_close(a["expr"], b["expr"], rtol=0, atol=0)
    torch.testing.assert_close(a["jaw_pose"], b["jaw_pose"], rtol=0, atol=0)


# --------------------------------------------------------------------------- training
def test_contact_head_trains_and_the_loss_decreases(tmp_path):
    from flame_factory import make_head_model
    from test_train_audio2mesh import make_dataset

    from l2t_gs.models.checkpoint import load_model
    from l2t_gs.rig import save_head_model
    from l2t_gs.training.audio2mesh import train

    head = make_head_model(n_verts=40, n_expr=5, seed=1, dtype=torch.float32)
    head_path = save_head_model(head, tmp_path / "head.npz")
    rig = FlameRig(head)
    with torch.no_grad():
        jaw_dir = (rig(jaw_pose=torch.tensor([[0.2, 0.0, 0.0]])) - rig())[0].numpy() * 0.5
    tmpl = {"spkA": head.v_template.numpy(), "spkB": head.v_template.numpy() * 1.01}
    data = make_dataset(tmp_path / "data", n_verts=40, templates=tmpl, basis=jaw_dir, seconds=1.0)
    (data / "phones").mkdir()
    for wav in sorted((data / "wav").glob("*.wav")):
        ph = segs("sil:100 ah:150 m:100 aa:150 b:80 ah:120 f:90 ay:150 p:80 aa:200")
        (data / "phones" / f"{wav.stem}.json").write_text(
            json.dumps([{"phone": p.upper(), "start": a, "end": b} for p, a, b in ph])
        )
    recipe = {
        "model": {
            "output": "rig",
            "head": str(head_path),
            "contact_head": True,
            "d_model": 16,
            "n_layers": 1,
            "enc_dim": 16,
            "enc_layers": 1,
            "n_mels": 40,
            "dropout": 0.0,
        },  # fmt: skip
        "train": {"epochs": 8, "batch_size": 2, "lr": 3e-3, "crop_s": 0.0, "checkpoint_every": 0, "log_every": 1},
        "data": {},
        "loss": {"vertex": 1.0, "contact": {"weight": 1.0, "pos_weight": 3.0}},
    }
    seen: list[float] = []
    summary = train(data, tmp_path / "run", recipe, callbacks=[lambda info: seen.append(info["contact"])],
                    progress=False)  # fmt: skip
    assert summary["steps"] == 24 and len(seen) == 24
    assert np.isfinite(summary["val_contact"])
    assert np.mean(seen[-4:]) < 0.95 * np.mean(seen[:4]), seen
    import csv

    with open(tmp_path / "run" / "val_log.csv") as fh:
        val = [float(r["val_contact"]) for r in csv.DictReader(fh)]
    assert len(val) == 8 and val[-1] < val[0] and val[-1] == min(val), val
    model = load_model(tmp_path / "run")
    assert model.config.contact_head
    audio = np.zeros(16000, np.float32)
    assert model.predict_params(audio, contacts=False)["contacts"].shape == (30, 2)
    # the loss needs the head, and checks its options
    bad = dict(recipe, model=dict(recipe["model"], contact_head=False))
    with pytest.raises(L2TError, match="contact_head"):
        train(data, tmp_path / "run2", bad, progress=False)
    bad = dict(recipe, loss={"vertex": 1.0, "contact": {"pos_weight": -1}})
    with pytest.raises(L2TError, match="pos_weight"):
        train(data, tmp_path / "run3", bad, progress=False)


def test_clip_contact_targets(tmp_path):
    from l2t_gs.training.data.datasets import Clip

    s = segs(SEQ)
    n = _n(s)
    clip = Clip("c", "s", torch.zeros(n * 16000 // 30), torch.zeros(n, 3, 3), torch.zeros(3, 3), FPS, 16000)
    assert clip.contact_targets() is None
    clip.phones = s
    np.testing.assert_array_equal(clip.contact_targets().numpy(), contact_targets(s, FPS, n))


def test_short_bilabial_frames_mark_only_bilabials_under_40_ms():
    from l2t_gs.training.audio2mesh import short_bilabial_frames

    phones = segs("sil:300 ah:200 b:30 ah:270 m:80 sil:320")
    mask = short_bilabial_frames(phones, 100.0, 120)
    on = np.nonzero(mask)[0]
    # the 30 ms 'b' widened to the 50 ms shortest closure around its centre (0.515 s): frames 0.49..0.54 s
    assert on.tolist() == list(range(49, 55)) and mask.dtype == np.float32
    assert not mask[75:95].any()  # the 80 ms 'm' is not short
    assert not short_bilabial_frames(phones, 100.0, 120, max_s=0.02).any()


def _event_bce_brute(logits, targets, valid, widen):
    """Events found and pooled by explicit loops."""
    losses = []
    B, T, C = logits.shape
    for c in range(C):
        for b in range(B):
            t = 0
            while t < T:
                if valid[b, t] and targets[b, t, c] >= 0.5:
                    e = t
                    while e + 1 < T and valid[b, e + 1] and targets[b, e + 1, c] >= 0.5:
                        e += 1
                    frames = [k for k in range(max(0, t - widen), min(T, e + widen + 1)) if valid[b, k]]
                    z = max(float(logits[b, k, c]) for k in frames)
                    losses.append(np.log1p(np.exp(-z)))
                    t = e + 1
                else:
                    t += 1
    return float(np.mean(losses)) if losses else 0.0


def test_contact_event_bce_pools_each_event_over_its_widened_window():
    from l2t_gs.training.losses.contact import contact_event_bce

    g = torch.Generator().manual_seed(3)
    for widen in (0, 1, 3):
        logits = torch.randn(3, 40, 2, generator=g, dtype=torch.float64)
        targets = (torch.rand(3, 40, 2, generator=g) > 0.7).double() * torch.rand(3, 40, 2, generator=g) * 1.5
        valid = torch.ones(3, 40, dtype=torch.bool)
        valid[2, 31:] = False
        got = float(contact_event_bce(logits, targets, valid, widen))
        assert abs(got - _event_bce_brute(logits, targets, valid, widen)) < 1e-12, widen
    # analytic: one event at frames 10..12; the largest logit within 2 frames (at 8) decides, one outside does not
    logits = torch.full((1, 30, 2), -5.0)
    logits[0, 8, 0], logits[0, 20, 0] = 2.0, 9.0
    targets = torch.zeros(1, 30, 2)
    targets[0, 10:13, 0] = 1.0
    valid = torch.ones(1, 30, dtype=torch.bool)
    softplus = torch.nn.functional.softplus
    assert abs(float(contact_event_bce(logits, targets, valid, 2)) - float(softplus(torch.tensor(-2.0)))) < 1e-6
    assert abs(float(contact_event_bce(logits, targets, valid, 1)) - float(softplus(torch.tensor(5.0)))) < 1e-6
    # gradients reach only the pooled frame; no event: zero, still differentiable
    z = logits.clone().requires_grad_(True)
    contact_event_bce(z, targets, valid, 2).backward()
    assert torch.count_nonzero(z.grad) == 1 and z.grad[0, 8, 0] < 0
    z = logits.clone().requires_grad_(True)
    out = contact_event_bce(z, torch.zeros(1, 30, 2), valid, 2)
    out.backward()
    assert out.item() == 0.0 and torch.count_nonzero(z.grad) == 0


def test_contact_loss_short_boost_weighs_the_bilabial_channel_of_short_frames():
    from types import SimpleNamespace

    from l2t_gs.training.losses.contact import contact_bce
    from l2t_gs.training.losses.registry import LOSSES

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 2, generator=g)
    targets = (torch.rand(2, 6, 2, generator=g) > 0.5).float()
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 4:] = False
    short = torch.zeros(2, 6)
    short[0, 1:3] = 1.0
    pw = torch.tensor([4.0, 2.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=pw, reduction="none")
    w = torch.stack([1.0 + 2.0 * short, torch.ones(2, 6)], dim=-1) * valid[..., None]
    want = (bce * w).sum() / (valid.sum() * 2)
    assert torch.allclose(contact_bce(logits, targets, valid, pw, 1.0 + 2.0 * short), want)
    assert torch.allclose(
        contact_bce(logits, targets, valid, pw, torch.ones(2, 6)), contact_bce(logits, targets, valid, pw)
    )
    model = SimpleNamespace(decoder=SimpleNamespace(contact_out=object()))
    batch = SimpleNamespace(contacts=targets, contact_valid=torch.ones(2, dtype=torch.bool), contact_short=short)
    ctx = SimpleNamespace(contact_logits=logits, batch=batch, mask=valid)
    fn = LOSSES.get("contact")({"pos_weight": [4.0, 2.0], "short_boost": 3.0}, model, torch.device("cpu"))
    assert torch.allclose(fn(ctx), want)
    off = LOSSES.get("contact")({"pos_weight": [4.0, 2.0]}, model, torch.device("cpu"))
    assert torch.allclose(off(ctx), contact_bce(logits, targets, valid, pw))
    for bad in (0.5, "x", True):
        with pytest.raises(L2TError, match="short_boost"):
            LOSSES.get("contact")({"short_boost": bad}, model, torch.device("cpu"))
