"""The life track of a clip: head pose (PoseVAE or procedural), blinks, brows and gaze, for a seed.

``life_track(audio, n_frames, fps, LifeConfig(...))`` is what ``l2t-gs render`` and ``l2t-gs view`` apply
(:class:`l2t_gs.motion.life.LifeRig`); ``None`` when the configuration adds nothing (``still`` + ``off``).
"""

from __future__ import annotations

import numpy as np

from l2t_gs.audio.prosody import Prosody, prosody
from l2t_gs.models.posevae import load_posevae, pose_features
from l2t_gs.motion.head_motion import procedural_head_motion
from l2t_gs.motion.life import LifeConfig, LifeTrack, face_life, life_rngs

__all__ = ["head_pose", "life_track"]


def head_pose(audio: np.ndarray, n_frames: int, fps: float, cfg: LifeConfig, p: Prosody | None = None) -> np.ndarray:
    """Head pose [T, 6] (rad, m) for ``cfg.head_motion`` (zeros for ``still``), scaled by ``motion_scale``."""
    p = p if p is not None else prosody(audio, fps, n_frames)
    if cfg.head_motion == "still":
        return np.zeros((n_frames, 6))
    if cfg.head_motion == "procedural":
        return procedural_head_motion(p, life_rngs(cfg.seed)["head"], cfg.motion_scale)
    model = load_posevae()
    if abs(model.cfg.fps - fps) < 1e-6:
        pose = model.sample(pose_features(audio, n_frames, fps, p), cfg.seed, cfg.temperature)
    else:  # sample at the model's rate, then interpolate to the video's frame times
        n_m = max(1, int(round(n_frames / fps * model.cfg.fps)))
        pm = prosody(audio, model.cfg.fps, n_m)
        src = model.sample(pose_features(audio, n_m, model.cfg.fps, pm), cfg.seed, cfg.temperature)
        t, tm = np.arange(n_frames) / fps, np.arange(n_m) / model.cfg.fps
        pose = np.stack([np.interp(t, tm, src[:, k]) for k in range(src.shape[1])], axis=1)
    return cfg.motion_scale * pose


def life_track(audio: np.ndarray, n_frames: int, fps: float, cfg: LifeConfig) -> LifeTrack | None:
    """The clip's :class:`LifeTrack` (16 kHz mono ``audio``), or ``None`` when ``cfg`` adds nothing."""
    cfg.validate()
    if not cfg.enabled:
        return None
    p = prosody(audio, fps, n_frames)
    head = head_pose(audio, n_frames, fps, cfg, p)
    if cfg.blinks == "on":
        return face_life(p, cfg.seed, head, cfg.motion_scale)
    track = LifeTrack.zeros(n_frames, fps)
    track.head = head
    return track
