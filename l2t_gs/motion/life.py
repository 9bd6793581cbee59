""" "Life" on top of speech motion: head pose, blinks, brow raises and gaze, applied to rendered vertices.

:class:`LifeTrack` holds per-frame head pose [T, 6], lid closure [T], brow raise [T] and eye rotations
[T, 6]; :func:`face_life` makes the blinks, brows and gaze for a clip's prosody; :class:`LifeRig` applies
a track to the vertices the speech model produced, in FLAME's order:

1. ``blink_left``/``blink_right``/``brow_raise`` expression offsets (the rig's own blendshapes; they are
   zero on the lips and their vertices are skinned to the neck joint only, so adding them after the jaw is
   exact);
2. eye rotations about the eye joints (eyeball vertices, by their skinning weights);
3. head rotation about the neck joint, blended by each vertex's weight off the global joint (the lips and
   the whole head have weight 0 there, so the mouth moves rigidly: lip contacts and gaps are kept exactly);
4. head translation.

With head motion ``still`` and blinks ``off`` nothing is applied and the output is today's, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from l2t_gs.audio.prosody import Prosody
from l2t_gs.core.rotation import axis_angle_to_matrix
from l2t_gs.errors import L2TError
from l2t_gs.motion.blinks import blink_events, lid_curve
from l2t_gs.motion.extras import brow_curve
from l2t_gs.motion.gaze import gaze_track
from l2t_gs.motion.head_motion import phrase_ends, prominence, stress_peaks
from l2t_gs.motion.life_options import BLINK_CHOICES, HEAD_MOTION_CHOICES

__all__ = ["HEAD_MOTION_CHOICES", "BLINK_CHOICES", "LifeConfig", "LifeTrack", "LifeRig", "face_life", "life_rngs"]


@dataclass
class LifeConfig:
    """``head_motion``: ``still`` (none), ``natural`` (the PoseVAE) or ``procedural`` (the corpus generator);
    ``blinks``: ``on`` adds blinks, brow raises on emphasis and gaze; ``motion_scale`` scales head motion
    and look-aways; ``seed`` and ``temperature`` (the PoseVAE's latent scale) fix the sample."""

    head_motion: str = "still"
    blinks: str = "off"
    motion_scale: float = 1.0
    seed: int = 0
    temperature: float = 1.0

    def validate(self) -> LifeConfig:
        if self.head_motion not in HEAD_MOTION_CHOICES:
            raise L2TError(f"--head-motion must be one of {', '.join(HEAD_MOTION_CHOICES)}, got {self.head_motion!r}")
        if self.blinks not in BLINK_CHOICES:
            raise L2TError(f"--blinks must be on or off, got {self.blinks!r}")
        if not (0.0 <= self.motion_scale <= 5.0):
            raise L2TError(f"--motion-scale must be in 0..5, got {self.motion_scale}")
        if not (0.0 <= self.temperature <= 3.0):
            raise L2TError(f"the PoseVAE temperature must be in 0..3, got {self.temperature}")
        return self

    @property
    def enabled(self) -> bool:
        """Whether anything is added (else rendering is exactly the speech model's)."""
        return self.head_motion != "still" or self.blinks == "on"


def life_rngs(seed: int) -> dict[str, np.random.Generator]:
    """Independent random streams per part, so switching one part off leaves the others unchanged."""
    return {k: np.random.default_rng([int(seed), i]) for i, k in enumerate(("head", "blink", "brow", "gaze"))}


@dataclass
class LifeTrack:
    """Per-frame life: ``head`` [T, 6] (rotation rad about the neck joint, translation m), ``lid`` [T] (both
    eyes' blink amount), ``brow`` [T] (``brow_raise``), ``eyes`` [T, 6] (FLAME ``eyes_pose``)."""

    fps: float
    head: np.ndarray
    lid: np.ndarray
    brow: np.ndarray
    eyes: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.head.shape[0])

    @classmethod
    def zeros(cls, n_frames: int, fps: float) -> LifeTrack:
        return cls(fps, np.zeros((n_frames, 6)), np.zeros(n_frames), np.zeros(n_frames), np.zeros((n_frames, 6)))


