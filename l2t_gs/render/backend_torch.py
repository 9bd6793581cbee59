"""The ``torch-pure`` backend: this package's differentiable PyTorch rasterizer (:mod:`.torch_raster`)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from l2t_gs.render import torch_raster
from l2t_gs.render.backends import Backend, RasterRequest, expected_depth, finish_meta, register_backend
from l2t_gs.render.sh import sh_to_color


@register_backend
class TorchPureBackend(Backend):
    name = "torch-pure"
    help = "pure PyTorch, differentiable, any device"
    priority = 20
    own = True

    def render(self, req: RasterRequest) -> tuple[Tensor, Tensor, dict[str, Any]]:
        proj = torch_raster.project_gaussians(
            req.means, req.quats, req.scales, req.viewmats, req.Ks, req.width, req.height,
            opacities=req.opacities, eps2d=req.eps2d, near_plane=req.near_plane, far_plane=req.far_plane,
            radius_clip=req.radius_clip, calc_compensations=req.rasterize_mode == "antialiased",
        )  # fmt: skip
        assert proj.opacities is not None
        cam_ids, gauss_ids = (proj.radii > 0).all(dim=-1).nonzero(as_tuple=True)  # camera-major
        colors, alphas, meta = _render_pure(
            req.means, req.colors, req.viewmats, proj, cam_ids, gauss_ids, req.width, req.height, req.sh_degree,
            req.backgrounds, req.render_mode, req.tile_size, req.packed, req.chunk_elements,
        )  # fmt: skip
        colors = expected_depth(colors, alphas, req.render_mode)
        dense = {"radii": proj.radii, "means2d": proj.means2d, "depths": proj.depths, "conics": proj.conics,
                 "opacities": proj.opacities}  # fmt: skip
        return colors, alphas, finish_meta(req, self.name, dense, cam_ids, gauss_ids, meta)


def _render_pure(
    means: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    proj: torch_raster.Projection,
    cam_ids: Tensor,
    gauss_ids: Tensor,
    width: int,
    height: int,
    sh_degree: int | None,
    backgrounds: Tensor | None,
    render_mode: str,
    tile_size: int,
    packed: bool,
    chunk_elements: int,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Colours/depth of the visible (packed) splats, tile lists and compositing (differentiable)."""
    assert proj.opacities is not None
    c, n = viewmats.shape[0], means.shape[0]
    means2d_p = proj.means2d[cam_ids, gauss_ids]
    depths_p = proj.depths[cam_ids, gauss_ids]
    conics_p = proj.conics[cam_ids, gauss_ids]
    opac_p = proj.opacities[cam_ids, gauss_ids]
    radii_p = proj.radii[cam_ids, gauss_ids]

    per_cam = colors.dim() == (3 if sh_degree is None else 4)
    feats = colors[cam_ids, gauss_ids] if per_cam else colors[gauss_ids]
    if sh_degree is not None:
        campos = torch.linalg.inv(viewmats)[:, :3, 3]  # [C, 3]
        feats = sh_to_color(sh_degree, means[gauss_ids] - campos[cam_ids], feats)
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, depths_p[:, None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(c, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        feats = depths_p[:, None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(c, 1)

    # gsplat-layout tile lists for meta, and lists on the (smaller) compositing tiles
    tile_width, tile_height = math.ceil(width / tile_size), math.ceil(height / tile_size)
    isect = torch_raster.isect_tiles(
        means2d_p.detach(), radii_p, depths_p.detach(), cam_ids, c, tile_size, tile_width, tile_height
    )
    ct = torch_raster.COMPOSITE_TILE_SIZE
    isect_c = isect if tile_size == ct else torch_raster.isect_tiles(
        means2d_p.detach(), radii_p, depths_p.detach(), cam_ids, c, ct, math.ceil(width / ct),
        math.ceil(height / ct),
    )  # fmt: skip
    render_colors, render_alphas = torch_raster.rasterize_to_pixels(
        means2d_p, conics_p, feats, opac_p, width, height, ct, isect_c, backgrounds, chunk_elements=chunk_elements
    )
    flatten_ids = isect.flatten_ids
    tiles_per_gauss = isect.tiles_per_gauss
    if not packed:  # gsplat indexes the dense [C * N] layout then
        flatten_ids = (cam_ids * n + gauss_ids)[flatten_ids]
        tiles_per_gauss = torch.zeros(c, n, dtype=torch.int32, device=means.device)
        tiles_per_gauss[cam_ids, gauss_ids] = isect.tiles_per_gauss
    meta = {
        "tiles_per_gauss": tiles_per_gauss,
        "flatten_ids": flatten_ids,
        "isect_offsets": isect.isect_offsets,
        "packed_means2d": means2d_p,
    }
    return render_colors, render_alphas, meta
