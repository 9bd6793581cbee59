"""Evaluation metrics for speech-driven 3D face motion (LVE, FDD, lip closure, lip-opening correlation).

``motion`` holds the numeric definitions, ``regions`` the lip/upper-face vertex sets; the evaluation
loop, metric registry and result tables live in :mod:`l2t_gs.eval`.
"""

from l2t_gs.metrics.motion import (
    BILABIALS,
    bilabial_segments,
    closure_flags,
    fdd,
    lip_gap,
    lip_max_sq_error,
    lve,
    pearson,
    segment_frames,
    upper_face_dynamics,
)
from l2t_gs.metrics.regions import Regions, builtin_regions, load_regions, resolve_regions

__all__ = [
    "BILABIALS",
    "Regions",
    "bilabial_segments",
    "builtin_regions",
    "closure_flags",
    "fdd",
    "lip_gap",
    "lip_max_sq_error",
    "load_regions",
    "lve",
    "pearson",
    "resolve_regions",
    "segment_frames",
    "upper_face_dynamics",
]
