"""Channel effects: what real speech goes through between a mouth and a file, for data augmentation.

Every effect is a function ``effect(audio, sr, ...) -> audio``: float32 mono in, float32 mono out at the
same sample rate and the same length (codec delays are removed by cross-correlation and the ends
trimmed or zero-padded), so phone timings made for the input stay valid for the output.

=====================  ============================================================================
effect                 what
=====================  ============================================================================
:func:`telephone_band`  300-3400 Hz band pass (zero-phase FFT mask with raised-cosine edges *inside*
                        the band, so everything below ``lo`` and above ``hi`` is removed)
:func:`narrowband`      resample through 8 kHz and back (soxr HQ: nothing above 4 kHz survives)
:func:`g711`            G.711 mu-law / A-law companding (exact numpy tables, bit-identical to
                        FFmpeg's ``pcm_mulaw`` / ``pcm_alaw``); at 8 kHz in the random chain
:func:`gsm`             GSM 06.10 full rate through ``sox`` (libgsm); without sox, AMR-NB through PyAV
                        (``libopencore_amrnb``); :func:`gsm_backend` says which, or why neither
:func:`lossy_codec`     MP3 (libmp3lame), Opus (libopus in Ogg) or AAC (FFmpeg's encoder in ADTS) at a
                        low bit rate, encoded and decoded in memory with PyAV
:func:`reverberate`     convolution with :func:`room_impulse_response`: a direct path plus
                        exponentially decaying noise with the requested RT60 and direct-to-reverberant
                        ratio (deterministic for the generator's state)
:func:`add_noise`       white, pink (1/f) or babble-like (several synthetic talkers: glottal saw-tooth
                        through moving formants, syllable-rate envelopes) noise at an exact SNR
:func:`clip`            hard clipping at a fraction of the peak
:func:`gain`,           level change in dB; constant DC offset
:func:`dc_offset`
=====================  ============================================================================

:func:`apply_random_channel` chains them (room -> noise -> channel/codec -> level -> DC -> clipping) with
probabilities and ranges from :class:`ChannelConfig`; it draws every random number whether or not an
effect is available, so the output is a function of (input, generator state, config) only, and returns a
dict of what it did (and what it skipped, with the reason). Everything is vectorised numpy, soxr and
codec libraries; no per-sample Python loops.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from l2t_gs.errors import L2TError

__all__ = [
    "EVAL_CHANNELS",
    "ChannelConfig",
    "ChannelDataset",
    "CODECS",
    "add_noise",
    "apply_random_channel",
    "clip",
    "codec_available",
    "dc_offset",
    "estimate_rt60",
    "g711",
    "g711_decode",
    "g711_encode",
    "gain",
    "gsm",
    "gsm_backend",
    "lossy_codec",
    "narrowband",
    "reverberate",
    "room_impulse_response",
    "telephone_band",
]

#: Lossy codecs for :func:`lossy_codec`: name -> (container format, PyAV encoder, codec sample rate).
CODECS: dict[str, tuple[str, str, int]] = {
    "mp3": ("mp3", "libmp3lame", 16000),
    "opus": ("ogg", "libopus", 16000),
    "aac": ("adts", "aac", 16000),
    "amrnb": ("amr", "libopencore_amrnb", 8000),
}
MAX_CODEC_DELAY_S = 0.15  # the delay search range when re-aligning decoded audio


def _f32(audio: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad ``y`` to ``n`` samples."""
    y = _f32(y)
    if y.shape[0] >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.shape[0], np.float32)])


def _resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    import soxr

    if sr_in == sr_out or audio.size == 0:
        return _f32(audio)
    return _f32(soxr.resample(_f32(audio), sr_in, sr_out, quality="HQ"))


