"""Contact logits from a window of audio features around each frame (the context contact head).

The decoder's linear contact head reads one frame's decoder features, which see the audio only up to
that frame (the decoder is causal). A brief bilabial is easiest to hear around its release, after the
closure, so :class:`ContactContext` adds logits read from the aligned audio features of ``context + 2``
frames on each side: two 1-D convolutions (kernel ``2 context + 1``, then 5) with GELU, and a 1x1 output
initialised to zero (a head added to a trained model starts out leaving it unchanged). Its input is the
mean over the ``k`` features per frame. Outside the clip the features and the hidden activations are
zero (the convolutions' padding), so a window cut at the clip's ends gives what the whole clip gives:
:meth:`~l2t_gs.models.audio2mesh.Audio2Mesh` streams it chunk by chunk exactly.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ContactContext"]


class ContactContext(nn.Module):
    """``aligned audio features [B, T, k, C] -> contact logits [B, T, 2]`` (bilabial, labiodental)."""

    def __init__(self, audio_dim: int, context: int, hidden: int, dropout: float) -> None:
        super().__init__()
        if context < 1 or hidden < 1:
            raise ValueError(f"context and hidden must be >= 1, got {context}, {hidden}")
        self.context = int(context)
        self.drop = nn.Dropout(dropout)
        self.conv1 = nn.Conv1d(audio_dim, hidden, 2 * self.context + 1, padding=self.context)
        self.conv2 = nn.Conv1d(hidden, hidden, 5, padding=2)
        self.out = nn.Conv1d(hidden, 2, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def radius(self) -> int:
        """Frames on each side that an output frame depends on."""
        return self.context + 2

    def forward(self, feats: Tensor) -> Tensor:
        x = self.drop(feats.mean(2)).transpose(1, 2)  # [B, C, T]
        y = self.out(F.gelu(self.conv2(F.gelu(self.conv1(x)))))
        return y.transpose(1, 2)
