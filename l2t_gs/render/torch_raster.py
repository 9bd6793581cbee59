"""Pure PyTorch 3D Gaussian splatting rasterizer (CPU or CUDA, differentiable through autograd).

The pipeline mirrors gsplat 1.5's ``rasterization`` (pinhole cameras, "classic" or "antialiased"):

1. :func:`project_gaussians` — EWA splatting: 3D covariance from quaternion and scale, camera
   transform, first-order (Jacobian) perspective projection with gsplat's clamping of x/z, y/z to a
   slightly enlarged field of view, ``eps2d`` low-pass dilation, optional antialiasing compensation,
   opacity-aware extent (``min(3.33, sqrt(2 ln(255 * opacity)))`` sigmas per axis, which encloses
   every pixel whose alpha can reach 1/255), near/far and off-screen culling.
2. :func:`isect_tiles` — every visible splat is listed in each tile its extent touches; the list is
   ordered by (camera, tile, depth).
3. :func:`rasterize_to_pixels` — per tile, front-to-back compositing with alpha capped at
   :data:`ALPHA_MAX`, contributions below :data:`ALPHA_MIN` skipped and a pixel stopped before the
   splat that would bring its transmittance to :data:`T_MIN` or below. Tiles are processed in
   chunks of similar list length, as dense [tiles, splats, pixels] tensors; transmittance is an
   exclusive cumulative product, so the result equals sequential compositing. (gsplat also skips
   ``sigma < 0``; with a positive-definite conic that only happens through rounding, so the
   exponent here is evaluated as one quadratic form per tile and that test is left out.)

:func:`l2t_gs.render.rasterize` composites on 8x8 tiles (:data:`COMPOSITE_TILE_SIZE`): because a
splat's extent box holds every pixel it can reach, the tile size changes the cost, never the image.

Everything is vectorised; the only Python loop runs over chunks of tiles (bounded memory). When a
gradient is needed, each chunk is checkpointed so the backward pass keeps only the chunk inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from l2t_gs.core.rotation import quat_to_matrix

#: Alpha cap of gsplat 1.5.x's rasterizer (the INRIA code caps at 0.99).
ALPHA_MAX = 0.999
#: Contributions with alpha below this are skipped.
ALPHA_MIN = 1.0 / 255.0
#: A pixel stops before the splat that would bring its transmittance to this value or below.
T_MIN = 1e-4
#: Largest extent in sigmas (gsplat's 3.33, trimmed by opacity when opacities are given).
MAX_EXTENT = 3.33
#: Elements of one [tiles, splats, pixels] chunk tensor in :func:`rasterize_to_pixels` (cache sized).
DEFAULT_CHUNK_ELEMENTS = 1 << 18
#: Tile size the compositing uses: small tiles waste fewer evaluations on pixels a splat misses, and
#: the image does not depend on it (every pixel a splat can reach lies inside its extent box).
COMPOSITE_TILE_SIZE = 8


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """3D covariances [..., 3, 3] = R S S^T R^T from quaternions [..., 4] and scales [..., 3]."""
    m = quat_to_matrix(quats) * scales[..., None, :]
    return m @ m.transpose(-1, -2)


@dataclass
class Projection:
    """Per-camera 2D splats, [C, N, ...]; entries with ``radii == 0`` are culled (values unspecified)."""

    radii: Tensor  # [C, N, 2] int32, pixel half-extent per axis (0 = culled)
    means2d: Tensor  # [C, N, 2] pixel coordinates (pixel centres at +0.5)
    depths: Tensor  # [C, N] camera-space z
    conics: Tensor  # [C, N, 3] inverse 2D covariance (xx, xy, yy)
    compensations: Tensor | None  # [C, N] antialiasing opacity factor, or None
    opacities: Tensor | None  # [C, N] opacities used for compositing (times compensation), or None


def project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    opacities: Tensor | None = None,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    calc_compensations: bool = False,
) -> Projection:
    """EWA projection of 3D Gaussians into C pinhole cameras (gsplat 1.5 semantics).

    Args:
        means: [N, 3] world positions. quats: [N, 4] wxyz. scales: [N, 3] (activated).
        viewmats: [C, 4, 4] world-to-camera (OpenCV). Ks: [C, 3, 3] intrinsics.
        opacities: [N] activated opacities; when given, splats whose (compensated) opacity is below
            1/255 are culled and the extent is trimmed to where alpha can reach 1/255; when None the
            extent is 3.33 sigmas (gsplat's reference ``_fully_fused_projection``).
        calc_compensations: compute ``sqrt(det(cov2d) / det(cov2d + eps2d I))`` (antialiased mode).

    Returns:
        A :class:`Projection`; ``means2d``, ``depths``, ``conics``, ``compensations`` and
        ``opacities`` are differentiable, ``radii`` is not.
    """
    covars = quat_scale_to_covar(quats, scales)  # [N, 3, 3]
    rot = viewmats[:, :3, :3]  # [C, 3, 3]
    means_c = torch.einsum("cij,nj->cni", rot, means) + viewmats[:, None, :3, 3]  # [C, N, 3]
    cov_c = rot[:, None] @ covars[None] @ rot.transpose(-1, -2)[:, None]  # [C, N, 3, 3]
    x, y, z = means_c.unbind(-1)

    depth_ok = (z >= near_plane) & (z <= far_plane)
    zs = torch.where(depth_ok, z, torch.ones_like(z))  # keeps culled entries finite (and their grads)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    rz = 1.0 / zs
    tx = zs * torch.minimum(torch.maximum(x * rz, -lim_x_neg), lim_x_pos)
    ty = zs * torch.minimum(torch.maximum(y * rz, -lim_y_neg), lim_y_pos)
    # Jacobian J = [[j00, 0, j02], [0, j11, j12]]; cov2d = J cov_c J^T.
    j00, j11 = fx * rz, fy * rz
    j02, j12 = -fx * tx * rz * rz, -fy * ty * rz * rz
    s00, s01, s02 = cov_c[..., 0, 0], cov_c[..., 0, 1], cov_c[..., 0, 2]
    s11, s12, s22 = cov_c[..., 1, 1], cov_c[..., 1, 2], cov_c[..., 2, 2]
    a = j00 * j00 * s00 + 2 * j00 * j02 * s02 + j02 * j02 * s22
    b = j00 * j11 * s01 + j00 * j12 * s02 + j02 * j11 * s12 + j02 * j12 * s22
    c = j11 * j11 * s11 + 2 * j11 * j12 * s12 + j12 * j12 * s22
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)  # [C, N, 2]

    det_orig = a * c - b * b
    a = a + eps2d
    c = c + eps2d
    det = a * c - b * b
    valid = depth_ok & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)  # [C, N, 3]
    compensations = torch.sqrt(torch.clamp(det_orig / det, min=0.0)) if calc_compensations else None

    ops = None
    if opacities is not None:
        ops = opacities[None].expand_as(z)
        if compensations is not None:
            ops = ops * compensations
    with torch.no_grad():
        keep = valid.clone()
        if ops is not None:
            keep &= ops >= ALPHA_MIN
            extent = torch.sqrt(2.0 * torch.log(torch.clamp_min(ops / ALPHA_MIN, 1.0)))
            extent = torch.clamp_max(extent, MAX_EXTENT)
        else:
            extent = torch.full_like(z, MAX_EXTENT)
        rx = torch.ceil(extent * torch.sqrt(a.clamp_min(0)))
        ry = torch.ceil(extent * torch.sqrt(c.clamp_min(0)))
        keep &= (rx > radius_clip) | (ry > radius_clip)
        mx, my = means2d[..., 0], means2d[..., 1]
        keep &= (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        radii = (torch.stack([rx, ry], dim=-1) * keep[..., None]).to(torch.int32)
    return Projection(radii, means2d, z, conics, compensations, ops)


@dataclass
class TileIntersections:
    """Splat-tile pairs ordered by (camera, tile, depth), in gsplat's layout."""

    tiles_per_gauss: Tensor  # [M] int32, tiles touched by each packed splat
    flatten_ids: Tensor  # [n_isects] int64, packed splat index of each pair
    isect_offsets: Tensor  # [C, tile_height, tile_width] int64, start of each tile's list
    tile_counts: Tensor  # [C * tile_height * tile_width] int64, length of each tile's list


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    camera_ids: Tensor,
    n_cameras: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> TileIntersections:
    """List each packed splat in the tiles its extent box touches, depth-sorted per tile.

    Args:
        means2d: [M, 2]; radii: [M, 2] (> 0); depths: [M]; camera_ids: [M] for M packed splats.
    """
    device = means2d.device
    means2d.shape[0]
    n_tiles = tile_width * tile_height
    r = radii.to(means2d.dtype)
    lo = torch.floor((means2d - r) / tile_size).long()
    hi = torch.ceil((means2d + r) / tile_size).long()
    x0, x1 = lo[:, 0].clamp(0, tile_width), hi[:, 0].clamp(0, tile_width)
    y0, y1 = lo[:, 1].clamp(0, tile_height), hi[:, 1].clamp(0, tile_height)
    nx = x1 - x0
    per_gauss = nx * (y1 - y0)  # [M]

    # Depth order within each camera (stable: ties keep the splat order).
    order = torch.sort(depths, stable=True).indices
    order = order[torch.sort(camera_ids[order], stable=True).indices]
    counts = per_gauss[order]
    total = int(counts.sum())
    src = torch.repeat_interleave(order, counts, output_size=total)  # packed id per pair
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=device) - torch.repeat_interleave(starts, counts, output_size=total)
    nxs = nx[src]
    tile = (y0[src] + local // nxs) * tile_width + x0[src] + local % nxs
    key = camera_ids[src] * n_tiles + tile
    key, perm = torch.sort(key, stable=True)
    flatten_ids = src[perm]

    tile_counts = torch.bincount(key, minlength=n_cameras * n_tiles)
    offsets = (torch.cumsum(tile_counts, 0) - tile_counts).reshape(n_cameras, tile_height, tile_width)
    return TileIntersections(per_gauss.to(torch.int32), flatten_ids, offsets, tile_counts)


def _pixel_features(tile_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[6, P] monomials (1, u, v, u^2, v^2, uv) of the tile-local pixel centres (u, v)."""
    p = torch.arange(tile_size * tile_size, device=device)
    u = (p % tile_size).to(dtype) + 0.5
    v = torch.div(p, tile_size, rounding_mode="floor").to(dtype) + 0.5
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v])


def _composite_chunk(
    tile_ids: Tensor,
    idx: Tensor,
    valid: Tensor,
    means2d: Tensor,
    conics: Tensor,
    log_opacities: Tensor,
    colors: Tensor,
    features: Tensor,
    tile_size: int,
    tile_width: int,
    n_tiles: int,
) -> tuple[Tensor, Tensor]:
    """Composite B tiles front to back.

    The exponent ``log(opacity) - sigma`` is a quadratic in the tile-local pixel coordinates, so one
    matmul of per-pair coefficients [B, K, 6] with ``features`` [6, P] evaluates it for all pixels.

    Args:
        tile_ids: [B] global tile ids (camera * n_tiles + tile).
        idx: [B, K] packed splat ids, depth-sorted per tile; valid: [B, K] mask of real entries.

    Returns:
        colors [B, P, D] and final transmittance [B, P], P = tile_size**2.
    """
    local = tile_ids % n_tiles
    ox = ((local % tile_width) * tile_size).to(means2d.dtype)
    oy = (torch.div(local, tile_width, rounding_mode="floor") * tile_size).to(means2d.dtype)
    mu = means2d[idx]  # [B, K, 2]
    u0 = mu[..., 0] - ox[:, None]  # splat centre in tile-local coordinates
    v0 = mu[..., 1] - oy[:, None]
    con = conics[idx]  # [B, K, 3]
    ca, cb, cc = con[..., 0], con[..., 1], con[..., 2]
    const = log_opacities[idx] - (0.5 * ca * u0 * u0 + 0.5 * cc * v0 * v0 + cb * u0 * v0)
    const = torch.where(valid, const, torch.full_like(const, -1e4))  # padding: alpha = 0
    coef = torch.stack([const, ca * u0 + cb * v0, cc * v0 + cb * u0, -0.5 * ca, -0.5 * cc, -cb], dim=-1)  # [B, K, 6]
    alpha = torch.exp(coef @ features).clamp_max(ALPHA_MAX)  # [B, K, P]
    alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))

    trans_incl = torch.cumprod(1.0 - alpha, dim=1)  # T after each splat
    used = trans_incl > T_MIN  # a prefix along K: the splats this pixel composites
    trans_excl = torch.cat([torch.ones_like(trans_incl[:, :1]), trans_incl[:, :-1]], dim=1)
    weights = alpha * trans_excl * used
    out = torch.bmm(weights.transpose(1, 2), colors[idx])  # [B, P, D]

    n_used = used.sum(dim=1, keepdim=True)  # [B, 1, P]
    last = torch.gather(trans_incl, 1, (n_used - 1).clamp_min(0))[:, 0]  # [B, P]
    trans = torch.where(n_used[:, 0] > 0, last, torch.ones_like(last))
    return out, trans


def rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    width: int,
    height: int,
    tile_size: int,
    isect: TileIntersections,
    backgrounds: Tensor | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    use_checkpoint: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """Composite packed 2D splats into images.

    Args:
        means2d: [M, 2]; conics: [M, 3]; colors: [M, D]; opacities: [M].
        isect: tile lists from :func:`isect_tiles`.
        backgrounds: [C, D] colour behind the splats, or None (black).
        chunk_elements: bound on B*K*P for one chunk of tiles.
        use_checkpoint: recompute chunks in backward (default: when any input requires grad).

    Returns:
        colors [C, H, W, D] and alphas [C, H, W, 1].
    """
    device, dtype = means2d.device, means2d.dtype
    n_cams, th, tw = isect.isect_offsets.shape
    n_tiles = th * tw
    p = tile_size * tile_size
    d = colors.shape[-1]
    if use_checkpoint is None:
        use_checkpoint = torch.is_grad_enabled() and any(t.requires_grad for t in (means2d, conics, colors, opacities))

    features = _pixel_features(tile_size, device, dtype)
    log_opacities = torch.log(opacities.clamp_min(1e-30))
    counts = isect.tile_counts.cpu().numpy()
    starts = torch.cumsum(isect.tile_counts, 0) - isect.tile_counts
    nonempty = np.flatnonzero(counts)
    nonempty = nonempty[np.argsort(counts[nonempty], kind="stable")]  # ascending list length
    sorted_counts = counts[nonempty]

    tile_chunks: list[Tensor] = []
    col_chunks: list[Tensor] = []
    trans_chunks: list[Tensor] = []
    i = 0
    while i < len(nonempty):
        # Largest j with (j - i) * count[j - 1] * P <= budget (counts ascend), at least one tile.
        cost = (np.arange(1, len(nonempty) - i + 1) * sorted_counts[i:]) * p
        j = i + max(1, int(np.searchsorted(cost, chunk_elements, side="right")))
        k = int(sorted_counts[j - 1])
        tiles = torch.as_tensor(nonempty[i:j], device=device)
        ar = torch.arange(k, device=device)
        valid = ar[None, :] < isect.tile_counts[tiles][:, None]  # [B, K]
        pos = torch.where(valid, starts[tiles][:, None] + ar[None, :], torch.zeros_like(ar)[None, :])
        idx = isect.flatten_ids[pos]  # [B, K]
        args = (tiles, idx, valid, means2d, conics, log_opacities, colors, features, tile_size, tw, n_tiles)
        if use_checkpoint:
            out, trans = checkpoint(_composite_chunk, *args, use_reentrant=False)
        else:
            out, trans = _composite_chunk(*args)
        tile_chunks.append(tiles)
        col_chunks.append(out)
        trans_chunks.append(trans)
        i = j

    img = torch.zeros(n_cams * n_tiles, p, d, device=device, dtype=dtype)
    trans = torch.ones(n_cams * n_tiles, p, device=device, dtype=dtype)
    if tile_chunks:
        tiles = torch.cat(tile_chunks)
        img = img.index_copy(0, tiles, torch.cat(col_chunks))
        trans = trans.index_copy(0, tiles, torch.cat(trans_chunks))

    def to_image(x: Tensor) -> Tensor:  # [C*T, P, D] -> [C, H, W, D]
        x = x.reshape(n_cams, th, tw, tile_size, tile_size, -1).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(n_cams, th * tile_size, tw * tile_size, -1)[:, :height, :width]

    img, trans = to_image(img), to_image(trans)
    if backgrounds is not None:
        img = img + trans * backgrounds[:, None, None, :]
    return img, 1.0 - trans