def _delay(y: np.ndarray, x: np.ndarray, max_lag: int) -> int:
    """The lag d (|d| <= max_lag) that best matches ``y[n + d]`` to ``x[n]`` (FFT cross-correlation)."""
    n = x.shape[0] + y.shape[0]
    nfft = 1 << int(np.ceil(np.log2(max(n, 2))))
    r = np.fft.irfft(np.conj(np.fft.rfft(x, nfft)) * np.fft.rfft(y, nfft), nfft)
    lags = np.arange(-max_lag, max_lag + 1)
    return int(lags[np.argmax(r[lags % nfft])])


def _align(y: np.ndarray, x: np.ndarray, max_lag: int) -> np.ndarray:
    """``y`` shifted to line up with ``x`` and cut/padded to its length."""
    n = x.shape[0]
    if not np.any(x) or not np.any(y):
        return _fit(y, n)
    d = _delay(y, x, min(max_lag, n - 1))
    if d >= 0:
        return _fit(y[d:], n)
    return _fit(np.concatenate([np.zeros(-d, np.float32), y]), n)


# ----------------------------------------------------------------------------------------------
# band limits


def telephone_band(audio: np.ndarray, sr: int, lo: float = 300.0, hi: float = 3400.0) -> np.ndarray:
    """Telephone band pass: zero outside [lo, hi], raised-cosine edges 60 Hz / 150 Hz wide inside it."""
    x = _f32(audio)
    if x.size < 2:
        return x.copy()
    f = np.fft.rfftfreq(x.shape[0], 1.0 / sr)
    up = np.clip((f - lo) / 60.0, 0.0, 1.0)
    down = np.clip((hi - f) / 150.0, 0.0, 1.0)
    mask = (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))
    return np.fft.irfft(np.fft.rfft(x) * mask, n=x.shape[0]).astype(np.float32)


def narrowband(audio: np.ndarray, sr: int, rate: int = 8000) -> np.ndarray:
    """Resample to ``rate`` (default 8 kHz) and back: removes everything above ``rate / 2``."""
    x = _f32(audio)
    if sr <= rate:
        return x.copy()
    return _fit(_resample(_resample(x, sr, rate), rate, sr), x.shape[0])


# ----------------------------------------------------------------------------------------------
# G.711


def _ulaw2linear(code: np.ndarray) -> np.ndarray:
    u = ~code.astype(np.int64) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84)


def _alaw2linear(code: np.ndarray) -> np.ndarray:
    a = (code.astype(np.int64) ^ 0x55) & 0xFF
    t = a & 0x0F
    seg = (a & 0x70) >> 4
    t = np.where(seg > 0, (2 * t + 1 + 32) << (seg + 2), (2 * t + 1) << 3)
    return np.where(a & 0x80, t, -t)


@functools.lru_cache(maxsize=2)
def _g711_tables(law: str) -> tuple[np.ndarray, np.ndarray]:
    """(encode table over 14-bit linear values [16384] -> code, decode table [256] -> int16), built the way
    FFmpeg's pcm_tablegen does (each linear value goes to the code whose decoded value is nearest)."""
    dec_fn, mask = (_ulaw2linear, 0xFF) if law == "mu" else (_alaw2linear, 0xD5)
    decode = dec_fn(np.arange(256)).astype(np.int16)
    i = np.arange(128)
    v = (dec_fn(i ^ mask) + dec_fn((i + 1) ^ mask) + 4) >> 3  # boundaries, 14-bit units; last is unused
    j = np.arange(1, 8192)
    k = np.minimum(np.searchsorted(v[:127], j, side="right"), 127)  # first i with v[i] > j
    enc = np.empty(16384, np.uint8)
    enc[8192] = mask
    enc[8192 + j] = k ^ mask
    enc[8192 - j] = k ^ (mask ^ 0x80)
    enc[0] = enc[1]
    return enc, decode


def _to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(_f32(audio) * 32768.0), -32768, 32767).astype(np.int16)


def g711_encode(pcm: np.ndarray, law: str = "mu") -> np.ndarray:
    """int16 PCM -> G.711 bytes (uint8), ``law`` "mu" or "a"; identical to FFmpeg's pcm_mulaw/pcm_alaw."""
    if law not in ("mu", "a"):
        raise ValueError(f"law must be 'mu' or 'a', got {law!r}")
    enc, _ = _g711_tables(law)
    return enc[(pcm.astype(np.int32) + 32768) >> 2]


