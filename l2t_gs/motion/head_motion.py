"""Procedural, prosody-coupled head motion: the corpus track the PoseVAE learns from (docs/life.md).

A head pose track is [T, 6]: rotation (axis-angle, radians; x = pitch, + nods the chin down; y = yaw,
+ turns to the avatar's left; z = roll) about the neck joint, then translation (metres). It is the sum of

* **stress nods**: at prominence peaks (loudness and pitch above the clip's typical values, at least
  0.25 s apart) the chin dips by a log-normal amplitude (median 1.6 deg times the peak's prominence,
  clipped to 0.5-2) in a Gaussian bump (sigma 0.12
  s) peaking 50 ms before the acoustic peak, with small random yaw/roll companions (Hadar et al. 1983:
  movements on stressed syllables);
* **phrase-final movements**: where speech stops for at least 0.25 s, a slower (sigma 0.25 s) nod or
  tilt of median 2.5 deg (Hadar et al. 1983: movements at junctures);
* **pitch coupling**: the head rises with the smoothed F0 (1.2 deg per SD of log F0), the
  visual-prosody correlation of Yehia et al. 2002 / Munhall et al. 2004;
* **drift**: 1/f ("pink") noise per axis, 0.05-2 Hz, SD 0.9 / 2.0 / 0.8 deg (pitch / yaw / roll) and
  1.5 / 1.0 / 1.5 mm, 60% of that while silent.

Every part is deterministic for a ``numpy.random.Generator``; ``scale`` multiplies the whole track.
"""

from __future__ import annotations

import numpy as np

from l2t_gs.audio.prosody import Prosody
from l2t_gs.motion.extras import event_windows

__all__ = [
    "DRIFT_ROT_DEG",
    "DRIFT_TRANS_MM",
    "pink_noise",
    "prominence",
    "stress_peaks",
    "phrase_ends",
    "smooth",
    "procedural_head_motion",
]

DRIFT_ROT_DEG = (0.9, 2.0, 0.8)
DRIFT_TRANS_MM = (1.5, 1.0, 1.5)
NOD_MEDIAN_DEG = 1.6
PHRASE_MEDIAN_DEG = 2.5
F0_COUPLING_DEG = 1.2
_DEG = np.pi / 180.0


