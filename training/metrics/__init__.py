"""Evaluation: metric definitions (motion, lip sync), region vertex sets, the evaluation loop and registry."""

from l2t_gs.training.metrics.motion import (
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
from l2t_gs.training.metrics.regions import Regions, builtin_regions, load_regions, resolve_regions

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
