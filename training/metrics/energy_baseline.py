"""Audio-energy lip-gap baseline: the loudness of the speech mapped to a lip opening (pure numpy).

The trivial predictor a speech-to-lips model has to beat: open the mouth when the audio is loud,
close it when it is quiet. Per motion frame ``t`` (time ``t / fps``):

1. ``rms[t]``: root mean square of the audio samples in the one-frame window centred on ``t / fps``
   (``[t/fps - 0.5/fps, t/fps + 0.5/fps)``, zero outside the audio);
2. ``db[t] = 20 log10(rms[t] + 1e-8)`` (dBFS);
3. per-clip normalisation: ``rel[t] = db[t] - max(p95(db), ABS_REF_DB)``, the level relative to the
   clip's loud frames (95th percentile); the absolute floor :data:`ABS_REF_DB` keeps a silent clip silent;
4. ``gap[t] = MAX_OPEN_MM * clip((rel[t] - FLOOR_DB) / RANGE_DB, 0, 1)`` mm: closed (0 mm) at or
   below :data:`FLOOR_DB` dB under the loud level, fully open :data:`MAX_OPEN_MM` at ``FLOOR_DB + RANGE_DB``.

The constants were fit once (least squares of the gap curve, grid over floor/range with the best
scale, on the training split of a ``l2t-gs data synth --minutes 3 --seed 5`` corpus: its
ground-truth lip gap of the built-in head against its TTS audio; 40 clips, 3864 frames: mean squared
error 22.1 mm^2 against a variance of 37.9 mm^2) and are fixed; the baseline sees no phones and no
motion. With them a frame at the clip's loud level (p95) opens about 13 mm. It is scored with the
same functions as a model (:mod:`l2t_gs.training.metrics.lipsync`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ABS_REF_DB", "FLOOR_DB", "MAX_OPEN_MM", "RANGE_DB", "energy_gap_mm", "frame_rms_db"]

#: Lowest reference level (dBFS) of the per-clip normalisation: quieter clips are not amplified.
ABS_REF_DB = -50.0
#: Level (dB relative to the clip's 95th percentile) at or below which the lips are closed.
FLOOR_DB = -43.0
#: dB above the floor over which the opening rises linearly to its maximum.
RANGE_DB = 49.0
#: Maximum opening (mm).
MAX_OPEN_MM = 14.9


def frame_rms_db(audio: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """Per-frame RMS level (dBFS) of ``audio`` over a one-frame window centred on each frame time: [n_frames]."""
    a = np.asarray(audio, dtype=np.float64).ravel()
    hop = sr / fps
    centres = np.arange(int(n_frames)) * hop
    lo = np.clip(np.round(centres - 0.5 * hop).astype(np.int64), 0, a.size)
    hi = np.clip(np.round(centres + 0.5 * hop).astype(np.int64), 0, a.size)
    csum = np.concatenate([[0.0], np.cumsum(a * a)])
    width = max(int(round(hop)), 1)  # samples past the audio count as zeros
    rms = np.sqrt(np.maximum(csum[hi] - csum[lo], 0.0) / width)
    return 20.0 * np.log10(rms + 1e-8)


def energy_gap_mm(
    audio: np.ndarray,
    sr: int,
    fps: float,
    n_frames: int,
    *,
    floor_db: float = FLOOR_DB,
    range_db: float = RANGE_DB,
    max_open_mm: float = MAX_OPEN_MM,
    abs_ref_db: float = ABS_REF_DB,
) -> np.ndarray:
    """The baseline's lip gap (mm) per motion frame: [n_frames] (see the module docstring)."""
    db = frame_rms_db(audio, sr, fps, n_frames)
    if db.size == 0:
        return db
    ref = max(float(np.percentile(db, 95)), abs_ref_db)
    return max_open_mm * np.clip((db - ref - floor_db) / range_db, 0.0, 1.0)
