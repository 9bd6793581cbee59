"""Blinks of a speaking adult: timing, duration and lid shape (sources and numbers in docs/life.md).

* **Rate**: 26 blinks/min while speaking, 17/min at rest (Bentivoglio et al. 1997). Inter-blink
  intervals come from a gamma renewal process (shape 2: right-skewed, CV 0.71) run in *operational time*
  whose clock speed is the local rate, so the rate follows speech and silence.
* **Phrase boundaries**: half of the pauses of at least 0.25 s start with a blink 0-250 ms after the
  speech stops (blinks cluster at speech breakpoints: Nakano & Kitazawa 2010); the renewal rate is
  lowered so the total stays at the published rate. Blinks closer than 0.4 s to an earlier one are dropped.
* **Duration**: log-normal, median 0.2 s, clipped to 0.1-0.4 s (spontaneous blinks last 100-400 ms).
* **Lid shape**: the lid closes in the first third (raised cosine) and reopens, slower, over the remaining
  two thirds (down phase faster than up phase: Evinger et al. 1991); the closed apex falls on a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from l2t_gs.motion.extras import event_windows

__all__ = [
    "BLINK_RATE_SPEAKING",
    "BLINK_RATE_REST",
    "BLINK_DURATION_RANGE_S",
    "Blinks",
    "blink_events",
    "lid_curve",
]

BLINK_RATE_SPEAKING = 26.0  # per minute, Bentivoglio et al. 1997 (conversation)
BLINK_RATE_REST = 17.0  # per minute, same source (rest)
BLINK_DURATION_MEDIAN_S = 0.2
BLINK_DURATION_RANGE_S = (0.1, 0.4)
CLOSE_FRACTION = 1.0 / 3.0
GAMMA_SHAPE = 2.0
REFRACTORY_S = 0.4
PHRASE_BLINK_PROB = 0.5


@dataclass
class Blinks:
    """Blink events: ``start`` [K] (s, lid starts to close), ``duration`` [K] (s), ``depth`` [K] (peak lid
    closure, 1 = lids meet)."""

    start: np.ndarray
    duration: np.ndarray
    depth: np.ndarray

    def __len__(self) -> int:
        return int(self.start.size)


def _renewal_times(rate_per_s: np.ndarray, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Event times (s) of a unit-mean gamma renewal process run at the local rate ``rate_per_s`` [T]."""
    dt = 1.0 / fps
    op = np.concatenate([[0.0], np.cumsum(rate_per_s * dt)])  # operational time at frame edges
    total = op[-1]
    n_max = int(total * 2 + 10)
    gaps = rng.gamma(GAMMA_SHAPE, 1.0 / GAMMA_SHAPE, size=n_max)
    # stationary start: the first event after a uniform fraction of one interval
    ev = np.cumsum(gaps) - rng.uniform() * gaps[0]
    ev = ev[(ev >= 0) & (ev < total)]
    return np.interp(ev, op, np.arange(op.size) * dt)


def blink_events(
    speech: np.ndarray,
    fps: float,
    rng: np.random.Generator,
    phrase_ends: np.ndarray | None = None,
    rate_speaking: float = BLINK_RATE_SPEAKING,
    rate_rest: float = BLINK_RATE_REST,
) -> Blinks:
    """Blinks for a clip whose frames are speech where ``speech`` [T] is true; ``phrase_ends``: frames
    where a phrase stops (see :func:`l2t_gs.motion.head_motion.phrase_ends`)."""
    speech = np.asarray(speech, bool)
    n = speech.size
    seconds = n / fps
    pe = np.zeros(0) if phrase_ends is None else np.asarray(phrase_ends, float) / fps
    take = rng.uniform(size=pe.size) < PHRASE_BLINK_PROB
    phrase_t = pe[take] + rng.uniform(0.0, 0.25, size=pe.size)[take]
    phrase_t = phrase_t[phrase_t < seconds]
    # lower the renewal rate while speaking by the phrase blinks' share of the speaking-time rate
    speak_min = max(speech.sum() / fps / 60.0, 1e-6)
    r_speak = max(rate_speaking - phrase_t.size / speak_min, 0.5 * rate_speaking)
    rate = np.where(speech, r_speak, rate_rest) / 60.0
    times = np.sort(np.concatenate([_renewal_times(rate, fps, rng), phrase_t]))
    keep = []
    last = -np.inf
    for t in times:  # events, not frames: a short loop
        if t - last >= REFRACTORY_S:
            keep.append(t)
            last = t
    start = np.asarray(keep, float)
    lo, hi = BLINK_DURATION_RANGE_S
    dur = np.clip(BLINK_DURATION_MEDIAN_S * np.exp(0.25 * rng.normal(size=start.size)), lo, hi)
    depth = rng.uniform(0.92, 1.0, size=start.size)
    # the closed apex on a frame: move each blink by less than half a frame
    apex = start + CLOSE_FRACTION * dur
    start = start + (np.round(apex * fps) / fps - apex)
    return Blinks(start, dur, depth)


def lid_curve(blinks: Blinks, n_frames: int, fps: float) -> np.ndarray:
    """Lid closure [T] in 0..1 at the frame times (max over overlapping blinks)."""
    out = np.zeros(n_frames)
    if len(blinks) == 0:
        return out
    frames, d = event_windows(n_frames, fps, blinks.start, blinks.start + blinks.duration)  # [K, W]
    close = CLOSE_FRACTION * blinks.duration[:, None]
    opening = blinks.duration[:, None] - close
    down = 0.5 - 0.5 * np.cos(np.pi * np.clip(d / close, 0, 1))
    u = np.clip((d - close) / opening, 0, 1)
    up = (1.0 - u) ** 2 * (1.0 + 2.0 * u)  # smooth, slower reopening (cubic ease)
    shape = np.nan_to_num(np.where(d < close, down, up)) * blinks.depth[:, None]
    np.maximum.at(out, frames, shape)
    return out
