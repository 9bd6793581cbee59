"""Speech/motion dataset loaders: FaceFormer layout, VOCASET/BIWI splits, custom dataset.json, validation."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from l2t_gs.errors import L2TError
from l2t_gs.training.data.datasets import (
    Clip,
    LengthBucketSampler,
    PhoneSegment,
    collate_padded,
    collate_single,
    load_dataset,
)
from l2t_gs.training.data.splits import (
    BIWI,
    VOCASET,
    VOCASET_TEST_SUBJECTS,
    VOCASET_TRAIN_SUBJECTS,
    VOCASET_VAL_SUBJECTS,
    clip_sentence,
    clip_subject,
)

V = 4  # vertices in the small custom/renamed datasets


# --------------------------------------------------------------------------- builders
def _write_wav(path: Path, seconds: float, sr: int = 16000, channels: int = 1) -> None:
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, subtype="PCM_16")


def _motion(frames: int, n_verts: int = V, seed: int = 0) -> np.ndarray:
    """[frames, V*3] with frame index in x of vertex 0 (to check subsampling)."""
    m = np.random.default_rng(seed).normal(size=(frames, n_verts, 3)).astype(np.float32) * 0.01
    m[:, 0, 0] = np.arange(frames)
    return m.reshape(frames, n_verts * 3)


def _write_templates(root: Path, subjects: list[str], n_verts: int = V) -> None:
    rng = np.random.default_rng(1)
    tpl = {s: rng.normal(size=(n_verts, 3)) for s in subjects}
    (root / "templates.pkl").write_bytes(pickle.dumps(tpl))


def _make(
    root: Path,
    clips: dict[str, float],
    *,
    fps: float,
    subjects: list[str] | None = None,
    n_verts: int = V,
    spec: dict | None = None,
) -> Path:
    """Dataset with ``clips`` (name -> seconds) at ``fps`` motion frames, templates and optional dataset.json."""
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "vertices_npy").mkdir(parents=True, exist_ok=True)
    for i, (name, seconds) in enumerate(clips.items()):
        _write_wav(root / "wav" / f"{name}.wav", seconds)
        np.save(root / "vertices_npy" / f"{name}.npy", _motion(int(round(seconds * fps)), n_verts, seed=i))
    subs = subjects if subjects is not None else sorted({clip_subject(n) for n in clips})
    _write_templates(root, subs, n_verts)
    if spec is not None:
        (root / "dataset.json").write_text(json.dumps(spec))
    return root


CUSTOM_SPEC = {
    "version": 1,
    "name": "tiny",
    "fps": 30,
    "n_verts": V,
    "subjects": ["spka", "spkb", "spkc"],
    "splits": {
        "train": {"subjects": ["spka", "spkb"], "sentences": [1, 2]},
        "val": {"subjects": ["spkb"], "sentences": [3, 3]},
        "test": [{"clips": ["spkc_s01"]}],
    },
}
CUSTOM_CLIPS = {"spka_s01": 1.0, "spka_s02": 0.5, "spkb_s01": 0.7, "spkb_s03": 0.4, "spkc_s01": 0.6}


@pytest.fixture
def custom(tmp_path: Path) -> Path:
    return _make(tmp_path / "tiny", CUSTOM_CLIPS, fps=30, spec=CUSTOM_SPEC)


def _vocaset_clips() -> dict[str, float]:
    tr, va, te = VOCASET_TRAIN_SUBJECTS[0], VOCASET_VAL_SUBJECTS[0], VOCASET_TEST_SUBJECTS[1]
    return {
        f"{tr}_sentence01": 0.5,
        f"{tr}_sentence40": 0.4,
        f"{va}_sentence05": 0.3,  # val subjects use sentences 21-40 only
        f"{va}_sentence21": 0.3,
        f"{te}_sentence22": 0.3,
    }


# --------------------------------------------------------------------------- round trips
def test_custom_round_trip(custom: Path) -> None:
    _write_wav(custom / "wav" / "spka_s01.wav", 1.0, sr=22050, channels=2)  # resampled and mixed to mono
    (custom / "phones").mkdir()
    (custom / "phones" / "spka_s01.json").write_text(
        json.dumps([{"phone": "SIL", "start": 0.0, "end": 0.2}, {"phone": "AA", "start": 0.2, "end": 0.6}])
    )
    ds = load_dataset(custom, split="train")
    assert ds.spec.kind == "custom" and ds.name == "tiny"
    assert ds.names == ["spka_s01", "spka_s02", "spkb_s01"]
    assert ds.subjects == ("spka", "spkb") and ds.fps == 30 and ds.n_verts == V
    assert ds.spec.train_subjects == ("spka", "spkb")
    clip = ds[0]
    assert isinstance(clip, Clip) and clip.subject == "spka"
    assert clip.audio.dtype == torch.float32 and clip.audio.ndim == 1
    assert abs(clip.audio.shape[0] - 16000) <= 2
    assert clip.vertices.shape == (30, V, 3) and clip.vertices.dtype == torch.float32
    assert clip.template.shape == (V, 3) and clip.fps == 30 and clip.audio_sr == 16000
    assert clip.phones == [PhoneSegment("SIL", 0.0, 0.2), PhoneSegment("AA", 0.2, 0.6)]
    assert ds[1].phones is None
    assert ds.lengths() == [30, 15, 21]
    assert ds.template("spka").shape == (V, 3)


def test_custom_split_selection(custom: Path) -> None:
    assert load_dataset(custom, split="val").names == ["spkb_s03"]
    assert load_dataset(custom, split="test").names == ["spkc_s01"]
    assert len(load_dataset(custom, split="all")) == len(CUSTOM_CLIPS)
    assert load_dataset(custom, split="train", subjects=["spkb"]).names == ["spkb_s01"]
    assert load_dataset(custom, split="all", subjects="spkc").names == ["spkc_s01"]


def test_vocaset_subsamples_60_to_30_and_splits(tmp_path: Path) -> None:
    clips = _vocaset_clips()
    root = _make(tmp_path / "voca", clips, fps=60, subjects=list(VOCASET.subjects))
    ds = load_dataset(root, n_verts=V)  # auto: detected by clip names
    assert ds.spec.kind == "vocaset" and ds.fps == 30
    tr = VOCASET_TRAIN_SUBJECTS[0]
    assert ds.names == [f"{tr}_sentence01", f"{tr}_sentence40"]
    clip = ds[0]
    assert clip.vertices.shape == (15, V, 3)  # 0.5 s: 30 frames at 60 fps -> 15 at 30 fps
    assert clip.vertices[:, 0, 0].tolist() == list(range(0, 30, 2))  # every 2nd frame, starting at 0
    assert load_dataset(root, "vocaset", "val", n_verts=V).names == [f"{VOCASET_VAL_SUBJECTS[0]}_sentence21"]
    assert load_dataset(root, "vocaset", "test", n_verts=V).names == [f"{VOCASET_TEST_SUBJECTS[1]}_sentence22"]
    assert len(load_dataset(root, "vocaset", "all", n_verts=V)) == len(clips)
    assert ds.spec.train_subjects == VOCASET_TRAIN_SUBJECTS


def test_vocaset_detected_by_5023_vertices(tmp_path: Path) -> None:
    name = f"{VOCASET_TRAIN_SUBJECTS[2]}_sentence03"
    root = _make(tmp_path / "v", {name: 0.1}, fps=60, n_verts=5023)
    ds = load_dataset(root, validate="full")
    assert ds.spec.kind == "vocaset" and ds.n_verts == 5023
    assert ds[0].vertices.shape == (3, 5023, 3)


def test_biwi_splits(tmp_path: Path) -> None:
    clips = {"F2_e01": 0.4, "F2_e33": 0.4, "M5_e37": 0.4, "M1_e37": 0.4, "M1_e01": 0.4}
    root = _make(tmp_path / "biwi", clips, fps=25, subjects=list(BIWI.subjects))
    ds = load_dataset(root, "biwi", "train", n_verts=V)
    assert ds.names == ["F2_e01"] and ds.fps == 25 and ds[0].vertices.shape == (10, V, 3)
    assert load_dataset(root, "biwi", "val", n_verts=V).names == ["F2_e33"]
    assert load_dataset(root, "biwi", "test", n_verts=V).names == ["M5_e37"]  # Test-A: seen subjects
    assert load_dataset(root, "biwi", "test_b", n_verts=V).names == ["M1_e37"]  # Test-B: unseen subjects
    assert load_dataset(root, n_verts=V, split="all").spec.kind == "biwi"  # auto by names


def test_latin1_python2_templates_pickle(tmp_path: Path) -> None:
    """A pickle whose array buffers are Python 2 ``str`` (BINSTRING) needs encoding='latin1'."""

    class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
        dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

        def save_py2_str(self, obj: bytes) -> None:
            head = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else pickle.BINSTRING
            self.write(head if len(obj) < 256 else head + struct.pack("<i", len(obj)))
            self.write(obj)
            self.memoize(obj)

        dispatch[bytes] = save_py2_str

    root = _make(tmp_path / "voca", {f"{VOCASET_TRAIN_SUBJECTS[0]}_sentence01": 0.3}, fps=60)
    tpl = {VOCASET_TRAIN_SUBJECTS[0]: np.random.default_rng(3).normal(size=(V, 3)) * 7}
    with open(root / "templates.pkl", "wb") as fh:
        Py2Pickler(fh, protocol=2).dump(tpl)
    with pytest.raises(UnicodeDecodeError):
        pickle.loads((root / "templates.pkl").read_bytes())  # the Python 3 default (ASCII) fails
    ds = load_dataset(root, n_verts=V)
    np.testing.assert_allclose(ds.template(VOCASET_TRAIN_SUBJECTS[0]).numpy(), tpl[VOCASET_TRAIN_SUBJECTS[0]], 1e-6)


def test_collate_and_length_buckets(custom: Path) -> None:
    ds = load_dataset(custom, split="all")
    (clip,) = list(DataLoader(ds, batch_size=1, collate_fn=collate_single))[:1]
    assert isinstance(clip, Clip)
    sampler = LengthBucketSampler(ds.lengths(), batch_size=2, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3
    assert sorted(i for b in batches for i in b) == list(range(len(ds)))
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_padded)
    for batch in loader:
        b = len(batch.names)
        assert batch.audio.shape[0] == b and batch.vertices.shape[1] == int(batch.frame_lengths.max())
        assert batch.templates.shape == (b, V, 3)
    ordered = list(LengthBucketSampler(ds.lengths(), batch_size=2, shuffle=False))
    lengths = ds.lengths()
    flat = [lengths[i] for b in ordered for i in b]
    assert flat == sorted(flat)


# --------------------------------------------------------------------------- broken datasets
def _err(root: Path, **kw: object) -> str:
    with pytest.raises(L2TError) as info:
        load_dataset(root, **kw)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_missing_wav(custom: Path) -> None:
    (custom / "wav" / "spka_s02.wav").unlink()
    msg = _err(custom)
    assert "no audio" in msg and str(custom / "wav" / "spka_s02.wav") in msg


def test_missing_npy(custom: Path) -> None:
    (custom / "vertices_npy" / "spkb_s01.npy").unlink()
    msg = _err(custom)
    assert "no motion" in msg and str(custom / "vertices_npy" / "spkb_s01.npy") in msg


def test_nan_vertices(custom: Path) -> None:
    path = custom / "vertices_npy" / "spka_s02.npy"
    m = np.load(path)
    m[4, 2] = np.nan
    np.save(path, m)
    msg = _err(custom, validate="full")
    assert "NaN" in msg and str(path) in msg and "frame 4" in msg
    ds = load_dataset(custom)  # header validation passes; the item itself is refused
    with pytest.raises(L2TError, match="NaN"):
        ds[1]


def test_wrong_vertex_count_in_motion(custom: Path) -> None:
    path = custom / "vertices_npy" / "spka_s01.npy"
    np.save(path, _motion(30, V + 1))
    msg = _err(custom)
    assert str(path) in msg and f"{V + 1} vertices" in msg and f"expected {V}" in msg


def test_wrong_vertex_count_in_template(tmp_path: Path) -> None:
    root = _make(tmp_path / "voca", _vocaset_clips(), fps=60, subjects=list(VOCASET.subjects))
    msg = _err(root, kind="vocaset")  # templates have 4 vertices, VOCASET needs 5023
    assert "templates.pkl" in msg and "expected 5023" in msg and "n_verts" in msg


def test_length_mismatch(custom: Path) -> None:
    path = custom / "vertices_npy" / "spka_s01.npy"
    np.save(path, _motion(40))  # 1.0 s of audio is 30 frames; 10 frames too many
    msg = _err(custom)
    assert str(path) in msg and str(custom / "wav" / "spka_s01.wav") in msg and "at most 5 frames" in msg
    load_dataset(custom, frame_tolerance=10)  # explicit override
    np.save(path, _motion(34))  # within the default tolerance
    load_dataset(custom)


def test_unknown_subject(custom: Path) -> None:
    msg = _err(custom, subjects=["nobody"])
    assert "unknown subject 'nobody'" in msg and "templates.pkl" in msg
    msg = _err(custom, split="val", subjects=["spka"])
    assert "not in split 'val'" in msg
    _write_wav(custom / "wav" / "ghost_s01.wav", 0.3)
    np.save(custom / "vertices_npy" / "ghost_s01.npy", _motion(9))
    msg = _err(custom, split="all")
    assert "ghost" in msg and str(custom / "wav" / "ghost_s01.wav") in msg


def test_empty_split(custom: Path) -> None:
    spec = dict(CUSTOM_SPEC, splits={"train": CUSTOM_SPEC["splits"]["train"]})
    (custom / "dataset.json").write_text(json.dumps(spec))
    assert "dataset tiny" in _err(custom, split="test") and "no clips in split 'test'" in _err(custom, split="test")
    (custom / "wav" / "spkc_s01.wav").unlink()
    (custom / "vertices_npy" / "spkc_s01.npy").unlink()
    spec["splits"]["test"] = {"subjects": ["spkc"]}
    (custom / "dataset.json").write_text(json.dumps(spec))
    assert _err(custom, split="test").startswith("dataset tiny") and "no clips in split 'test'" in _err(
        custom, split="test"
    )


def test_unreadable_files(custom: Path) -> None:
    wav = custom / "wav" / "spka_s02.wav"
    wav.write_bytes(b"not a wav file at all")
    assert str(wav) in _err(custom)
    _write_wav(wav, 0.5)
    npy = custom / "vertices_npy" / "spkb_s01.npy"
    npy.write_bytes(b"\x93NUMPY garbage")
    assert str(npy) in _err(custom)
    np.save(npy, _motion(21))
    (custom / "phones").mkdir()
    ph = custom / "phones" / "spka_s01.json"
    ph.write_text(json.dumps([{"phone": "AA", "start": 0.5, "end": 0.1}]))
    assert str(ph) in _err(custom)
    (custom / "templates.pkl").write_bytes(b"garbage")
    assert "templates.pkl" in _err(custom)


def test_bad_dataset_json(custom: Path) -> None:
    (custom / "dataset.json").write_text(json.dumps(dict(CUSTOM_SPEC, fsp=30)))
    assert "unknown key" in _err(custom) and "dataset.json" in _err(custom)
    (custom / "dataset.json").write_text(json.dumps(dict(CUSTOM_SPEC, vertices_fps=45)))
    assert "integer multiple" in _err(custom)
    (custom / "dataset.json").write_text(json.dumps(dict(CUSTOM_SPEC, subjects=["spka", "spkb", "spkc", "spkd"])))
    assert "spkd" in _err(custom)


def test_kind_and_layout_errors(tmp_path: Path, custom: Path) -> None:
    assert "does not exist" in _err(tmp_path / "nope")
    assert "kind" in _err(custom, kind="flame")
    (custom / "dataset.json").unlink()
    assert "cannot tell which dataset" in _err(custom)
    assert "no dataset.json" in _err(custom, kind="custom")


def test_name_parsing() -> None:
    assert clip_subject("FaceTalk_170728_03272_TA_sentence01") == "FaceTalk_170728_03272_TA"
    assert clip_subject("F2_e01") == "F2" and clip_sentence("F2_e37") == 37
    assert clip_subject("spk_a_take_3", known=["spk_a", "spk"]) == "spk_a"
    assert clip_sentence("x_sentence40") == 40 and clip_sentence("x_intro") is None
