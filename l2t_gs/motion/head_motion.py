"""Procedural, prosody-coupled head motion: the corpus track the PoseVAE learns from (docs/life.md).

A head pose track is [T, 6]: rotation (axis-angle, radians; x = pitch, + nods the chin down; y = yaw,
+ turns to the avatar's left; z = roll) about the neck joint, then translation (metres). The speech-driven
parts are "powered" by the loudness envelope, so the head moves faster when the voice is louder and
pauses briefly on syllable onsets (Hadar et al. 1983; Busso et al. 2007; Esteve-Gibert et al. 2017):

* **loudness-driven strokes**: the angular velocity is ``STROKE_SPEED_DEG_S`` x the speech envelope
  (z-scored loudness smoothed by 80 ms, + 1, rectified, 0 in silence) along a slowly turning random
  direction (1/f, 0.05-1 Hz; yaw-dominant: axis weights 0.4 / 1 / 0.6), times an onset gate that drops
  the speed by 90 % within about 50 ms of each syllable onset (rectified loudness rise, peaks >= 0.2 s
  apart): the movement's apex (a kinematic beat) falls on the onset; integrated and high-passed (1.5 s)
  so the head returns to rest;
* **pitch coupling**: the head's pitch follows -1.5 deg per SD of log F0 (smoothed 0.15 s; the visual-
  prosody correlation of Yehia et al. 2002 / Munhall et al. 2004) at a rate of 10/s x the envelope x the
  gate (a first-order follower: it moves while the voice is loud);
* **phrase-final movements**: where speech stops for at least 0.25 s, a slow (sigma 0.2 s) nod or tilt
  of median 2.5 deg, centred 0.3 s into the pause (Hadar et al. 1983: movements at junctures);
* **drift**: 1/f noise per axis, 0.05-0.3 Hz for rotation (SD 0.36 / 0.8 / 0.32 deg) and 0.05-2 Hz for
  translation (1.5 / 1.0 / 1.5 mm), 60 % of that while silent.

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
    "onset_strength",
    "syllable_onsets",
    "speech_envelope",
    "onset_gate",
    "procedural_head_motion",
]

DRIFT_ROT_DEG = (0.36, 0.8, 0.32)
DRIFT_TRANS_MM = (1.5, 1.0, 1.5)
PHRASE_MEDIAN_DEG = 2.5
F0_COUPLING_DEG = 1.5
F0_FOLLOW_RATE = 10.0  # 1/s per unit of the speech envelope
STROKE_SPEED_DEG_S = 8.0  # angular speed per unit of the speech envelope
STROKE_AXES = (0.4, 1.0, 0.6)  # pitch / yaw / roll weights of the stroke direction
ONSET_GATE = (0.9, 0.05)  # depth and width (s) of the speed dip at syllable onsets
ENVELOPE_SMOOTH_S = 0.08
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


def onset_strength(p: Prosody) -> np.ndarray:
    """Onset strength [T] (dB per frame): the half-wave rectified rise of the loudness smoothed by 20 ms."""
    e = smooth(p.energy_db, p.fps, 0.02)
    return np.concatenate([[0.0], np.maximum(np.diff(e), 0.0)])


def syllable_onsets(p: Prosody, min_gap_s: float = 0.2, k_sd: float = 0.0) -> np.ndarray:
    """Frames of syllable onsets: onset-strength peaks at least ``min_gap_s`` apart above mean + ``k_sd``
    SD, in (or within about 50 ms of) speech."""
    on = onset_strength(p)
    idx = _local_max(on, max(1, int(round(min_gap_s * p.fps))))
    sp = smooth(p.speech.astype(float), p.fps, 0.05) > 0.2
    return idx[(on[idx] > on.mean() + k_sd * on.std()) & sp[idx]]


def speech_envelope(p: Prosody) -> np.ndarray:
    """Speech envelope [T] >= 0: loudness z-scored over speech frames, smoothed by 80 ms, plus 1 and
    rectified; 0 in silence. The head's speech-driven speed is proportional to it."""
    loud = np.where(p.speech, _z(p.energy_db, p.speech), -3.0)
    return np.maximum(smooth(loud, p.fps, ENVELOPE_SMOOTH_S) + 1.0, 0.0)


