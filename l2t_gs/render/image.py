"""Rendered images to 8-bit pixels, in one place (one rounding rule for videos, PNGs and the viewer)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_uint8(rgb: Tensor) -> np.ndarray:
    """Colours ``[..., 3]`` in [0, 1] (any device) -> uint8 numpy, clamped, rounded half up."""
    return (rgb.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
