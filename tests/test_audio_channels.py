"""Channel effects (training/data/channels.py) and the corpus builder's use of them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from l2t_gs.errors import L2TError
from l2t_gs.training.data import channels as C

SR = 16000


def _speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A harmonic, amplitude-modulated signal with a gliding F0 and some broadband noise: energy everywhere."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    phase = np.cumsum(120 * (1 + 0.15 * np.sin(2 * np.pi * 1.3 * t)) / SR)
    x = sum(np.sin(2 * np.pi * k * phase) / k for k in range(1, 60) if k * 150 < SR / 2)
    x = x * (0.3 + 0.7 * np.sin(2 * np.pi * 3 * t) ** 2) + 0.05 * rng.standard_normal(t.shape[0])
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(x.shape[0]))) ** 2  # window: no edge leakage
    f = np.fft.rfftfreq(x.shape[0], 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def test_telephone_band_attenuates_outside_300_3400():
    x = np.random.default_rng(1).standard_normal(SR * 2).astype(np.float32)
    y = C.telephone_band(x, SR)
    assert y.shape == x.shape and y.dtype == np.float32
    for lo, hi in ((0, 300), (3400, 8000)):
        assert 10 * np.log10(_band_energy(y, lo, hi) / _band_energy(x, lo, hi)) < -20
    assert 10 * np.log10(_band_energy(y, 500, 3000) / _band_energy(x, 500, 3000)) > -0.5


def test_narrowband_leaves_nothing_above_4k():
    x = np.random.default_rng(2).standard_normal(SR * 2).astype(np.float32)
    y = C.narrowband(x, SR)
    assert y.shape == x.shape
    assert 10 * np.log10(_band_energy(y, 4000, 8000) / _band_energy(x, 4000, 8000)) < -50
    assert _corr(C.telephone_band(x, SR, 300, 3400), C.telephone_band(y, SR, 300, 3400)) > 0.99


@pytest.mark.parametrize("law,codec", [("mu", "pcm_mulaw"), ("a", "pcm_alaw")])
def test_g711_matches_pyav(law, codec):
    av = pytest.importorskip("av")
    pcm = np.concatenate(
        [np.arange(-32768, 32768, 7, dtype=np.int64), np.random.default_rng(3).integers(-32768, 32768, 5000)]
    ).astype(np.int16)
    enc = av.CodecContext.create(codec, "w")
    enc.sample_rate, enc.layout, enc.format = 8000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(pcm[None], format="s16", layout="mono")
    frame.sample_rate = 8000
    data = b"".join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])
    codes = np.frombuffer(data, np.uint8)
    np.testing.assert_array_equal(C.g711_encode(pcm, law), codes)
    dec = av.CodecContext.create(codec, "r")
    dec.sample_rate, dec.layout = 8000, "mono"
    out = np.concatenate([f.to_ndarray().reshape(-1) for f in dec.decode(av.Packet(data))])
    np.testing.assert_array_equal(C.g711_decode(codes, law), out)
    x = _speechlike()
    y = C.g711(x, SR, law)
    assert y.shape == x.shape and _corr(x, y) > 0.99


@pytest.mark.parametrize("codec,kbps", [("mp3", 16), ("opus", 12), ("aac", 24), ("amrnb", 12.2)])
def test_lossy_codecs_round_trip(codec, kbps):
    if not C.codec_available(codec):
        pytest.skip(f"PyAV has no {C.CODECS[codec][1]} encoder")
    x = _speechlike()
    y = C.lossy_codec(x, SR, codec, int(kbps * 1000))
    assert y.shape == x.shape and y.dtype == np.float32
    # waveform codecs re-aligned to the sample; AMR-NB (CELP at 8 kHz) keeps less of the waveform
    assert _corr(x, y) > (0.4 if codec == "amrnb" else 0.9)


def test_gsm_round_trip():
    backend, why = C.gsm_backend()
    if backend is None:
        pytest.skip(why)
    x = _speechlike()
    y = C.gsm(x, SR)
    assert y.shape == x.shape
    assert _corr(C.narrowband(x, SR), y) > 0.4
    assert 10 * np.log10(_band_energy(y, 4000, 8000) / _band_energy(x, 4000, 8000)) < -30


@pytest.mark.parametrize("kind", C.NOISE_TYPES)
@pytest.mark.parametrize("snr", [0.0, 12.5, 30.0])
def test_noise_at_exact_snr(kind, snr):
    x = _speechlike()
    y = C.add_noise(x, SR, np.random.default_rng(4), snr_db=snr, kind=kind)
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
    assert abs(measured - snr) < 0.1


def test_clip_gain_and_dc():
    x = _speechlike()
    y = C.clip(x, SR, 0.4)
    assert np.abs(y).max() <= 0.4 * np.abs(x).max() + 1e-7
    assert np.mean(np.abs(y) >= 0.4 * np.abs(x).max() - 1e-7) > 0.01
    np.testing.assert_allclose(np.sqrt(np.mean(C.gain(x, SR, -6.0) ** 2)) / np.sqrt(np.mean(x**2)), 10 ** (-0.3), 1e-4)
    y = C.dc_offset(x, SR, 0.05)
    assert abs(float(np.mean(y)) - float(np.mean(x)) - 0.05) < 1e-5


@pytest.mark.parametrize("rt60", [0.2, 0.5, 1.0])
@pytest.mark.parametrize("drr", [-2.0, 10.0])
def test_rir_rt60_by_schroeder_integration(rt60, drr):
    h = C.room_impulse_response(SR, rt60, np.random.default_rng(5), drr_db=drr)
    assert h[0] == 1.0
    # Schroeder backward integration written out here, independent of the module's estimate_rt60
    edc = np.cumsum(h[::-1].astype(np.float64) ** 2)[::-1]
    edc_db = 10 * np.log10(edc / edc[0])
    sel = (edc_db <= -5) & (edc_db >= -25)
    slope = np.polyfit(np.nonzero(sel)[0] / SR, edc_db[sel], 1)[0]
    assert abs(-60 / slope - rt60) < 0.2 * rt60
    assert abs(C.estimate_rt60(h, SR) - rt60) < 0.2 * rt60
    x = _speechlike()
    y = C.reverberate(x, SR, np.random.default_rng(5), rt60=rt60, drr_db=drr)
    assert y.shape == x.shape and abs(np.std(y) / np.std(x) - 1) < 0.01


def test_random_chain_is_deterministic_and_keeps_length():
    x = _speechlike(1.5)
    cfg = C.ChannelConfig(reverb_prob=0.5, noise_prob=0.8, clip_prob=0.3, dc_prob=0.3)
    kinds = set()
    for seed in range(12):
        a, da = C.apply_random_channel(x, SR, np.random.default_rng(seed), cfg)
        b, db = C.apply_random_channel(x, SR, np.random.default_rng(seed), cfg)
        c, _ = C.apply_random_channel(x, SR, np.random.default_rng(seed + 1000), cfg)
        assert a.shape == x.shape and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)
        assert da == db and json.loads(json.dumps(da)) == da
        assert not np.array_equal(a, c)
        kinds.add(da.get("channel", {}).get("type"))
    assert len(kinds) >= 3


def test_voices_all_resolves_to_many_voices_with_held_out_splits():
    from l2t_gs.speech import espeak, festival
    from l2t_gs.training.data.corpus import CorpusConfig, all_voices, resolve_voices

    if not espeak.available():
        pytest.skip("espeak-ng is not installed (apt espeak-ng)")
    voices = all_voices()
    assert len(voices) > 100 and len(set(voices)) == len(voices)
    by_split = {sp: {v[1] for v in voices if v[2] == sp} for sp in ("train", "val", "test")}
    assert all(by_split.values())
    # espeak variants are held out whole: a val/test variant is never heard in training
    variant = {sp: {v.partition("+")[2] for v in names if "+" in v} for sp, names in by_split.items()}
    assert not (variant["train"] & (variant["val"] | variant["test"]))
    if festival.available():
        assert {v[2] for v in voices if v[0] == "festival"} == {"test"}
    small = resolve_voices(CorpusConfig(minutes=2, voices="all", seed=3))
    assert len(small) <= max(20, len(voices) - 1) and {v[2] for v in small} == {"train", "val", "test"}
    assert small == resolve_voices(CorpusConfig(minutes=2, voices="all", seed=3))


def test_tiny_corpus_with_the_channel_chain_is_deterministic_across_workers(tmp_path):
    from l2t_gs.speech import espeak, flite
    from l2t_gs.training.data.corpus import AugmentConfig, CorpusConfig, build_corpus

    if not (espeak.available() and flite.available()):
        pytest.skip("espeak-ng and flite are needed (apt)")
    voices = [("espeak", "en-us+m1", "train"), ("flite", "slt", "train"), ("espeak", "en-us+f5", "test")]
    chain = C.ChannelConfig(reverb_prob=1.0, noise_prob=1.0, telephone_prob=0.3, mp3_prob=0.3, opus_prob=0.3)
    chain.narrowband_prob = chain.g711_prob = chain.gsm_prob = chain.aac_prob = 0.02
    aug = AugmentConfig(vtlp_prob=1.0, channel=chain)
    descs = []
    for workers in (1, 2):
        cfg = CorpusConfig(minutes=0.1, voices=voices, seed=11, workers=workers, augment=aug)
        descs.append(build_corpus(cfg, tmp_path / f"w{workers}", progress=False))
    a, b = descs
    assert a["clips"] == b["clips"] and len(a["clips"]) == 3
    for clip in a["clips"]:
        assert "vtlp" in clip and "reverb" in clip["augment"] and "noise" in clip["augment"]
        name = clip["name"]
        assert (tmp_path / "w1" / "wav" / f"{name}.wav").read_bytes() == (
            tmp_path / "w2" / "wav" / f"{name}.wav"
        ).read_bytes()
        np.testing.assert_array_equal(
            np.load(tmp_path / "w1" / "vertices_npy" / f"{name}.npy"),
            np.load(tmp_path / "w2" / "vertices_npy" / f"{name}.npy"),
        )


def test_eval_channel_dataset_degrades_only_the_audio() -> None:
    import dataclasses as dc

    import torch

    from l2t_gs.training.data.channels import ChannelDataset

    @dc.dataclass
    class _Clip:
        audio: torch.Tensor
        audio_sr: int
        vertices: torch.Tensor

    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    clips = [_Clip(torch.from_numpy(tone), sr, torch.zeros(30, 4, 3))]
    for name in ("8k", "telephone"):
        out = ChannelDataset(clips, name)[0]
        assert out.vertices is clips[0].vertices and out.audio.shape == clips[0].audio.shape
        spec = np.abs(np.fft.rfft(out.audio.numpy()))
        f = np.fft.rfftfreq(sr, 1 / sr)
        assert spec[np.abs(f - 6000) < 5].max() < 0.01 * spec[np.abs(f - 1000) < 5].max()  # 6 kHz removed
        assert spec[np.abs(f - 1000) < 5].max() > 0.5 * np.abs(np.fft.rfft(tone))[np.abs(f - 1000) < 5].max()
    with pytest.raises(L2TError, match="unknown channel"):
        ChannelDataset(clips, "bogus")