def face_life(p: Prosody, seed: int, head: np.ndarray | None = None, scale: float = 1.0) -> LifeTrack:
    """Blinks, brow raises and gaze for prosody ``p`` (and the head pose [T, 6] the eyes compensate)."""
    n, fps = p.n_frames, p.fps
    rng = life_rngs(seed)
    pe = phrase_ends(p)
    lid = lid_curve(blink_events(p.speech, fps, rng["blink"], pe), n, fps)
    pr = prominence(p)
    pk = stress_peaks(p)
    emph = pk[pr[pk] > 1.0] / fps  # the strongest stresses
    brow = brow_curve(n, fps, rng["brow"], emph)
    sp = p.speech.astype(bool)
    starts = np.flatnonzero(~sp[:-1] & sp[1:]) + 1 if n > 1 else np.zeros(0, int)
    eyes = gaze_track(n, fps, rng["gaze"], None if head is None else head[:, :3], starts, scale)
    return LifeTrack(fps, np.zeros((n, 6)) if head is None else np.asarray(head, float), lid, brow, eyes)


class LifeRig:
    """Applies a :class:`LifeTrack` to vertices of a FLAME-format head (see the module docstring).

    ``head_model``: the rig's :class:`~l2t_gs.rig.HeadModel`; ``neutral`` [V, 3]: the avatar's neutral
    vertices (its identity), from which the joints are regressed."""

    def __init__(self, head_model, neutral: Tensor) -> None:
        dev, dt = neutral.device, torch.float32
        w = head_model.lbs_weights.to(dev, dt)  # [V, J]
        joints = head_model.J_regressor.to(dev, dt) @ neutral.to(dt)  # [J, 3]
        names = list(head_model.expr_names or [])
        dirs = head_model.exprdirs.to(dev, dt)
        zero = torch.zeros_like(neutral, dtype=dt)

        def expr(nm: str) -> Tensor:
            return dirs[:, :, names.index(nm)] if nm in names else zero

        self.blink = expr("blink_left") + expr("blink_right")  # [V, 3]
        self.brow = expr("brow_raise")
        self.neck_c, self.eye_c = joints[1], joints[3:5]  # [3], [2, 3]
        self.w_head = (1.0 - w[:, 0])[:, None]  # [V, 1]
        self.w_eyes = w[:, 3:5]  # [V, 2]
        self.has_lids = ("blink_left" in names) or ("blink_right" in names)

    def apply(self, verts: Tensor, track: LifeTrack, start: int) -> Tensor:
        """``verts`` [B, V, 3] are frames ``start .. start + B`` of the track; returns new vertices."""
        b = verts.shape[0]
        sl = slice(start, start + b)
        dev, dt = verts.device, verts.dtype

        def t(x: np.ndarray) -> Tensor:
            return torch.as_tensor(np.asarray(x[sl]), dtype=dt, device=dev)

        v = verts + t(track.lid)[:, None, None] * self.blink.to(dt) + t(track.brow)[:, None, None] * self.brow.to(dt)
        eyes = t(track.eyes).reshape(b, 2, 3)
        if eyes.abs().max() > 0:
            r = axis_angle_to_matrix(eyes.reshape(-1, 3)).reshape(b, 2, 3, 3)
            for k in range(2):
                c = self.eye_c[k].to(dt)
                moved = (v - c) @ r[:, k].transpose(1, 2) + c
                v = v + self.w_eyes[:, k : k + 1].to(dt) * (moved - v)
        head = t(track.head)
        if head.abs().max() > 0:
            r = axis_angle_to_matrix(head[:, :3])  # [B, 3, 3]
            c = self.neck_c.to(dt)
            moved = (v - c) @ r.transpose(1, 2) + c
            v = v + self.w_head.to(dt) * (moved - v) + head[:, None, 3:]
        return v
