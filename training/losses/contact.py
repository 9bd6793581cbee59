"""Contact loss of Audio2Mesh training: binary cross-entropy of the contact head's logits.

Turned on by the recipe table (the model needs ``contact_head = true`` in ``[model]``)::

    [loss.contact]
    weight = 0.1
    pos_weight = 5.0     # weight of contact frames (the rare class); a number or [bilabial, labiodental]
    short_boost = 1.0    # bilabial frames of p/b/m aligned shorter than 40 ms count this many times more

Targets are the per-frame contact windows of the clip's phones (``phones/<name>.json``;
:func:`l2t_gs.motion.contacts.contact_targets`: 1 inside p/b/m resp. f/v windows, raised-cosine edges,
0 elsewhere), cropped with the clip. Clips without phones and padded frames do not count. The value is
the mean over valid frames and both contact kinds.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.training.losses.registry import LOSSES

__all__ = ["contact_bce", "contact_event_bce", "contact_loss_factory"]


def contact_bce(
    logits: Tensor, targets: Tensor, valid: Tensor, pos_weight: Tensor, frame_weight: Tensor | None = None
) -> Tensor:
    """Mean BCE of ``logits [B, T, 2]`` against soft ``targets [B, T, 2]`` over ``valid [B, T]`` frames,
    contact frames weighted by ``pos_weight [2]``; ``frame_weight [B, T]`` multiplies the bilabial channel
    (the normaliser stays the frame count)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), pos_weight=pos_weight, reduction="none")
    if frame_weight is not None:
        bce = torch.cat([bce[..., :1] * frame_weight.to(bce.dtype)[..., None], bce[..., 1:]], dim=-1)
    m = valid.to(bce.dtype)[..., None]
    return (bce * m).sum() / (m.sum() * bce.shape[-1]).clamp_min(1.0)


def contact_event_bce(logits: Tensor, targets: Tensor, valid: Tensor, widen: int = 2) -> Tensor:
    """Event-level BCE (multiple-instance): each contact event (a run of valid frames whose target is >= 0.5,
    per batch row and contact kind) is one positive whose logit is the largest of ``logits [B, T, 2]`` within
    ``widen`` frames of the run; the mean of ``softplus(-that logit)`` over events (0 without events).

    One confident frame near the labelled window counts, as for closure recall (the smallest gap over the
    phone +-1 frame): alignment jitter of a few frames is not punished as a miss next to a false alarm."""
    B, T, C = logits.shape
    pos = (targets >= 0.5) & valid[..., None]  # [B, T, C]
    if not bool(pos.any()):
        return logits.sum() * 0.0
    masked = logits.masked_fill(~valid[..., None], float("-inf")).permute(0, 2, 1).reshape(B * C, 1, T)
    near = F.max_pool1d(masked, 2 * widen + 1, stride=1, padding=widen).reshape(B, C, T).permute(0, 2, 1)
    starts = pos & ~F.pad(pos[:, :-1], (0, 0, 1, 0), value=False)  # [B, T, C]
    # events numbered kind by kind, then row by row (each kind's runs counted apart from the other's)
    run = starts.permute(2, 0, 1).reshape(-1).cumsum(0).reshape(C, B, T).permute(1, 2, 0) - 1
    ids = run[pos]
    n = int(ids.max()) + 1
    best = torch.full((n,), float("-inf"), dtype=logits.dtype, device=logits.device)
    best = best.scatter_reduce(0, ids, near[pos], reduce="amax")
    return F.softplus(-best).mean()


def _pos_weight(value: Any) -> list[float]:
    vals = value if isinstance(value, list | tuple) else [value, value]
    ok = len(vals) == 2 and all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in vals)
    if not ok:
        raise L2TError(f"[loss.contact]: pos_weight must be a number > 0 or two of them, got {value!r}")
    return [float(v) for v in vals]


@LOSSES.register("contact")
def contact_loss_factory(options: dict[str, Any], model: Any, device: torch.device) -> Any:
    """``[loss.contact]``: options ``pos_weight`` (5.0), ``short_boost`` (1.0: off)."""
    opts = dict(options)
    pw = torch.tensor(_pos_weight(opts.pop("pos_weight", 5.0)), device=device)
    boost = opts.pop("short_boost", 1.0)
    if isinstance(boost, bool) or not isinstance(boost, int | float) or not boost >= 1.0:
        raise L2TError(f"[loss.contact]: short_boost must be a number >= 1, got {boost!r}")
    if opts:
        raise L2TError(f"[loss.contact]: unknown option(s) {', '.join(sorted(opts))}")
    if getattr(getattr(model, "decoder", None), "contact_out", None) is None:
        raise L2TError("[loss] contact needs a model with a contact head: set contact_head = true in [model]")

    def fn(c: Any) -> Tensor:
        if c.contact_logits is None or c.batch.contacts is None:
            raise L2TError("[loss] contact: the batch has no contact logits or targets")
        valid = c.mask & c.batch.contact_valid[:, None]
        short = c.batch.contact_short
        weight = None if boost == 1.0 or short is None else 1.0 + (float(boost) - 1.0) * short
        return contact_bce(c.contact_logits, c.batch.contacts, valid, pw.to(c.contact_logits.dtype), weight)

    return fn
