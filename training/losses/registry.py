"""The loss registry of Audio2Mesh training: what a loss sees, how it is registered, and how a recipe's
``[loss]`` table becomes weighted loss functions.

A loss is a *factory* ``factory(options, model, device) -> fn`` registered in :data:`LOSSES` under the
name the recipe uses; ``fn(ctx: LossContext) -> scalar`` is called every step. The recipe's ``[loss]``
table turns it on: ``name = weight``, or ``[loss.name]`` with ``weight`` and the factory's options
(e.g. a frozen expert's checkpoint path); weight 0 disables it.

Adding a built-in loss = one new module under ``training/losses/`` whose factory is decorated with
``@LOSSES.register("name")``, plus that module in the ``modules`` tuple of :data:`LOSSES` (the registry
imports them on first lookup). A user's loss registers the same way from any module imported before
training starts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from l2t_gs.core.registry import Registry
from l2t_gs.errors import L2TError
from l2t_gs.models.audio2mesh import Audio2Mesh

__all__ = [
    "LOSSES",
    "Batch",
    "LossContext",
    "LossFactory",
    "LossFn",
    "build_losses",
    "masked_mean",
    "no_options",
]


@dataclass
class Batch:
    """A training batch: ``audio [B, n]``, ``vertices [B, T, V, 3]``, ``mask [B, T]`` (valid frames),
    ``templates [B, V, 3]``, ``style [B]`` (-1: unseen speaker), clip names/subjects, crop starts (frames);
    with contact targets: ``contacts [B, T, 2]``, ``contact_valid [B]`` (the clip has phones) and
    ``contact_short [B, T]`` (1 on the frames of bilabials aligned shorter than 40 ms)."""

    audio: Tensor
    vertices: Tensor
    mask: Tensor
    templates: Tensor
    style: Tensor
    names: list[str]
    subjects: list[str]
    starts: list[int]
    fps: float
    contacts: Tensor | None = None
    contact_valid: Tensor | None = None
    contact_short: Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        keys = ("audio", "vertices", "mask", "templates", "style", "contacts", "contact_valid", "contact_short")
        move = {k: getattr(self, k).to(device) for k in keys if getattr(self, k) is not None}
        return dataclasses.replace(self, **move)


@dataclass
class LossContext:
    """What a loss sees: predictions and targets ``[B, T, V, 3]`` (positions multiplied by ``scale``), the
    decoder output ``raw [B, T, D]``, the batch, the model (unwrapped), the step (-1: validation) and the
    contact head's ``contact_logits [B, T, 2]`` (``None`` without one)."""

    pred: Tensor
    target: Tensor
    raw: Tensor
    batch: Batch
    model: Audio2Mesh
    scale: float
    step: int
    contact_logits: Tensor | None = None

    @property
    def mask(self) -> Tensor:
        return self.batch.mask


LossFn = Callable[[LossContext], Tensor]
#: ``factory(options: dict, model: Audio2Mesh, device) -> loss function``
LossFactory = Callable[[dict[str, Any], Audio2Mesh, torch.device], LossFn]

#: Every loss a recipe can name: the built-in motion losses, the SyncNet3D sync loss, the lip-read loss.
LOSSES: Registry[LossFactory] = Registry(
    "loss",
    modules=(
        "l2t_gs.training.losses.motion",
        "l2t_gs.training.losses.sync",
        "l2t_gs.training.losses.lipread",
        "l2t_gs.training.losses.contact",
    ),
)


def masked_mean(sq: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``sq [B, T, ...]`` over valid frames (``mask [B, T]``) and the trailing dims."""
    m = mask.to(sq.dtype).view(*mask.shape, *([1] * (sq.ndim - 2)))
    per_frame = sq[0, 0].numel()
    return (sq * m).sum() / (m.sum() * per_frame).clamp_min(1.0)


def no_options(name: str, options: dict[str, Any]) -> None:
    """A one-line error when a loss that takes no options is given some."""
    if options:
        raise L2TError(f"[loss.{name}]: unknown option(s) {', '.join(sorted(options))}")


def build_losses(table: dict[str, Any], model: Audio2Mesh, device: torch.device) -> dict[str, tuple[float, LossFn]]:
    """The ``[loss]`` table -> ``name -> (weight, fn)`` (weight 0 entries dropped)."""
    out = {}
    for name, spec in table.items():
        if name not in LOSSES:
            raise L2TError(f"[loss]: unknown loss {name!r}; known: {', '.join(sorted(LOSSES.choices()))}")
        opts = dict(spec) if isinstance(spec, dict) else {"weight": spec}
        weight = opts.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise L2TError(f"[loss]: weight of {name!r} must be a number >= 0, got {weight!r}")
        if weight:
            out[name] = (float(weight), LOSSES.get(name)(opts, model, device))
    if not out:
        raise L2TError("[loss]: no loss with a weight > 0")
    return out
