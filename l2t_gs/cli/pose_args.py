"""Pose options shared by the commands that pose a head (``head export|render``, ``avatar render``)."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from l2t_gs.errors import L2TError

if TYPE_CHECKING:
    import torch


def parse_values(text: str | None, option: str, names: list[str] | None = None, count: int | None = None) -> list:
    """Parse ``v1,v2,...`` or (with ``names``) ``name=v,...`` into a list of floats.

    Positional lists may be shorter than ``names`` (zero-padded); ``count`` demands an exact length.
    """
    if text is None:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if names is not None and any("=" in t for t in items):
        vals = [0.0] * len(names)
        for item in items:
            key, _, raw = item.partition("=")
            key = key.strip()
            if key not in names:
                raise L2TError(f"{option}: unknown name {key!r}; known: {', '.join(names)}")
            vals[names.index(key)] = _float(raw, option)
        return vals
    vals = [_float(t, option) for t in items]
    if count is not None and len(vals) != count:
        raise L2TError(f"{option} needs {count} comma-separated values, got {len(vals)}")
    if names is not None and len(vals) > len(names):
        raise L2TError(f"{option}: the model has {len(names)} components, got {len(vals)} values")
    return vals


def _float(raw: str, option: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise L2TError(f"{option}: not a number: {raw!r}") from None
    if not math.isfinite(v):
        raise L2TError(f"{option}: values must be finite, got {raw!r}")
    return v


def _names(given: list[str], n: int) -> list[str]:
    return given if len(given) == n else [str(i) for i in range(n)]


def pose_params(args: argparse.Namespace, model, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Rig inputs ([1, ...] tensors, float32 unless ``dtype``) from ``--shape --expr --jaw --neck --eyes``;
    absent options are left out."""
    import torch  # here, not at the top: ``--help`` adds these options without torch

    dtype = torch.float32 if dtype is None else dtype
    shape = parse_values(args.shape, "--shape", _names(model.shape_names, model.n_shape))
    expr = parse_values(args.expr, "--expr", _names(model.expr_names, model.n_expr))
    values = {
        "shape": shape,
        "expr": expr,
        "jaw_pose": parse_values(args.jaw, "--jaw", count=3),
        "neck_pose": parse_values(args.neck, "--neck", count=3),
        "eyes_pose": parse_values(args.eyes, "--eyes", count=6),
    }
    return {k: torch.tensor([v], dtype=dtype) for k, v in values.items() if v}


def add_pose_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="builtin", help="head model: 'builtin' (default) or a FLAME .pkl/.npz path")
    p.add_argument("--shape", help="identity coefficients: v1,v2,... or name=v,...")
    p.add_argument("--expr", help="expression coefficients: v1,v2,... or name=v,... (e.g. lip_close=1)")
    p.add_argument("--jaw", help="jaw pose, axis-angle radians: ax,ay,az")
    p.add_argument("--neck", help="neck pose, axis-angle radians: ax,ay,az")
    p.add_argument("--eyes", help="eye poses, axis-angle radians: 6 values (left eye, then right eye)")
