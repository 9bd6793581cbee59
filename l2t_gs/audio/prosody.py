"""Prosody per video frame: loudness (dB), pitch (F0, Hz) and voicing, in vectorised numpy.

Analysis runs at 100 frames/s (10 ms hop, 40 ms Hann window) and is then sampled at the video frame
times ``i / fps``. Pitch is the lag of the largest normalised autocorrelation (computed with one FFT per
frame, divided by the autocorrelation of the window so that long lags are not penalised) in 60-400 Hz,
taking the shortest lag within 90% of the best peak (no octave-down errors), refined by a parabola; a
frame is voiced when that peak exceeds 0.5 and the frame is within 35 dB of the clip's loudest. This is
enough for prosody (stress and phrase ends), not a speech-grade pitch tracker. Blocks of 2048 analysis
frames keep memory bounded for hour-long audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Prosody", "prosody"]

_HOP_S, _WIN_S = 0.01, 0.04
_FMIN, _FMAX = 60.0, 400.0


@dataclass
class Prosody:
    """Per-frame prosody at ``fps``: ``energy_db`` [T] (RMS in dB re full scale), ``f0`` [T] (Hz, 0 where
    unvoiced), ``voiced`` [T] bool, ``speech`` [T] bool (within 35 dB of the loudest frame)."""

    fps: float
    energy_db: np.ndarray
    f0: np.ndarray
    voiced: np.ndarray
    speech: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.energy_db.shape[0])

    def log_f0_filled(self) -> np.ndarray:
        """log2 F0 [T] with unvoiced frames filled by linear interpolation (the clip median where none)."""
        lf = np.zeros(self.n_frames)
        v = self.voiced & (self.f0 > 0)
        if not v.any():
            return lf
        idx = np.arange(self.n_frames)
        lf = np.interp(idx, idx[v], np.log2(self.f0[v]))
        return lf


_BLOCK = 2048  # analysis frames per block: memory stays bounded for hour-long audio


def _frames(pad: np.ndarray, j0: int, j1: int, win: int, hop: int) -> np.ndarray:
    """Frames ``j0 .. j1`` [j1 - j0, win] (float64) of the already centred-and-padded signal ``pad``."""
    idx = np.arange(j0, j1)[:, None] * hop + np.arange(win)[None]
    return pad[idx].astype(np.float64)


def _analyse(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(energy dB [N], f0 Hz [N], peak normalised autocorrelation [N]) at 100 frames/s, N = S // hop + 1,
    frame ``j`` centred on sample ``j * hop``; computed in blocks of :data:`_BLOCK` frames."""
    hop, win = int(round(_HOP_S * sr)), int(round(_WIN_S * sr))
    pad = np.pad(np.asarray(audio, np.float32), (win // 2, win // 2 + hop))
    n = len(audio) // hop + 1
    parts = [_analyse_block(_frames(pad, j, min(j + _BLOCK, n), win, hop), sr) for j in range(0, n, _BLOCK)]
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def _analyse_block(fr: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(energy dB, f0, autocorrelation peak) [B] of frames ``fr`` [B, win]."""
    win = fr.shape[1]
    fr = fr - fr.mean(axis=1, keepdims=True)
    w = np.hanning(win)
    xw = fr * w[None]
    energy_db = 10.0 * np.log10(np.mean(fr**2, axis=1) + 1e-10)
    nfft = 1 << int(np.ceil(np.log2(2 * win)))
    spec = np.fft.rfft(xw, nfft, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, nfft, axis=1)[:, :win]  # [N, win]
    wac = np.fft.irfft(np.abs(np.fft.rfft(w, nfft)) ** 2, nfft)[:win]
    ac = ac / np.maximum(wac[None], 1e-9)
    nacf = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(sr / _FMAX), min(int(sr / _FMIN), win - 2)
    seg = nacf[:, lo : hi + 1]
    # the shortest lag within 90% of the best (avoids octave-down errors), then its local maximum
    first = np.argmax(seg >= 0.9 * seg.max(axis=1, keepdims=True), axis=1)
    near = np.clip(first[:, None] + np.arange(int(sr / _FMAX))[None], 0, seg.shape[1] - 1)
    k = near[np.arange(len(first)), np.argmax(np.take_along_axis(seg, near, axis=1), axis=1)]
    peak = seg[np.arange(len(k)), k]
    peak = np.where((k > 0) & (k < seg.shape[1] - 1), peak, 0.0)  # a peak at the range's edge is no pitch
    # parabolic refinement around the peak
    km, kp = np.clip(k - 1, 0, seg.shape[1] - 1), np.clip(k + 1, 0, seg.shape[1] - 1)
    a, b, c = seg[np.arange(len(k)), km], seg[np.arange(len(k)), k], seg[np.arange(len(k)), kp]
    den = a - 2 * b + c
    delta = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    lag = lo + k + np.clip(delta, -0.5, 0.5)
    f0 = sr / np.maximum(lag, 1e-9)
    return energy_db, f0, peak


def prosody(audio: np.ndarray, fps: float, n_frames: int | None = None, sr: int = 16000) -> Prosody:
    """Prosody of mono ``audio`` [S] at ``sr`` sampled at the video frame times ``i / fps``, i < ``n_frames``
    (default ``round(S / sr * fps)``)."""
    audio = np.asarray(audio, np.float32).reshape(-1)
    if n_frames is None:
        n_frames = int(round(len(audio) / sr * fps))
    energy_db, f0, peak = _analyse(audio, sr)
    speech_a = energy_db > energy_db.max() - 35.0
    voiced_a = speech_a & (peak > 0.5)
    t_a = np.arange(len(energy_db)) * _HOP_S
    t = np.arange(n_frames) / fps
    # energy: mean over the analysis frames within the video frame's span (nearest when finer)
    e = np.interp(t, t_a, energy_db)
    nearest = np.clip(np.round(t / _HOP_S).astype(int), 0, len(t_a) - 1)
    voiced = voiced_a[nearest]
    speech = speech_a[nearest]
    f0v = np.where(voiced, f0[nearest], 0.0)
    return Prosody(float(fps), e, f0v, voiced, speech)
