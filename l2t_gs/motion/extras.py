"""Non-speech motion as separable additive tracks: blinks, brow raises and slight head motion.

Each function returns parameters to *add* to an articulated track (they only touch ``blink_*``,
``brow_raise`` and ``neck_pose``, which articulation leaves at zero), so ``speech + extras`` keeps the
speech exactly. Everything is deterministic for a seed (``numpy.random.default_rng``).

* :func:`blink_curve`: both eyes, every 2-6 s (uniform), about 150 ms each: a fast close (40%) and a
  slower opening (60%), peak 1 (lids meet).
* :func:`brow_curve`: slight raises (0.25-0.4, 0.5 s) on emphasis times: stressed vowels (stress digit
  1 on the input phones), else the longest vowels (a proxy for stress, about 1 in 6), each taken with
  probability 0.5; plus rare random ones (every 6-14 s).
* :func:`head_motion`: neck pose [T, 3], a sum of slow sinusoids (0.07-0.5 Hz, random phases) per axis,
  a few hundredths of a radian: pitch (nod), yaw (turn), roll (tilt).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from l2t_gs.motion.articulation import RigTrack, Segments, prepare_segments

__all__ = [
    "BLINK_INTERVAL_S",
    "BLINK_DURATION_S",
    "blink_curve",
    "brow_curve",
    "head_motion",
    "emphasis_times",
    "extras_track",
    "add_extras",
    "event_windows",
]

BLINK_INTERVAL_S = (2.0, 6.0)
BLINK_DURATION_S = 0.15
_VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"})


def _event_times(rng: np.random.Generator, duration: float, lo: float, hi: float, first: float) -> np.ndarray:
    """Event times in [0, duration): the first uniform in [first, lo], then gaps uniform in [lo, hi]."""
    n_max = int(duration / lo) + 2
    gaps = rng.uniform(lo, hi, size=n_max)
    times = rng.uniform(first, lo) + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    return times[times < duration]


def _pulses(n_frames: int, fps: float, times: np.ndarray, width: float, rise: float = 0.5) -> np.ndarray:
    """Sum (clipped to 1) of smooth pulses starting at ``times``: raised-cosine rise over ``rise * width``,
    fall over the rest. [T]."""
    t = np.arange(n_frames) / fps
    if times.size == 0:
        return np.zeros(n_frames)
    d = t[:, None] - times[None]  # [T, K]
    up = np.clip(d / (rise * width), 0.0, 1.0)
    down = np.clip((width - d) / ((1.0 - rise) * width), 0.0, 1.0)
    shape = np.where(d < rise * width, 0.5 - 0.5 * np.cos(np.pi * up), 0.5 - 0.5 * np.cos(np.pi * down))
    shape = np.where((d >= 0) & (d <= width), shape, 0.0)
    return np.clip(shape.sum(axis=1), 0.0, 1.0)


def event_windows(n_frames: int, fps: float, start_s: np.ndarray, stop_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frames each event touches, for sparse evaluation of event curves (memory O(events), not
    O(frames x events)): ``(frames [K, W], dt [K, W])`` with the frame indices from the first frame at or
    after ``start_s`` to the last at or before ``stop_s`` (W the longest span; shorter rows repeat a frame
    outside 0..T-1 clipped to it with ``dt`` = NaN), and ``dt`` the time since the event's start (s)."""
    start_s, stop_s = np.asarray(start_s, np.float64), np.asarray(stop_s, np.float64)
    first = np.ceil(start_s * fps - 1e-9).astype(np.int64)
    last = np.floor(stop_s * fps + 1e-9).astype(np.int64)
    w = int(max(1, (last - first).max(initial=0) + 1))
    frames = first[:, None] + np.arange(w)[None]
    dt = frames / fps - start_s[:, None]
    bad = (frames > last[:, None]) | (frames < 0) | (frames >= n_frames)
    return np.clip(frames, 0, max(n_frames - 1, 0)), np.where(bad, np.nan, dt)