def g711_decode(codes: np.ndarray, law: str = "mu") -> np.ndarray:
    """G.711 bytes -> int16 PCM."""
    if law not in ("mu", "a"):
        raise ValueError(f"law must be 'mu' or 'a', got {law!r}")
    return _g711_tables(law)[1][codes.astype(np.uint8)]


def g711(audio: np.ndarray, sr: int, law: str = "mu") -> np.ndarray:
    """G.711 companding round trip (8-bit log quantisation) at ``sr``; the chain runs it at 8 kHz."""
    return g711_decode(g711_encode(_to_int16(audio), law), law).astype(np.float32) / 32768.0


# ----------------------------------------------------------------------------------------------
# GSM / AMR-NB and the PyAV codecs


@functools.cache
def codec_available(name: str) -> bool:
    """Whether PyAV has the encoder for codec ``name`` (a :data:`CODECS` key)."""
    try:
        import av

        av.codec.Codec(CODECS[name][1], "w")
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False
    return True


@functools.lru_cache(maxsize=1)
def _sox_gsm() -> str | None:
    """Why sox cannot do GSM, or None when it can."""
    exe = shutil.which("sox")
    if exe is None:
        return "sox is not installed"
    try:
        out = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sox does not run: {exc}"
    formats = out.partition("AUDIO FILE FORMATS:")[2].splitlines()[0].split() if "AUDIO FILE FORMATS:" in out else []
    return None if "gsm" in formats else "this sox has no GSM format"


def gsm_backend() -> tuple[str | None, str]:
    """("sox" | "amrnb" | None, a reason): how :func:`gsm` will run here, or why it cannot."""
    why = _sox_gsm()
    if why is None:
        return "sox", "GSM 06.10 through sox (libgsm)"
    if codec_available("amrnb"):
        return "amrnb", f"{why}: AMR-NB through PyAV (libopencore_amrnb) instead"
    return None, f"{why} and PyAV has no libopencore_amrnb encoder"


def _sox_gsm_roundtrip(x8: np.ndarray) -> np.ndarray:
    exe = shutil.which("sox")
    raw = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-r", "8000"]
    enc = subprocess.run(
        [exe, "-D", "-V1", *raw, "-", "-t", "gsm", "-"], input=_to_int16(x8).tobytes(), capture_output=True, timeout=120
    )
    if enc.returncode != 0:
        raise RuntimeError(f"sox GSM encode failed: {enc.stderr.decode(errors='replace').strip()}")
    dec = subprocess.run(
        [exe, "-D", "-V1", "-t", "gsm", "-r", "8000", "-c", "1", "-", *raw, "-"],
        input=enc.stdout,
        capture_output=True,
        timeout=120,
    )
    if dec.returncode != 0:
        raise RuntimeError(f"sox GSM decode failed: {dec.stderr.decode(errors='replace').strip()}")
    return np.frombuffer(dec.stdout, np.int16).astype(np.float32) / 32768.0


def gsm(audio: np.ndarray, sr: int, bitrate: int = 12200) -> np.ndarray:
    """GSM full-rate round trip at 8 kHz (sox), or AMR-NB at ``bitrate`` (4750-12200) without sox.

    Raises RuntimeError when neither is available (see :func:`gsm_backend`)."""
    backend, why = gsm_backend()
    x = _f32(audio)
    if backend is None:
        raise RuntimeError(why)
    x8 = _resample(x, sr, 8000)
    if backend == "sox":
        y8 = _sox_gsm_roundtrip(x8)
    else:
        y8 = _av_roundtrip(x8, 8000, "amrnb", bitrate)
    y8 = _align(y8, x8, int(MAX_CODEC_DELAY_S * 8000))
    return _fit(_resample(y8, 8000, sr), x.shape[0])