def smooth(x: np.ndarray, fps: float, sigma_s: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (edges reflected)."""
    s = sigma_s * fps
    if s <= 0.3:
        return np.asarray(x, np.float64).copy()
    r = int(np.ceil(3 * s))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
    k /= k.sum()
    xp = np.pad(np.asarray(x, np.float64), [(r, r)] + [(0, 0)] * (np.ndim(x) - 1), mode="reflect")
    if xp.ndim == 1:
        return np.convolve(xp, k, mode="valid")
    return np.stack([np.convolve(xp[:, i], k, mode="valid") for i in range(xp.shape[1])], axis=1)


def pink_noise(n: int, fps: float, rng: np.random.Generator, fmin: float = 0.05, fmax: float = 2.0) -> np.ndarray:
    """Unit-SD noise [n] with a 1/f power spectrum between ``fmin`` and ``fmax`` Hz (zero outside)."""
    m = max(2 * n, 64)
    f = np.fft.rfftfreq(m, 1.0 / fps)
    amp = np.where((f >= fmin) & (f <= fmax), 1.0 / np.sqrt(np.maximum(f, 1e-6)), 0.0)
    spec = amp * (rng.normal(size=f.size) + 1j * rng.normal(size=f.size))
    x = np.fft.irfft(spec, m)[:n]
    sd = x.std()
    return x / sd if sd > 0 else x


def _z(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if mask.sum() < 2:
        return np.zeros_like(x)
    m, s = x[mask].mean(), x[mask].std()
    return (x - m) / max(s, 1e-6)


def prominence(p: Prosody) -> np.ndarray:
    """Prosodic prominence [T]: z-scored loudness plus z-scored log F0 (voiced frames), smoothed by 60 ms,
    zero outside speech."""
    e = _z(p.energy_db, p.speech)
    lf = p.log_f0_filled()
    f = np.where(p.voiced, _z(lf, p.voiced), 0.0)
    return np.where(p.speech, smooth(e + 0.7 * f, p.fps, 0.06), 0.0)


def _local_max(x: np.ndarray, min_gap: int) -> np.ndarray:
    """Indices of maxima of ``x`` over a +-``min_gap`` neighbourhood (first of ties)."""
    n = len(x)
    if n == 0:
        return np.zeros(0, int)
    pad = np.pad(x, min_gap, constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * min_gap + 1)  # [n, 2g+1]
    is_max = x >= win.max(axis=1)
    idx = np.flatnonzero(is_max)
    if idx.size:  # plateaus: keep the first index of each run
        idx = idx[np.concatenate([[True], np.diff(idx) > 1])]
    return idx


def stress_peaks(p: Prosody, min_gap_s: float = 0.25, threshold: float = 0.2) -> np.ndarray:
    """Frames of prominence peaks above ``threshold`` at least ``min_gap_s`` apart (stressed syllables)."""
    pr = prominence(p)
    idx = _local_max(pr, max(1, int(round(min_gap_s * p.fps))))
    return idx[pr[idx] > threshold]


def phrase_ends(p: Prosody, min_pause_s: float = 0.25) -> np.ndarray:
    """Frames where speech stops for at least ``min_pause_s`` (or the clip ends): phrase boundaries."""
    sp = smooth(p.speech.astype(float), p.fps, 0.03) > 0.5
    if not sp.any():
        return np.zeros(0, int)
    ends = np.flatnonzero(sp[:-1] & ~sp[1:]) + 1
    gap = max(1, int(round(min_pause_s * p.fps)))
    keep = [e for e in ends if not sp[e : e + gap].any()]
    if sp[-1]:
        keep.append(len(sp) - 1)
    return np.asarray(keep, int)


def _bumps(n: int, fps: float, centres_s: np.ndarray, sigma_s: float, amps: np.ndarray) -> np.ndarray:
    """Sum of Gaussian bumps [n, D] centred at ``centres_s`` [K] with amplitudes ``amps`` [K, D] (each
    evaluated within 5 sigma of its centre)."""
    out = np.zeros((n, amps.shape[1]))
    if centres_s.size == 0:
        return out
    frames, dt = event_windows(n, fps, centres_s - 5 * sigma_s, centres_s + 5 * sigma_s)
    g = np.nan_to_num(np.exp(-0.5 * ((dt - 5 * sigma_s) / sigma_s) ** 2))  # [K, W]
    np.add.at(out, frames, g[:, :, None] * amps[:, None, :])
    return out


def procedural_head_motion(p: Prosody, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Head pose [T, 6] (rotation rad, translation m) for prosody ``p``; see the module docstring."""
    n, fps = p.n_frames, p.fps
    out = np.zeros((n, 6))
    # stress nods
    pk = stress_peaks(p)
    if pk.size:
        strength = np.clip(prominence(p)[pk], 0.5, 2.0)  # stronger stress, larger nod
        a = NOD_MEDIAN_DEG * strength * np.exp(0.35 * rng.normal(size=pk.size)) * _DEG
        amps = np.stack([a, 0.3 * a * rng.normal(size=pk.size), 0.25 * a * rng.normal(size=pk.size)], axis=1)
        out[:, :3] += _bumps(n, fps, pk / fps - 0.05, 0.12, amps)
    # phrase-final nods or tilts
    pe = phrase_ends(p)
    if pe.size:
        a = PHRASE_MEDIAN_DEG * np.exp(0.3 * rng.normal(size=pe.size)) * _DEG
        nod = rng.uniform(size=pe.size) < 0.6
        side = rng.choice([-1.0, 1.0], size=pe.size)
        amps = np.stack(
            [np.where(nod, a, 0.3 * a), np.where(nod, 0.2, 0.5) * a * side, np.where(nod, 0.0, a * side)], 1
        )
        out[:, :3] += _bumps(n, fps, pe / fps + 0.1, 0.25, amps)
    # the head rises with pitch
    lf = smooth(p.log_f0_filled(), fps, 0.15)
    sp = smooth(p.speech.astype(float), fps, 0.2)
    if p.voiced.sum() > 2:
        z = (lf - lf[p.voiced].mean()) / max(lf[p.voiced].std(), 0.05)
        out[:, 0] -= F0_COUPLING_DEG * _DEG * np.clip(z, -2.5, 2.5) * sp
    # drift, weaker while silent
    gain = 0.6 + 0.4 * sp
    sds = np.concatenate([np.asarray(DRIFT_ROT_DEG) * _DEG, np.asarray(DRIFT_TRANS_MM) * 1e-3])
    for k in range(6):
        out[:, k] += sds[k] * gain * pink_noise(n, fps, rng)
    return scale * out