def blink_curve(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Blink amount [T] in 0..1 (1: lids closed)."""
    lo, hi = BLINK_INTERVAL_S
    times = _event_times(rng, n_frames / fps, lo, hi, first=0.5)
    return _pulses(n_frames, fps, times, BLINK_DURATION_S, rise=0.4)


def emphasis_times(segments: Sequence | Segments) -> np.ndarray:
    """Centres (s) of emphasised vowels: stress 1 where the phones carry stress digits, else the
    vowels at least 1.4 times as long as the median vowel."""
    seg = segments if isinstance(segments, Segments) else prepare_segments(segments)
    vowel = np.array([p in _VOWELS for p in seg.phones])
    if not vowel.any():
        return np.zeros(0)
    # diphthongs are two entries: merge them back by taking each phone's first entry
    first = np.ones(len(seg.phones), bool)
    first[1:] = ~((np.array(seg.phones[1:]) == np.array(seg.phones[:-1])) & (seg.start[1:] == seg.end[:-1]))
    starts, ends = seg.start.copy(), seg.end.copy()
    for i in range(len(seg.phones) - 2, -1, -1):  # extend the first entry over its continuation
        if not first[i + 1]:
            ends[i] = ends[i + 1]
    keep = vowel & first
    if (seg.stress[keep] >= 0).any():
        sel = keep & (seg.stress == 1)
    else:
        dur = ends - starts
        sel = keep & (dur >= 1.4 * np.median(dur[keep]))
    return 0.5 * (starts[sel] + ends[sel])


def brow_curve(n_frames: int, fps: float, rng: np.random.Generator, emphasis: np.ndarray | None = None) -> np.ndarray:
    """Brow raise [T] (0..0.4): half of the ``emphasis`` times (s) plus rare random raises."""
    emph = np.zeros(0) if emphasis is None else np.asarray(emphasis, np.float64)
    take = rng.uniform(size=emph.size) < 0.5
    rand = _event_times(rng, n_frames / fps, 6.0, 14.0, first=1.0)
    times = np.concatenate([emph[take] - 0.15, rand])  # the raise leads the vowel a little
    width = 0.5
    amp = rng.uniform(0.25, 0.4, size=times.size)
    out = np.zeros(n_frames)
    if times.size:
        frames, dt = event_windows(n_frames, fps, times, times + width)
        d = dt / width
        shape = np.where((d >= 0) & (d <= 1), 0.5 - 0.5 * np.cos(2 * np.pi * d), 0.0)  # NaN -> 0
        np.add.at(out, frames, shape * amp[:, None])
    return np.clip(out, 0.0, 0.4)


def head_motion(n_frames: int, fps: float, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    """Neck pose [T, 3] (axis-angle, radians): smooth small motion, at most about 0.04 rad per axis."""
    t = np.arange(n_frames) / fps
    out = np.zeros((n_frames, 3))
    for axis, amp in enumerate((0.015, 0.02, 0.008)):  # nod, turn, tilt (rad, per component)
        freq = rng.uniform(0.07, 0.5, size=3)
        phase = rng.uniform(0.0, 2 * np.pi, size=3)
        a = amp * rng.uniform(0.5, 1.0, size=3)
        out[:, axis] = (a[None] * np.sin(2 * np.pi * freq[None] * t[:, None] + phase[None])).sum(axis=1)
    return scale * out


def extras_track(
    n_frames: int,
    fps: float,
    seed: int,
    expr_names: Sequence[str],
    *,
    segments: Sequence | Segments | None = None,
    blinks: bool = True,
    brows: bool = True,
    head: bool = True,
    head_scale: float = 1.0,
) -> RigTrack:
    """Additive track [T] of blinks, brow raises (on emphasised vowels of ``segments`` and at random)
    and head motion; deterministic for ``seed``. Each part uses its own random stream, so switching
    one off leaves the others unchanged."""
    names = list(expr_names)
    track = RigTrack.zeros(n_frames, fps, names)
    blink_rng, brow_rng, head_rng = (np.random.default_rng([int(seed), k]) for k in range(3))
    if blinks:
        b = blink_curve(n_frames, fps, blink_rng)
        for nm in ("blink_left", "blink_right"):
            track.expr[:, names.index(nm)] = b
    if brows:
        emph = emphasis_times(segments) if segments is not None else None
        track.expr[:, names.index("brow_raise")] = brow_curve(n_frames, fps, brow_rng, emph)
    if head:
        track.neck_pose[:] = head_motion(n_frames, fps, head_rng, head_scale)
    return track


def add_extras(track: RigTrack, seed: int = 0, segments: Sequence | Segments | None = None, **kw) -> RigTrack:
    """``track + extras_track(...)`` for the track's length, fps and expression components."""
    return track + extras_track(track.n_frames, track.fps, seed, track.expr_names, segments=segments, **kw)