def _av_roundtrip(x: np.ndarray, sr: int, name: str, bitrate: int) -> np.ndarray:
    """Encode ``x`` (at the codec's own rate ``sr``) and decode it again, all in memory."""
    import av

    fmt, encoder, _ = CODECS[name]
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(encoder, rate=sr, layout="mono")
        stream.bit_rate = int(bitrate)
        frame = av.AudioFrame.from_ndarray(_f32(x)[None], format="flt", layout="mono")
        frame.sample_rate = sr
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    chunks = []
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
    with av.open(buf, "r", format=fmt) as inp:
        for frame in inp.decode(audio=0):
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray().reshape(-1))
    for f in resampler.resample(None):
        chunks.append(f.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def lossy_codec(audio: np.ndarray, sr: int, codec: str = "mp3", bitrate: int = 16000) -> np.ndarray:
    """MP3 / Opus / AAC / AMR-NB round trip at ``bitrate`` bit/s via PyAV, re-aligned to the input.

    Raises RuntimeError when this FFmpeg build lacks the encoder (:func:`codec_available`)."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; one of {', '.join(CODECS)}")
    if not codec_available(codec):
        raise RuntimeError(f"PyAV has no {CODECS[codec][1]} encoder")
    x = _f32(audio)
    csr = CODECS[codec][2]
    xc = _resample(x, sr, csr)
    yc = _align(_av_roundtrip(xc, csr, codec, bitrate), xc, int(MAX_CODEC_DELAY_S * csr))
    return _fit(_resample(yc, csr, sr), x.shape[0])


# ----------------------------------------------------------------------------------------------
# room


def room_impulse_response(
    sr: int, rt60: float, rng: np.random.Generator, drr_db: float = 3.0, length_factor: float = 1.2
) -> np.ndarray:
    """A synthetic room impulse response: unit direct path at sample 0, then (after a 1-8 ms gap) gaussian
    noise whose energy decays 60 dB in ``rt60`` seconds, scaled so direct/reverberant energy is ``drr_db``.
    Deterministic for the generator's state."""
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive, got {rt60}")
    n = max(int(rt60 * length_factor * sr), 2)
    gap = min(int(rng.uniform(0.001, 0.008) * sr) + 1, n - 1)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    tail[:gap] = 0.0
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / max(float(np.sum(tail**2)), 1e-20))
    tail[0] = 1.0
    return tail.astype(np.float32)


def estimate_rt60(rir: np.ndarray, sr: int, hi_db: float = -5.0, lo_db: float = -25.0) -> float:
    """RT60 from an impulse response: Schroeder backward integration, line fit of the decay between
    ``hi_db`` and ``lo_db`` (T20 by default), extrapolated to 60 dB."""
    e = np.cumsum(np.asarray(rir, np.float64)[::-1] ** 2)[::-1]
    edc = 10.0 * np.log10(np.maximum(e / e[0], 1e-30))
    sel = (edc <= hi_db) & (edc >= lo_db)
    if sel.sum() < 2:
        raise ValueError("the impulse response does not decay through the fit range")
    slope = np.polyfit(np.nonzero(sel)[0] / sr, edc[sel], 1)[0]
    return float(-60.0 / slope)


def _fftconvolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = x.shape[0] + h.shape[0] - 1
    nfft = 1 << int(np.ceil(np.log2(max(n, 2))))
    return np.fft.irfft(np.fft.rfft(x, nfft) * np.fft.rfft(h, nfft), nfft)[:n]


def reverberate(
    audio: np.ndarray, sr: int, rng: np.random.Generator, rt60: float = 0.5, drr_db: float = 3.0
) -> np.ndarray:
    """Convolve with :func:`room_impulse_response` (direct path at lag 0, so no delay); the tail past the
    end is cut and the RMS level of the input kept."""
    x = _f32(audio)
    if x.size == 0:
        return x.copy()
    y = _fftconvolve(x.astype(np.float64), room_impulse_response(sr, rt60, rng, drr_db).astype(np.float64))
    y = y[: x.shape[0]]
    p_in, p_out = float(np.mean(x.astype(np.float64) ** 2)), float(np.mean(y**2))
    if p_out > 0:
        y *= np.sqrt(p_in / p_out)
    return y.astype(np.float32)


