"""Motion losses of Audio2Mesh training: vertex positions, velocities, rig coefficients and the lip gap.

Recipe::

    [loss]
    vertex = 1.0       # FaceFormer's position loss
    velocity = 0.5     # frame-to-frame displacements
    rig_l2 = 0.001     # rig output only: keeps the coefficients small

    [loss.lip_gap]     # the lip-gap contact term
    weight = 0.05
    contact_mm = 1.0
    contact_boost = 10.0
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from l2t_gs.assets import asset_path
from l2t_gs.errors import L2TError
from l2t_gs.models.audio2mesh import Audio2Mesh
from l2t_gs.motion.articulation import builtin_lip_pair
from l2t_gs.training.losses.registry import LOSSES, LossContext, LossFn, masked_mean, no_options

__all__ = ["lip_gap_loss", "rig_l2_loss", "velocity_loss", "vertex_loss"]


@LOSSES.register("vertex")
def vertex_loss(options: dict[str, Any], model: Audio2Mesh, device: torch.device) -> LossFn:
    """Mean squared vertex position error (FaceFormer's loss)."""
    no_options("vertex", options)
    return lambda c: masked_mean((c.pred - c.target).square(), c.mask)


@LOSSES.register("velocity")
def velocity_loss(options: dict[str, Any], model: Audio2Mesh, device: torch.device) -> LossFn:
    """Mean squared error of frame-to-frame vertex displacements (smoothness/dynamics)."""
    no_options("velocity", options)

    def fn(c: LossContext) -> Tensor:
        dv = (c.pred[:, 1:] - c.pred[:, :-1]) - (c.target[:, 1:] - c.target[:, :-1])
        return masked_mean(dv.square(), c.mask[:, 1:] & c.mask[:, :-1])

    return fn


@LOSSES.register("rig_l2")
def rig_l2_loss(options: dict[str, Any], model: Audio2Mesh, device: torch.device) -> LossFn:
    """Rig output: mean squared rig coefficient (keeps expressions in the useful range)."""
    no_options("rig_l2", options)
    if model.rig is None:
        raise L2TError("[loss] rig_l2 needs output = 'rig'")
    return lambda c: masked_mean(c.raw.square(), c.mask)


def _builtin_lip_pair(n_verts: int) -> list[int]:
    """The built-in head's lip-midline landmarks ``[upper, lower]``, for meshes of its topology."""

    with np.load(asset_path("head", "l2t_head.npz")) as z:
        head_verts = int(z["v_template"].shape[0])
    if n_verts != head_verts:
        raise L2TError(
            f"[loss.lip_gap] needs pair = [upper, lower] vertex indices for this topology ({n_verts} vertices; "
            f"the built-in head's landmarks are for {head_verts})"
        )
    return list(builtin_lip_pair())


@LOSSES.register("lip_gap")
def lip_gap_loss(options: dict[str, Any], model: Audio2Mesh, device: torch.device) -> LossFn:
    """Squared error of the midline lip gap, boosted on frames where the ground truth closes the lips.

    Options: ``pair = [upper, lower]`` vertex indices (default: the built-in head's lip-midline
    landmarks), ``contact_mm`` (1.0: a ground-truth gap below it is a closure), ``contact_boost`` (10),
    ``start_step`` (0 before this optimizer step). Plain vertex losses average closures away; this
    term makes p/b/m closures count.
    """
    opts = dict(options)
    pair = opts.pop("pair", None)
    contact_mm = float(opts.pop("contact_mm", 1.0))
    boost = float(opts.pop("contact_boost", 10.0))
    start_step = opts.pop("start_step", 0)
    no_options("lip_gap", opts)
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise L2TError(f"[loss.lip_gap]: start_step must be an integer >= 0, got {start_step!r}")
    if pair is None:
        pair = _builtin_lip_pair(int(model.n_verts))
    up, lo = int(pair[0]), int(pair[1])

    def fn(c: LossContext) -> Tensor:
        if 0 <= c.step < start_step:
            return c.pred.sum() * 0.0
        gp = (c.pred[:, :, up] - c.pred[:, :, lo]).norm(dim=-1)  # [B,T] in scaled units
        gt = (c.target[:, :, up] - c.target[:, :, lo]).norm(dim=-1)
        w = 1.0 + boost * (gt < contact_mm / 1000.0 * c.scale).to(gp.dtype)
        return masked_mean(w * (gp - gt).square(), c.mask)

    return fn
