"""Statistics of generated head motion, blinks and gaze against reference distributions (``l2t-gs eval-motion``).

Definitions (docs/life.md has the sources of the reference ranges):

* **amplitude**: per-axis SD of the rotation (deg) and translation (mm);
* **velocity**: mean angular speed (deg/s) and the share of angular-velocity power per band
  (< 0.5 Hz, 0.5-2 Hz, 2-5 Hz), the spectrum's centroid (Hz);
* **prosody coupling**: Pearson r between the smoothed angular speed and loudness (speech frames), and
  between the head's pitch (chin up = +) and log F0 (voiced frames);
* **beat alignment** (BA, as Bailando's for dance and DiffPoseTalk's for head pose): audio beats are peaks
  of the onset strength (half-wave rectified rise of the smoothed loudness, local maxima at least 0.2 s
  apart above mean + 0.5 SD, in speech), motion beats are local minima of the smoothed angular speed
  (kinematic beats, 0.2 s apart); ``BA = mean over audio beats of exp(-d^2 / (2 sigma^2))`` with ``d`` the
  distance (s) to the nearest motion beat and ``sigma = 0.1 s``. Its chance level
  (:func:`beat_alignment_chance`) is the mean BA of the same motion beats against the audio beats shifted
  circularly by 20 offsets spread evenly over the clip (at least 1 s from zero): same beat rates, no
  timing relation;
* **diversity**: average pairwise distance (APD) between samples of different seeds: the mean over
  pairs of the RMS rotation difference (deg);
* **blinks**: rate per minute and duration (s) of lid-closure runs above 0.05 (frames + 1, / fps);
* **gaze**: saccades per minute (onsets of eye-in-head speed above 40 deg/s) and the median interval
  between them (fixation duration, s).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from l2t_gs.audio.prosody import Prosody
from l2t_gs.motion.head_motion import onset_strength, smooth

__all__ = [
    "BA_SIGMA_S",
    "REFERENCE_RANGES",
    "audio_beats",
    "beat_alignment",
    "beat_alignment_chance",
    "blink_stats",
    "diversity",
    "gaze_stats",
    "head_stats",
    "motion_beats",
    "prosody_coupling",
]

BA_SIGMA_S = 0.1
#: Published ranges the generated statistics are checked against (docs/life.md gives the sources).
REFERENCE_RANGES: dict[str, tuple[float, float]] = {
    "rot_sd_deg_max": (1.0, 6.0),  # the largest per-axis rotation SD during speech
    "mean_ang_speed_deg_s": (2.0, 20.0),
    "power_below_2hz": (0.6, 1.0),  # share of angular-velocity power below 2 Hz
    "blink_rate_per_min": (15.0, 35.0),  # speaking: 26/min (Bentivoglio et al. 1997)
    "blink_duration_s": (0.1, 0.4),
}
_DEG = 180.0 / np.pi


def _local_extrema(x: np.ndarray, gap: int, minima: bool = False) -> np.ndarray:
    y = -x if minima else x
    pad = np.pad(y, gap, constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * gap + 1)
    idx = np.flatnonzero(y >= win.max(axis=1))
    if idx.size:
        idx = idx[np.concatenate([[True], np.diff(idx) > 1])]
    return idx


def head_stats(pose: np.ndarray, fps: float) -> dict[str, float]:
    """Amplitude and velocity statistics of a head pose track [T, 6] (rad, m)."""
    rot = pose[:, :3] * _DEG
    vel = np.diff(rot, axis=0) * fps  # deg/s [T-1, 3]
    speed = np.linalg.norm(vel, axis=1)
    f = np.fft.rfftfreq(vel.shape[0], 1.0 / fps)
    pw = (np.abs(np.fft.rfft(vel - vel.mean(0), axis=0)) ** 2).sum(axis=1)
    tot = max(pw[1:].sum(), 1e-12)
    out = {f"rot_sd_deg_{a}": float(rot[:, i].std()) for i, a in enumerate("xyz")}
    out.update({f"trans_sd_mm_{a}": float(pose[:, 3 + i].std() * 1000) for i, a in enumerate("xyz")})
    out["rot_sd_deg_max"] = max(out[f"rot_sd_deg_{a}"] for a in "xyz")
    out["mean_ang_speed_deg_s"] = float(speed.mean()) if speed.size else 0.0
    out["power_below_0.5hz"] = float(pw[(f > 0) & (f < 0.5)].sum() / tot)
    out["power_below_2hz"] = float(pw[(f > 0) & (f < 2.0)].sum() / tot)
    out["power_2_5hz"] = float(pw[(f >= 2.0) & (f < 5.0)].sum() / tot)
    out["spectral_centroid_hz"] = float((f[1:] * pw[1:]).sum() / tot)
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def prosody_coupling(pose: np.ndarray, p: Prosody) -> dict[str, float]:
    """Pearson r of the smoothed angular speed with loudness (speech frames) and of the head's pitch
    (chin up positive) with log F0 (voiced frames)."""
    rot = pose[:, :3] * _DEG
    speed = np.concatenate([[0.0], np.linalg.norm(np.diff(rot, axis=0), axis=1) * p.fps])
    speed = smooth(speed, p.fps, 0.1)
    sp, v = p.speech, p.voiced
    up = smooth(-rot[:, 0], p.fps, 0.05)
    return {
        "r_speed_energy": _pearson(speed[sp], p.energy_db[sp]),
        "r_pitchrot_f0": _pearson(up[v], np.log2(np.maximum(p.f0[v], 1.0))),
    }


def audio_beats(p: Prosody, min_gap_s: float = 0.2) -> np.ndarray:
    """Audio beat times (s): onset-strength peaks in speech (see the module docstring)."""
    onset = onset_strength(p)
    idx = _local_extrema(onset, max(1, int(round(min_gap_s * p.fps))))
    thr = onset.mean() + 0.5 * onset.std()
    sp = smooth(p.speech.astype(float), p.fps, 0.05) > 0.2
    return idx[(onset[idx] > thr) & sp[idx]] / p.fps


def motion_beats(pose: np.ndarray, fps: float, min_gap_s: float = 0.2) -> np.ndarray:
    """Motion beat times (s): local minima of the smoothed angular speed (kinematic beats)."""
    rot = pose[:, :3] * _DEG
    speed = np.concatenate([[0.0], np.linalg.norm(np.diff(rot, axis=0), axis=1) * fps])
    speed = smooth(speed, fps, 0.04)
    idx = _local_extrema(speed, max(1, int(round(min_gap_s * fps))), minima=True)
    return idx[(idx > 0) & (idx < len(speed) - 1)] / fps


def beat_alignment(audio_t: np.ndarray, motion_t: np.ndarray, sigma: float = BA_SIGMA_S) -> float:
    """BA = mean over audio beats of exp(-(distance to the nearest motion beat)^2 / (2 sigma^2))."""
    if audio_t.size == 0 or motion_t.size == 0:
        return float("nan")
    d = np.abs(np.asarray(audio_t)[:, None] - np.asarray(motion_t)[None]).min(axis=1)
    return float(np.exp(-(d**2) / (2 * sigma**2)).mean())


def beat_alignment_chance(
    audio_t: np.ndarray, motion_t: np.ndarray, duration_s: float, n_shifts: int = 20, min_shift_s: float = 1.0,
    sigma: float = BA_SIGMA_S,
) -> float:  # fmt: skip
    """Chance level of :func:`beat_alignment`: its mean over ``n_shifts`` circular shifts of the audio beats,
    evenly spread over ``min_shift_s .. duration_s - min_shift_s`` (NaN for clips under 2 x that)."""
    if duration_s <= 2 * min_shift_s or np.size(audio_t) == 0:
        return float("nan")
    shifts = np.linspace(min_shift_s, duration_s - min_shift_s, n_shifts)
    a = np.asarray(audio_t, np.float64)
    return float(np.mean([beat_alignment(np.sort((a + s) % duration_s), motion_t, sigma) for s in shifts]))


def diversity(poses: list[np.ndarray]) -> float:
    """Average pairwise distance: mean over pairs of samples of the RMS rotation difference (deg)."""
    pairs = list(combinations(range(len(poses)), 2))
    if not pairs:
        return float("nan")
    d = [np.sqrt((((poses[i][:, :3] - poses[j][:, :3]) * _DEG) ** 2).sum(axis=1).mean()) for i, j in pairs]
    return float(np.mean(d))


def blink_stats(lid: np.ndarray, fps: float, speech: np.ndarray | None = None) -> dict[str, Any]:
    """Blink count, rate per minute and durations (s) from a lid-closure curve [T]."""
    on = np.asarray(lid) > 0.05
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    dur = (ends - starts + 1) / fps
    minutes = len(lid) / fps / 60.0
    out: dict[str, Any] = {
        "blinks": int(starts.size),
        "blink_rate_per_min": float(starts.size / max(minutes, 1e-9)),
        "blink_duration_s": float(dur.mean()) if dur.size else float("nan"),
        "blink_duration_min_s": float(dur.min()) if dur.size else float("nan"),
        "blink_duration_max_s": float(dur.max()) if dur.size else float("nan"),
    }
    if speech is not None and np.asarray(speech).any():
        sp = np.asarray(speech, bool)
        out["blink_rate_speaking_per_min"] = float(sp[starts].sum() / (sp.sum() / fps / 60.0))
    return out


def gaze_stats(eyes: np.ndarray, fps: float) -> dict[str, float]:
    """Saccade rate (/min) and median inter-saccade interval (s) of eye rotations [T, 6] (left eye used)."""
    speed = np.concatenate([[0.0], np.linalg.norm(np.diff(eyes[:, :3], axis=0), axis=1) * fps * _DEG])
    fast = speed > 40.0
    onsets = np.flatnonzero(fast[1:] & ~fast[:-1]) + 1
    minutes = len(eyes) / fps / 60.0
    gaps = np.diff(onsets) / fps
    return {
        "saccades_per_min": float(onsets.size / max(minutes, 1e-9)),
        "fixation_median_s": float(np.median(gaps)) if gaps.size else float("nan"),
    }


def in_range(stats: dict[str, float]) -> dict[str, bool]:
    """For each statistic with a :data:`REFERENCE_RANGES` entry: whether it lies in that range."""
    return {k: bool(lo <= stats[k] <= hi) for k, (lo, hi) in REFERENCE_RANGES.items() if k in stats}


def evaluate_motion(
    clips: list[np.ndarray], *, head_motion: str = "natural", seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    fps: float = 25.0, motion_scale: float = 1.0, temperature: float = 1.0,
) -> dict[str, Any]:  # fmt: skip
    """Statistics of the generated life (``head_motion``: natural or procedural, blinks on) for 16 kHz
    ``clips``, per seed averaged over clips, next to the procedural corpus generator's (the reference
    distribution the PoseVAE learnt) and the published ranges; plus BA and its chance level
    (:func:`beat_alignment_chance`), and the diversity across seeds."""
    from l2t_gs.audio.prosody import prosody
    from l2t_gs.models.life import life_track
    from l2t_gs.motion.life import LifeConfig

    def stats_for(kind: str) -> dict[str, Any]:
        rows, poses_by_clip = [], [[] for _ in clips]
        ba, ba_chance = [], []
        for s in seeds:
            for ci, audio in enumerate(clips):
                n = int(round(len(audio) / 16000 * fps))
                p = prosody(audio, fps, n)
                tr = life_track(audio, n, fps, LifeConfig(kind, "on", motion_scale, s, temperature))
                poses_by_clip[ci].append(tr.head)
                st = head_stats(tr.head, fps)
                st.update(prosody_coupling(tr.head, p))
                st.update({k: v for k, v in blink_stats(tr.lid, fps, p.speech).items() if isinstance(v, float)})
                st.update(gaze_stats(tr.eyes, fps))
                rows.append(st)
                ab, mb = audio_beats(p), motion_beats(tr.head, fps)
                ba.append(beat_alignment(ab, mb))
                ba_chance.append(beat_alignment_chance(ab, mb, n / fps))
        keys = rows[0].keys()
        agg = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
        agg["beat_alignment"] = float(np.nanmean(ba))
        agg["beat_alignment_chance"] = float(np.nanmean(ba_chance))
        agg["diversity_apd_deg"] = float(np.nanmean([diversity(ps) for ps in poses_by_clip]))
        agg["in_reference_range"] = in_range(agg)
        return agg

    out = {"generated": stats_for(head_motion), "seeds": list(seeds), "clips": len(clips), "fps": fps}
    out["seconds"] = float(sum(len(a) for a in clips) / 16000)
    if head_motion != "procedural":
        out["reference_procedural"] = stats_for("procedural")
    out["reference_ranges"] = {k: list(v) for k, v in REFERENCE_RANGES.items()}
    out["ba_sigma_s"] = BA_SIGMA_S
    return out
