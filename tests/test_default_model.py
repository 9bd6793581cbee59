"""The shipped default Audio2Mesh model: size, model card, silence, and speech it never heard in training.

The speech check is independent of the model: the sample clip's phone timing (``hello.json``, from the TTS
engine that spoke it) drives the project's articulation module, and the model's lip opening must follow it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from l2t_gs.assets import asset_path
from l2t_gs.audio.io import load_audio
from l2t_gs.models.checkpoint import load_model
from l2t_gs.motion import articulation as art
from l2t_gs.pipeline import default_model_path
from l2t_gs.rig import FlameRig, load_head_model
from l2t_gs.training.metrics.lipsync_eval import card_table
from l2t_gs.training.metrics.motion import bilabial_segments, closure_flags, false_closures, lip_gap, pearson

FPS = 30.0
#: Floors below what the shipped model measured when it shipped: 8 of the sample clip's 12 bilabials
#: close under 1 mm, 1 of its 20 long open vowels falls under 1 mm in its central half.
CONTACT_RECALL_MIN = 0.6


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return load_model(default_model_path())


@pytest.fixture(scope="module")
def head():
    hm = load_head_model("builtin")
    with np.load(asset_path("head", "l2t_head.npz")) as z:
        pair = (int(z["landmark_upper_lip_mid"][0]), int(z["landmark_lower_lip_mid"][0]))
    return hm, FlameRig(hm), pair


def _predict(model, audio: np.ndarray, head) -> np.ndarray:
    hm, rig, _ = head
    neutral = rig(**art.RigTrack.zeros(1, FPS, hm.expr_names).params())[0]
    with torch.no_grad():
        return model.predict(torch.as_tensor(audio), neutral, fps=FPS).numpy()


def test_shipped_model_size_card_and_metrics_agree():
    path = default_model_path()
    assert path.stat().st_size <= 30 * 2**20
    card = (path.parent / "MODEL_CARD.md").read_text()
    cmds = ("l2t-gs data synth", "l2t-gs data human", "l2t-gs train syncnet3d", "l2t-gs train audio2mesh")
    for cmd in (*cmds, "l2t-gs train contact-head", "l2t-gs train contact-threshold"):
        assert cmd in card, cmd
    assert "l2t-gs eval" in card and "--channel 8k" in card
    # the card's tables are the shipped eval reports, verbatim
    for name in ("eval_human_val", "eval_human_val_8k", "eval_test", "eval_test_8k"):
        report = json.loads((path.parent / f"{name}.json").read_text())
        all_row = next(line for line in card_table(report).splitlines() if line.startswith("| **all**"))
        assert all_row in card, (name, all_row)
    ev = json.loads((path.parent / "eval_test.json").read_text())
    assert ev["split"] == "test" and ev["overall"]["clips"] >= 50
    hv = json.loads((path.parent / "eval_human_val.json").read_text())
    assert hv["split"] == "val" and hv["overall"]["clips"] >= 100
    assert re.search(r"\d+ clips", card)


def test_contact_head_closes_the_sample_clips_bilabials(model, head):
    """The shipped model predicts contacts and applies them through the rig: on the sample clip (a TTS
    voice it never heard) most p/b/m close under 1 mm, and its open vowels stay open."""
    assert model.config.contact_head
    hm, rig, pair = head
    audio = load_audio(asset_path("samples", "hello.wav"), sr=16000)
    segs = [(s["phone"], s["start"], s["end"]) for s in json.loads(asset_path("samples", "hello.json").read_text())]
    pred = _predict(model, audio, head)
    gap = lip_gap(pred, pair) * 1000
    bil = bilabial_segments(segs)
    closed = closure_flags(gap / 1000, bil, FPS, threshold=1.0 / 1000)
    assert closed.mean() >= CONTACT_RECALL_MIN, (closed, len(bil))
    # at most 2 of its 20 long open vowels (one clip; the split-level rates are in the model card)
    assert false_closures(gap, segs, FPS) <= 2


def test_silence_gives_a_still_closed_mouth(model, head):
    verts = _predict(model, np.zeros(32000, np.float32), head)
    gap = lip_gap(verts, head[2]) * 1000  # mm
    assert verts.shape[0] == 60
    assert gap.max() < 1.0, gap.max()
    motion = np.abs(np.diff(verts, axis=0)).max() * 1000
    assert motion < 0.5, motion  # mm per frame


def test_sample_clip_follows_its_phones(model, head):
    hm, rig, pair = head
    audio = load_audio(asset_path("samples", "hello.wav"), sr=16000)
    segs = [(s["phone"], s["start"], s["end"]) for s in json.loads(asset_path("samples", "hello.json").read_text())]
    pred = _predict(model, audio, head)
    ref = art.articulate(segs, fps=FPS, model=hm).vertices(rig, chunk=64).numpy()
    n = min(len(pred), len(ref))
    gp, gr = lip_gap(pred[:n], pair) * 1000, lip_gap(ref[:n], pair) * 1000
    r = pearson(gp, gr)
    assert r > 0.7, r
    bil = bilabial_segments(segs)
    closed = closure_flags(gp / 1000, bil, FPS, threshold=2.0 / 1000)
    assert len(bil) >= 3 and closed.mean() >= 0.5, (closed, len(bil))
    vowels = [(a, b) for p, a, b in segs if p in ("aa", "ae", "ah", "ay", "aw", "ow")]
    mids = [min(n - 1, int(round((a + b) / 2 * FPS))) for a, b in vowels]
    assert np.median(gp[mids]) > 4.0, gp[mids]
