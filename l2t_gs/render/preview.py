"""Shaded previews of head meshes (the project's own renderer, for docs and quick looks)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from l2t_gs.render.camera import head_camera
from l2t_gs.render.mesh import render_mesh

#: Preview colours of the built-in head's regions (RGB 0..1), applied in this order.
REGION_COLORS: dict[str, tuple[float, float, float]] = {
    "lips": (0.78, 0.45, 0.45),
    "mouth_interior": (0.35, 0.08, 0.1),
    "teeth_upper": (0.95, 0.93, 0.85),
    "teeth_lower": (0.95, 0.93, 0.85),
    "eyes": (0.95, 0.95, 0.95),
    "eyelid_rims": (0.7, 0.5, 0.5),
}
SKIN = (0.85, 0.72, 0.62)


def region_colors(n_verts: int, masks: Mapping[str, torch.Tensor | np.ndarray]) -> torch.Tensor:
    """Per-vertex preview colours [V,3] from region masks (unknown regions stay skin-coloured)."""
    col = torch.tensor(SKIN, dtype=torch.float64).repeat(n_verts, 1)
    for name, rgb in REGION_COLORS.items():
        if name in masks:
            col[torch.as_tensor(masks[name]).long()] = torch.tensor(rgb, dtype=torch.float64)
    return col


def render_head(
    verts: torch.Tensor,
    faces: torch.Tensor,
    *,
    view: str = "front",
    size: int = 512,
    masks: Mapping[str, torch.Tensor | np.ndarray] | None = None,
    frame_verts: torch.Tensor | None = None,
    fill: float = 0.85,
) -> np.ndarray:
    """Render a head mesh [V,3] from a preset view; returns RGB uint8 [size,size,3].

    ``frame_verts`` (default: ``verts``) decides the framing, so that several poses rendered with
    the same ``frame_verts`` line up.
    """
    viewmats, Ks = head_camera(view, frame_verts if frame_verts is not None else verts, size, size, fill=fill)
    colors = region_colors(verts.shape[0], masks) if masks else None
    return render_mesh(verts, faces, viewmats[0], Ks[0], size, size, vertex_colors=colors)
