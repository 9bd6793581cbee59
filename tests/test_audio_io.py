"""Audio I/O: every supported container decodes to the same 16 kHz mono signal; bad files are user errors."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf

from l2t_gs.audio.io import audio_duration, load_audio, read_audio, resample, save_wav
from l2t_gs.errors import L2TError

SR_REF, SR_FILE, SECONDS = 16000, 44100, 1.5


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """1.5 s of band-limited test signal at 16 kHz (tones, a chirp, an envelope; all well below 8 kHz)."""
    t = np.arange(int(SR_REF * SECONDS)) / SR_REF
    x = 0.25 * np.sin(2 * np.pi * 220 * t) + 0.15 * np.sin(2 * np.pi * 1250 * t)
    x += 0.1 * np.sin(2 * np.pi * (300 * t + 900 * t**2))  # 300 -> 3000 Hz chirp
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
    fade = np.minimum(1.0, np.minimum(t, SECONDS - t) / 0.05)  # no clicks at the ends
    return (x * fade).astype(np.float32)


@pytest.fixture(scope="module")
def stereo44k(reference) -> np.ndarray:
    """The reference at 44.1 kHz as stereo whose channel mean is the reference (L = x + d, R = x - d)."""
    x = resample(reference, SR_REF, SR_FILE)
    t = np.arange(x.shape[0]) / SR_FILE
    d = (0.1 * np.sin(2 * np.pi * 523 * t)).astype(np.float32)
    return np.stack([x + d, x - d], axis=1)


def _write_pyav(path, audio: np.ndarray, sr: int, codec: str) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=sr, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio.T), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, Fraction(1, sr)
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _lag(a: np.ndarray, b: np.ndarray, max_lag: int = 400) -> int:
    """Shift of ``b`` against ``a`` (samples) that maximises their correlation."""
    n = min(a.size, b.size) - 2 * max_lag
    ref = a[max_lag : max_lag + n]
    scores = [float(np.dot(ref, b[max_lag + k : max_lag + k + n])) for k in range(-max_lag, max_lag)]
    return int(np.argmax(scores)) - max_lag


def _snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    n = min(ref.size, x.size)
    return 10 * np.log10(np.sum(ref[:n] ** 2) / max(np.sum((ref[:n] - x[:n]) ** 2), 1e-20))


@pytest.mark.parametrize(
    "ext, writer, min_snr",
    [
        ("wav", "soundfile", 60.0),
        ("flac", "soundfile", 60.0),
        ("ogg", "soundfile", 15.0),
        ("mp3", "libmp3lame", 15.0),
        ("m4a", "aac", 15.0),
    ],
)
def test_formats_decode_to_reference(tmp_path, reference, stereo44k, ext, writer, min_snr):
    path = tmp_path / f"clip.{ext}"
    if writer == "soundfile":
        subtype = {"wav": "FLOAT", "flac": "PCM_24", "ogg": "VORBIS"}[ext]
        sf.write(str(path), stereo44k, SR_FILE, subtype=subtype)
    else:
        _write_pyav(path, stereo44k, SR_FILE, writer)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - reference.size) <= 0.01 * reference.size, (x.size, reference.size)
    assert _lag(reference, x) == 0  # no decoder delay (mp3 gapless info, m4a edit list)
    assert _snr_db(reference, x) > min_snr
    assert abs(audio_duration(path) - SECONDS) < 0.05


def test_lossless_is_exact_up_to_resampling(tmp_path, reference, stereo44k):
    sf.write(str(tmp_path / "a.wav"), stereo44k, SR_FILE, subtype="FLOAT")
    x = load_audio(tmp_path / "a.wav")
    assert x.size == reference.size
    assert np.abs(x - reference).max() < 2e-3


def test_stereo_kept_and_native_rate(tmp_path, stereo44k):
    sf.write(str(tmp_path / "a.flac"), stereo44k, SR_FILE)
    both = load_audio(tmp_path / "a.flac", sr=SR_FILE, mono=False)
    assert both.shape == stereo44k.shape
    assert np.abs(both - stereo44k).max() < 1e-4  # 16-bit FLAC
    data, sr = read_audio(tmp_path / "a.flac")
    assert sr == SR_FILE and data.shape == stereo44k.shape


def test_save_wav_roundtrip_and_atomic(tmp_path, reference):
    out = tmp_path / "out.wav"
    save_wav(out, reference, SR_REF)
    back = load_audio(out, SR_REF)
    assert back.size == reference.size and np.abs(back - reference).max() < 1e-4
    assert audio_duration(out) == pytest.approx(SECONDS)
    with pytest.raises(L2TError, match="NaN"):
        save_wav(tmp_path / "bad.wav", np.full(100, np.nan, np.float32), SR_REF)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.wav"]  # no temporary left behind
    with pytest.raises(L2TError, match="does not exist"):
        save_wav(tmp_path / "missing" / "x.wav", reference, SR_REF)


def test_missing_file(tmp_path):
    with pytest.raises(L2TError, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path):
    with pytest.raises(L2TError, match="not an audio file"):
        load_audio(tmp_path)


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.mp3").write_bytes(b"")
    with pytest.raises(L2TError, match="empty"):
        load_audio(tmp_path / "empty.mp3")


@pytest.mark.parametrize("name", ["notes.wav", "noise.mp3", "junk.m4a", "data.bin"])
def test_not_audio(tmp_path, name):
    rng = np.random.default_rng(0)
    payload = b"this is not audio\n" * 20 if name.endswith(".wav") else rng.bytes(3000)
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(L2TError, match="cannot decode audio"):
        load_audio(tmp_path / name)


def test_truncated_file(tmp_path, stereo44k):
    sf.write(str(tmp_path / "a.flac"), stereo44k, SR_FILE)
    (tmp_path / "cut.flac").write_bytes((tmp_path / "a.flac").read_bytes()[:30])
    with pytest.raises(L2TError):
        load_audio(tmp_path / "cut.flac")


def test_zero_length_audio(tmp_path):
    sf.write(str(tmp_path / "silent.wav"), np.zeros((0, 1), np.float32), SR_REF)
    with pytest.raises(L2TError, match="no samples|empty"):
        load_audio(tmp_path / "silent.wav")


def test_error_messages_are_one_line(tmp_path):
    (tmp_path / "x.ogg").write_bytes(b"OggS" + bytes(200))
    with pytest.raises(L2TError) as info:
        load_audio(tmp_path / "x.ogg")
    assert "\n" not in str(info.value)
