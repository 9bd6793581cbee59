"""Natural non-speech motion: blinks, brow raises and slight head motion, as a separable additive track."""

from __future__ import annotations

import numpy as np

from l2t_gs.motion.articulate import RigTrack


def _bumps(n: int, fps: float, centers: np.ndarray, width_s: float) -> np.ndarray:
    """Sum of raised-cosine bumps of full width ``width_s`` at ``centers`` (s) sampled at ``fps``: [n]."""
    t = np.arange(n) / fps
    d = (t[:, None] - centers[None]) / (width_s / 2)
    return (
        np.where(np.abs(d) < 1, 0.5 + 0.5 * np.cos(np.pi * d), 0.0).sum(1).clip(0, 1) if centers.size else np.zeros(n)
    )


def idle_motion(
    n_frames: int,
    fps: float = 30.0,
    seed: int = 0,
    *,
    expr_names: list[str],
    blinks: bool = True,
    brows: bool = True,
    head: bool = True,
) -> RigTrack:
    """Additive rig track of blinks (every 2-6 s, 150 ms), occasional brow raises and smooth head sway.

    Deterministic for ``seed``; add it to an articulated track with ``track + idle_motion(...)``.
    """
    rng = np.random.default_rng(seed)
    dur = n_frames / fps
    expr = np.zeros((n_frames, len(expr_names)), np.float32)
    neck = np.zeros((n_frames, 3), np.float32)

    def events(lo: float, hi: float) -> np.ndarray:
        out, t = [], float(rng.uniform(0.3, lo))
        while t < dur:
            out.append(t)
            t += float(rng.uniform(lo, hi))
        return np.asarray(out)

    if blinks:
        b = _bumps(n_frames, fps, events(2.0, 6.0), 0.15)
        for name in ("blink_left", "blink_right"):
            expr[:, expr_names.index(name)] = b
    if brows:
        expr[:, expr_names.index("brow_raise")] = 0.35 * _bumps(n_frames, fps, events(4.0, 9.0), 0.6)
    if head:
        t = np.arange(n_frames) / fps
        for axis, amp in enumerate((0.025, 0.035, 0.015)):
            freqs = rng.uniform(0.1, 0.5, size=3)
            phases = rng.uniform(0, 2 * np.pi, size=3)
            neck[:, axis] = amp / 3 * np.sin(2 * np.pi * freqs[None] * t[:, None] + phases[None]).sum(1)
    return RigTrack(expr, np.zeros((n_frames, 3), np.float32), neck, np.zeros((n_frames, 6), np.float32), fps)
