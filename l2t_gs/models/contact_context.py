"""Contact logits from a window of audio features around each frame (the context contact head).

The decoder's linear contact head reads one frame's decoder features, which see the audio only up to
that frame (the decoder is causal). A brief bilabial is easiest to hear around its release, after the
closure, so :class:`ContactContext` adds logits read from the aligned audio features of ``context + 2``
frames on each side: two 1-D convolutions (kernel ``2 context + 1``, then 5) with GELU, and a 1x1 output
initialised to zero (a head added to a trained model starts out leaving it unchanged). Its input is the
mean over the ``k`` features per frame. Outside the clip the features and the hidden activations are
zero (the convolutions' padding), so a window cut at the clip's ends gives what the whole clip gives:
:meth:`~l2t_gs.models.audio2mesh.Audio2Mesh` streams it chunk by chunk exactly.

With ``members`` > 1 the head is an ensemble: ``members`` such heads side by side (grouped
convolutions; one shared first convolution's input), each trained on its own loss from its own random
start (:meth:`ContactContext.member_logits`), and the head's logits are their mean.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ContactContext"]


class ContactContext(nn.Module):
    """``aligned audio features [B, T, k, C] -> contact logits [B, T, 2]`` (bilabial, labiodental)."""

    def __init__(self, audio_dim: int, context: int, hidden: int, dropout: float, members: int = 1) -> None:
        super().__init__()
        if context < 1 or hidden < 1 or members < 1:
            raise ValueError(f"context, hidden and members must be >= 1, got {context}, {hidden}, {members}")
        self.context = int(context)
        self.members = int(members)
        m = self.members
        self.drop = nn.Dropout(dropout)
        self.conv1 = nn.Conv1d(audio_dim, hidden * m, 2 * self.context + 1, padding=self.context)
        self.conv2 = nn.Conv1d(hidden * m, hidden * m, 5, padding=2, groups=m)
        self.out = nn.Conv1d(hidden * m, 2 * m, 1, groups=m)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def radius(self) -> int:
        """Frames on each side that an output frame depends on."""
        return self.context + 2

    def member_logits(self, feats: Tensor) -> Tensor:
        """``[B, T, k, C] -> [B, T, members, 2]``: every member's logits."""
        x = self.drop(feats.mean(2)).transpose(1, 2)  # [B, C, T]
        y = self.out(F.gelu(self.conv2(F.gelu(self.conv1(x)))))  # [B, 2 members, T]
        return y.transpose(1, 2).unflatten(2, (self.members, 2))

    def forward(self, feats: Tensor) -> Tensor:
        if self.members == 1:
            return self.member_logits(feats)[:, :, 0]
        return self.member_logits(feats).mean(2)
