"""The synthetic corpus: layout, loader round trip, determinism, and the motion it pairs with speech."""

from __future__ import annotations

import json

import numpy as np
import pytest

from l2t_gs.errors import L2TError
from l2t_gs.speech import espeak, flite
from l2t_gs.training.data.corpus import CorpusConfig, build_corpus
from l2t_gs.training.data.datasets import load_dataset

pytestmark = pytest.mark.skipif(
    not (espeak.available() and flite.available()), reason="espeak-ng and flite are needed (apt)"
)
VOICES = [("espeak", "en-us+m1", "train"), ("flite", "slt", "train"), ("espeak", "en-us+f5", "test")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "corpus"
    cfg = CorpusConfig(minutes=0.3, voices=VOICES, seed=7, workers=2)
    build_corpus(cfg, out, progress=False)
    return out


def test_layout_and_loader_round_trip(corpus):
    for sub in ("wav", "vertices_npy", "phones", "templates.pkl", "dataset.json", "corpus.json"):
        assert (corpus / sub).exists(), sub
    train = load_dataset(corpus, split="train")
    test = load_dataset(corpus, split="test")
    assert train.fps == 30 and train.n_verts == 7931
    assert {c.subject for c in (train[i] for i in range(len(train)))} == {"espeak-en-us-m1", "flite-slt"}
    assert {test[i].subject for i in range(len(test))} == {"espeak-en-us-f5"}
    clip = train[0]
    assert clip.audio.dtype == np.float32 or str(clip.audio.dtype) == "torch.float32"
    assert abs(clip.vertices.shape[0] - clip.audio.shape[0] / 16000 * 30) <= 1
    assert clip.vertices.shape[1:] == (7931, 3) and clip.phones


def test_lips_close_on_bilabials_and_open_on_open_vowels(corpus):
    from l2t_gs.assets import asset_path

    with np.load(asset_path("head", "l2t_head.npz")) as z:
        up, lo = int(z["landmark_upper_lip_mid"][0]), int(z["landmark_lower_lip_mid"][0])
    data = load_dataset(corpus, split="all")
    n_bil = n_open = 0
    for i in range(len(data)):
        clip = data[i]
        v = np.asarray(clip.vertices)
        gap = np.linalg.norm(v[:, up] - v[:, lo], axis=-1) * 1000
        for seg in clip.phones:
            frames = [f for f in range(int(np.ceil(seg.start * 30)), int(np.ceil(seg.end * 30))) if f < len(gap)]
            frames = frames or [min(int(round((seg.start + seg.end) / 2 * 30)), len(gap) - 1)]
            if seg.phone in ("p", "b", "m"):
                n_bil += 1
                assert gap[frames].min() < 1.0, (clip.name, seg, gap[frames])
            if seg.phone in ("aa", "ae", "ao", "aw", "ay") and seg.end - seg.start >= 0.06:
                n_open += 1
                assert gap[frames].max() > 6.0, (clip.name, seg, gap[frames])
    assert n_bil > 3 and n_open > 3


def test_deterministic_for_a_seed(corpus, tmp_path):
    again = tmp_path / "again"
    build_corpus(CorpusConfig(minutes=0.3, voices=VOICES, seed=7, workers=1), again, progress=False)
    a = json.loads((corpus / "corpus.json").read_text())
    b = json.loads((again / "corpus.json").read_text())
    assert a["clips"] == b["clips"]
    name = a["clips"][0]["name"]
    np.testing.assert_array_equal(
        np.load(corpus / "vertices_npy" / f"{name}.npy"), np.load(again / "vertices_npy" / f"{name}.npy")
    )
    assert (corpus / "wav" / f"{name}.wav").read_bytes() == (again / "wav" / f"{name}.wav").read_bytes()


def test_bad_requests(tmp_path, corpus):
    with pytest.raises(L2TError, match="already exists"):
        build_corpus(CorpusConfig(minutes=0.1, voices=VOICES), corpus, progress=False)
    with pytest.raises(L2TError, match="no voice"):
        build_corpus(CorpusConfig(minutes=0.1, voices=[("flite", "nobody", "train")]), tmp_path / "x", progress=False)
    with pytest.raises(L2TError, match="training voice"):
        build_corpus(CorpusConfig(minutes=0.1, voices=[("flite", "slt", "test")]), tmp_path / "y", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