def onset_gate(p: Prosody, onsets: np.ndarray | None = None) -> np.ndarray:
    """Gate [T] in (0, 1]: 1 - depth x a Gaussian (width ``ONSET_GATE[1]``) of the distance to the nearest
    syllable onset; multiplies the speech-driven velocity so that the head pauses on onsets."""
    on = syllable_onsets(p) if onsets is None else np.asarray(onsets)
    n = p.n_frames
    if on.size == 0:
        return np.ones(n)
    f = np.arange(n)
    j = np.clip(np.searchsorted(on, f), 0, on.size - 1)
    dist = np.minimum(np.abs(f - on[j]), np.abs(f - on[np.maximum(j - 1, 0)])) / p.fps
    depth, width = ONSET_GATE
    return 1.0 - depth * np.exp(-0.5 * (dist / width) ** 2)


def _strokes(p: Prosody, env: np.ndarray, gate: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Loudness-driven rotation [T, 3] (rad): speed ``STROKE_SPEED_DEG_S`` x env x gate along a slowly
    turning random direction, integrated and high-passed (1.5 s)."""
    n, fps = p.n_frames, p.fps
    d = np.stack([pink_noise(n, fps, rng, fmin=0.05, fmax=1.0) for _ in range(3)], axis=1)
    d = d * np.asarray(STROKE_AXES)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6)  # unit direction: speed = env x gate
    vel = STROKE_SPEED_DEG_S * _DEG * (env * gate)[:, None] * d
    pos = np.cumsum(vel, axis=0) / fps
    return pos - smooth(pos, fps, 1.5)


def _follow(target: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """First-order follower [T]: x[i] = x[i-1] + rate[i] (target[i] - x[i-1]), x[-1] = 0 (rate in 0..1 per
    frame). A scalar recursion, O(T)."""
    out = np.empty_like(target)
    x = 0.0
    for i, (t, a) in enumerate(zip(target.tolist(), rate.tolist(), strict=True)):
        x += a * (t - x)
        out[i] = x
    return out


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
    env, gate = speech_envelope(p), onset_gate(p)
    # loudness-driven strokes, pausing on syllable onsets
    out[:, :3] += _strokes(p, env, gate, rng)
    # the head rises with pitch, moving while the voice is loud
    if p.voiced.sum() > 2:
        lf = smooth(p.log_f0_filled(), fps, 0.15)
        z = np.clip((lf - lf[p.voiced].mean()) / max(lf[p.voiced].std(), 0.05), -2.5, 2.5)
        rate = np.clip(F0_FOLLOW_RATE * env * gate / fps, 0.0, 1.0)
        out[:, 0] += _follow(-F0_COUPLING_DEG * _DEG * z, rate)
    # phrase-final nods or tilts, in the pause
    pe = phrase_ends(p)
    if pe.size:
        a = PHRASE_MEDIAN_DEG * np.exp(0.3 * rng.normal(size=pe.size)) * _DEG
        nod = rng.uniform(size=pe.size) < 0.6
        side = rng.choice([-1.0, 1.0], size=pe.size)
        amps = np.stack(
            [np.where(nod, a, 0.3 * a), np.where(nod, 0.2, 0.5) * a * side, np.where(nod, 0.0, a * side)], 1
        )
        out[:, :3] += _bumps(n, fps, pe / fps + 0.3, 0.2, amps)
    # drift, weaker while silent
    gain = 0.6 + 0.4 * smooth(p.speech.astype(float), fps, 0.2)
    sds = np.concatenate([np.asarray(DRIFT_ROT_DEG) * _DEG, np.asarray(DRIFT_TRANS_MM) * 1e-3])
    for k in range(6):
        out[:, k] += sds[k] * gain * pink_noise(n, fps, rng, fmax=0.3 if k < 3 else 2.0)
    return scale * out
