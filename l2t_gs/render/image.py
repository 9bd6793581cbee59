"""Rendered images to 8-bit pixels, in one place (one rounding rule for videos, PNGs and the viewer)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_uint8(rgb: Tensor) -> np.ndarray:
    """Colours ``[..., 3]`` in [0, 1] (any device) -> uint8 numpy, clamped, rounded half up."""
    rgb = rgb.detach()
    if rgb.device.type != "cpu":
        return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    # on the CPU numpy does the same float operations in place, single-threaded, about 3x faster
    x = np.clip(rgb.numpy(), 0.0, 1.0)
    x *= 255
    x += 0.5
    return x.astype(np.uint8)
