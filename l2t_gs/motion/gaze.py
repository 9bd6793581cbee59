"""Gaze: fixations joined by saccades, with the eyes holding the camera against head motion.

* **Targets**: a fixation looks at the listener (the camera) with probability 0.6, else away by 4-12 deg in
  a random direction, mostly sideways; a phrase start (the end of a pause) begins with a look-away more
  often (speakers avert gaze when they start a turn: Kendon 1967). Small fixational jitter (0.3 deg) is
  added around each target.
* **Fixation durations**: log-normal, median 0.8 s, clipped to 0.25-3 s.
* **Saccades**: main-sequence duration ``21 ms + 2.2 ms/deg`` (Carpenter 1988), a smooth minimum-jerk
  step between fixations.
* **Vestibulo-ocular reflex**: the eye rotation is the gaze direction minus the head's pitch and yaw, so
  a fixation on the camera stays on it while the head moves; eye rotations are limited to +-25 deg.

The output is FLAME's ``eyes_pose`` [T, 6]: left then right eye, axis-angle (x: + looks down,
y: + looks to the avatar's left), both eyes equal.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SACCADE_MS", "gaze_track", "saccade_duration_s"]

SACCADE_MS = (21.0, 2.2)  # intercept (ms) and slope (ms/deg) of the main sequence
FIX_MEDIAN_S = 0.8
FIX_RANGE_S = (0.25, 3.0)
P_CAMERA = 0.6
_DEG = np.pi / 180.0
EYE_LIMIT_RAD = 25 * _DEG


def saccade_duration_s(amplitude_deg: np.ndarray) -> np.ndarray:
    """Saccade duration (s) for an amplitude (deg): the main sequence."""
    return (SACCADE_MS[0] + SACCADE_MS[1] * np.abs(amplitude_deg)) / 1000.0


def gaze_track(
    n_frames: int,
    fps: float,
    rng: np.random.Generator,
    head_rot: np.ndarray | None = None,
    phrase_starts: np.ndarray | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Eye rotations [T, 6] (radians). ``head_rot`` [T, 3]: the head's rotation (pitch, yaw used for the
    reflex); ``phrase_starts``: frames where speech resumes after a pause; ``scale`` scales the look-aways."""
    seconds = n_frames / fps
    starts = set() if phrase_starts is None else {round(float(f) / fps, 2) for f in phrase_starts}
    times, targets = [0.0], [np.zeros(2)]
    t = 0.0
    ps = sorted(starts)
    while t < seconds:
        dur = float(np.clip(FIX_MEDIAN_S * np.exp(0.5 * rng.normal()), *FIX_RANGE_S))
        nxt = t + dur
        # a phrase start within this fixation cuts it: the new fixation begins there, averted more often
        cut = [s for s in ps if t + FIX_RANGE_S[0] < s < nxt]
        p_cam = P_CAMERA
        if cut:
            nxt, p_cam = cut[0], 0.3
        if rng.uniform() < p_cam:
            tgt = np.zeros(2)
        else:
            ang = rng.uniform(0, 2 * np.pi)
            amp = rng.uniform(4.0, 12.0) * _DEG * scale
            tgt = np.array([0.5 * amp * np.sin(ang), amp * np.cos(ang)])  # [pitch, yaw], mostly sideways
        times.append(nxt)
        targets.append(tgt)
        t = nxt
    times_a, tg = np.asarray(times), np.stack(targets)  # fixation k starts at times[k]
    tt = np.arange(n_frames) / fps
    k = np.clip(np.searchsorted(times_a, tt, side="right") - 1, 0, len(times_a) - 1)
    prev = tg[np.maximum(k - 1, 0)]
    amp_deg = np.linalg.norm(tg[k] - prev, axis=1) / _DEG
    sd = saccade_duration_s(amp_deg)
    u = np.clip((tt - times_a[k]) / sd, 0, 1)
    mj = u**3 * (10 - 15 * u + 6 * u**2)  # minimum-jerk step
    gaze = prev + (tg[k] - prev) * mj[:, None]  # [T, 2]
    gaze = gaze + 0.3 * _DEG * scale * rng.normal(size=(len(times_a), 2))[k]  # fixational offsets
    if head_rot is not None:
        gaze = gaze - np.asarray(head_rot)[:, :2]
    gaze = np.clip(gaze, -EYE_LIMIT_RAD, EYE_LIMIT_RAD)
    out = np.zeros((n_frames, 6))
    out[:, [0, 3]] = gaze[:, :1]
    out[:, [1, 4]] = gaze[:, 1:2]
    return out