# ----------------------------------------------------------------------------------------------
# noise, level


def _smooth_random(n: int, sr: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """A random signal varying at about ``rate_hz`` (control points linearly interpolated)."""
    m = int(np.ceil(n / sr * rate_hz)) + 2
    pts = rng.standard_normal(m)
    return np.interp(np.arange(n) / sr * rate_hz, np.arange(m), pts)


def _shape_spectrum(x: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return np.fft.irfft(np.fft.rfft(x) * gain, n=x.shape[0])


def _pink(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    f = np.fft.rfftfreq(n, 1.0 / sr)
    return _shape_spectrum(rng.standard_normal(n), 1.0 / np.sqrt(np.maximum(f, 20.0)))


def _babble(n: int, sr: int, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    """Babble-like noise: ``talkers`` synthetic voices, each a saw-tooth glottal source with a drifting
    F0, cross-faded between four random formant (vowel) filters, gated by a ~4 Hz syllable envelope."""
    f = np.fft.rfftfreq(n, 1.0 / sr)
    out = np.zeros(n)
    for _ in range(talkers):
        f0 = rng.uniform(85.0, 250.0) * np.exp(0.08 * _smooth_random(n, sr, 3.0, rng))
        src = np.mod(np.cumsum(f0 / sr), 1.0) - 0.5
        spec = np.fft.rfft(src)
        vowels = []
        for _ in range(4):
            formants = rng.uniform([250, 800, 2000], [900, 2400, 3500])
            env = sum(np.exp(-0.5 * ((f - fc) / (60 + 0.06 * fc)) ** 2) for fc in formants) + 0.02
            vowels.append(np.fft.irfft(spec * env, n=n))
        w = np.exp(2.0 * np.stack([_smooth_random(n, sr, 6.0, rng) for _ in vowels]))
        voice = np.sum(np.stack(vowels) * (w / w.sum(axis=0)), axis=0)
        syll = np.maximum(_smooth_random(n, sr, 8.0, rng) + 0.3, 0.0) ** 2
        out += voice * syll
    return out


NOISE_TYPES = ("white", "pink", "babble")


def add_noise(
    audio: np.ndarray, sr: int, rng: np.random.Generator, snr_db: float = 20.0, kind: str = "white"
) -> np.ndarray:
    """Add ``kind`` noise (white, pink, babble) scaled so mean(signal^2) / mean(noise^2) is exactly ``snr_db``
    (powers over the whole clip, pauses included)."""
    if kind not in NOISE_TYPES:
        raise ValueError(f"noise kind must be one of {', '.join(NOISE_TYPES)}, got {kind!r}")
    x = _f32(audio).astype(np.float64)
    n = x.shape[0]
    if n == 0:
        return x.astype(np.float32)
    noise = rng.standard_normal(n) if kind == "white" else _pink(n, sr, rng) if kind == "pink" else _babble(n, sr, rng)
    p_sig, p_noise = float(np.mean(x**2)), float(np.mean(noise**2))
    if p_sig <= 0 or p_noise <= 0:
        return x.astype(np.float32)
    noise *= np.sqrt(p_sig / p_noise / 10.0 ** (snr_db / 10.0))
    return (x + noise).astype(np.float32)


def clip(audio: np.ndarray, sr: int, level: float = 0.5) -> np.ndarray:
    """Hard clipping at ``level`` x the peak (0 < level <= 1)."""
    x = _f32(audio)
    if not 0 < level <= 1:
        raise ValueError(f"clip level is a fraction of the peak in (0, 1], got {level}")
    t = level * float(np.abs(x).max()) if x.size else 0.0
    return np.clip(x, -t, t).astype(np.float32)


def gain(audio: np.ndarray, sr: int, db: float = 0.0) -> np.ndarray:
    """Level change by ``db`` decibels."""
    return (_f32(audio) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def dc_offset(audio: np.ndarray, sr: int, offset: float = 0.0) -> np.ndarray:
    """Add a constant ``offset`` (full scale = 1)."""
    return (_f32(audio) + np.float32(offset)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# the random chain


@dataclass
class ChannelConfig:
    """Probabilities and ranges of :func:`apply_random_channel` (uniform draws within each range)."""

    reverb_prob: float = 0.3
    rt60: tuple[float, float] = (0.15, 0.9)  # seconds
    drr_db: tuple[float, float] = (-2.0, 12.0)  # direct-to-reverberant energy ratio
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (5.0, 35.0)
    noise_types: tuple[str, ...] = NOISE_TYPES  # drawn uniformly
    # the channel: at most one of these, by probability mass (the rest of 1.0: wide-band, untouched)
    telephone_prob: float = 0.08  # 300-3400 Hz band, 8 kHz, G.711 mu-law or A-law
    narrowband_prob: float = 0.05  # 8 kHz and back only
    g711_prob: float = 0.05  # 8 kHz + G.711 (law drawn)
    gsm_prob: float = 0.06  # 8 kHz GSM (sox) or AMR-NB (PyAV)
    mp3_prob: float = 0.08
    opus_prob: float = 0.08
    aac_prob: float = 0.06
    amrnb_kbps: tuple[float, ...] = (4.75, 5.9, 7.4, 10.2, 12.2)
    mp3_kbps: tuple[int, ...] = (8, 16, 24, 32)
    opus_kbps: tuple[int, ...] = (6, 8, 12, 16, 24)
    aac_kbps: tuple[int, ...] = (12, 16, 24, 32)
    gain_db: tuple[float, float] = (-10.0, 4.0)
    dc_prob: float = 0.1
    dc: tuple[float, float] = (-0.03, 0.03)
    clip_prob: float = 0.08
    clip_level: tuple[float, float] = (0.3, 0.9)  # fraction of the peak

    def channel_probs(self) -> dict[str, float]:
        probs = {
            "telephone": self.telephone_prob,
            "narrowband": self.narrowband_prob,
            "g711": self.g711_prob,
            "gsm": self.gsm_prob,
            "mp3": self.mp3_prob,
            "opus": self.opus_prob,
            "aac": self.aac_prob,
        }
        if any(p < 0 for p in probs.values()) or sum(probs.values()) > 1.0 + 1e-9:
            raise ValueError(f"channel probabilities must be >= 0 and sum to at most 1, got {probs}")
        return probs


def _u(rng: np.random.Generator, lohi: tuple[float, float]) -> float:
    return float(rng.uniform(lohi[0], lohi[1]))


def apply_random_channel(
    audio: np.ndarray, sr: int, rng: np.random.Generator, cfg: ChannelConfig | None = None
) -> tuple[np.ndarray, dict]:
    """Room -> noise -> channel/codec -> gain -> DC -> clipping, each drawn from ``cfg``.

    Returns (float32 audio, same length and rate; what was done). The same number of random values is
    drawn whatever is chosen or installed, so (audio, generator state, cfg) fixes the result; an effect
    whose backend is missing is recorded under ``"skipped"`` with the reason and leaves the audio as is.
    """
    cfg = cfg or ChannelConfig()
    x = _f32(audio)
    n = x.shape[0]
    done: dict = {}
    # every draw up front, in a fixed order
    u = rng.random(5)  # reverb, noise, channel, dc, clip decisions
    rt60, drr = _u(rng, cfg.rt60), _u(rng, cfg.drr_db)
    room_seed = int(rng.integers(2**63))
    snr, kind = _u(rng, cfg.snr_db), cfg.noise_types[int(rng.integers(len(cfg.noise_types)))]
    noise_seed = int(rng.integers(2**63))
    law = ("mu", "a")[int(rng.integers(2))]
    pick = rng.random(4)  # bit-rate choices
    g, dc, level = _u(rng, cfg.gain_db), _u(rng, cfg.dc), _u(rng, cfg.clip_level)

    if u[0] < cfg.reverb_prob:
        x = reverberate(x, sr, np.random.default_rng(room_seed), rt60=rt60, drr_db=drr)
        done["reverb"] = {"rt60": round(rt60, 3), "drr_db": round(drr, 2)}
    if u[1] < cfg.noise_prob:
        x = add_noise(x, sr, np.random.default_rng(noise_seed), snr_db=snr, kind=kind)
        done["noise"] = {"kind": kind, "snr_db": round(snr, 2)}

    channel, edge = None, 0.0
    for name, p in cfg.channel_probs().items():
        edge += p
        if u[2] < edge:
            channel = name
            break
    if channel is not None:
        x, info = _channel(x, sr, channel, law, pick, cfg)
        done["channel" if "skipped" not in info else "skipped"] = info

    x = gain(x, sr, g)
    done["gain_db"] = round(g, 2)
    if u[3] < cfg.dc_prob:
        x = dc_offset(x, sr, dc)
        done["dc"] = round(dc, 4)
    if u[4] < cfg.clip_prob and np.any(x):
        x = clip(x, sr, level)
        done["clip"] = round(level, 3)
    return _fit(x, n), done


def _choose(options: tuple, r: float):
    return options[min(int(r * len(options)), len(options) - 1)]


def _channel(x: np.ndarray, sr: int, name: str, law: str, pick: np.ndarray, cfg: ChannelConfig) -> tuple:
    n = x.shape[0]
    if name == "telephone":
        x8 = g711(telephone_band(_resample(x, sr, 8000), 8000), 8000, law)
        return _fit(_resample(x8, 8000, sr), n), {"type": "telephone", "band": [300, 3400], "g711": law}
    if name == "narrowband":
        return narrowband(x, sr), {"type": "narrowband", "rate": 8000}
    if name == "g711":
        return _fit(_resample(g711(_resample(x, sr, 8000), 8000, law), 8000, sr), n), {"type": "g711", "law": law}
    if name == "gsm":
        backend, why = gsm_backend()
        kbps = _choose(cfg.amrnb_kbps, float(pick[0]))
        if backend is None:
            return x, {"skipped": "gsm", "reason": why}
        info = {"type": "gsm"} if backend == "sox" else {"type": "amrnb", "kbps": kbps}
        return gsm(x, sr, int(round(kbps * 1000))), info
    kbps = _choose(getattr(cfg, f"{name}_kbps"), float(pick[1 + ("mp3", "opus", "aac").index(name)]))
    if not codec_available(name):
        return x, {"skipped": name, "reason": f"PyAV has no {CODECS[name][1]} encoder"}
    return lossy_codec(x, sr, name, int(kbps * 1000)), {"type": name, "kbps": kbps}


# --------------------------------------------------------------------------- evaluation channels
#: Fixed (non-random) channels to score a model through (``l2t-gs eval --channel``): the same utterances
#: as the clean run, only the audio path changes.
EVAL_CHANNELS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "8k": narrowband,
    "telephone": lambda a, sr: g711(narrowband(telephone_band(a, sr), sr), sr, "mu"),
}


class ChannelDataset:
    """A map-style dataset whose clips' audio goes through one of :data:`EVAL_CHANNELS`."""

    def __init__(self, dataset: Any, channel: str) -> None:
        if channel not in EVAL_CHANNELS:
            raise L2TError(f"unknown channel {channel!r}; choose from {', '.join(EVAL_CHANNELS)}")
        self.dataset, self.channel = dataset, channel

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        clip = self.dataset[i]
        audio = clip.audio.detach().cpu().numpy().astype(np.float32)
        out = EVAL_CHANNELS[self.channel](audio, int(clip.audio_sr))
        return dataclasses.replace(clip, audio=torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)))
