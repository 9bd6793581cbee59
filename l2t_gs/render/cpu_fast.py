"""Forward-only compiled CPU compositing (numba, parallel over tiles).

Takes the packed 2D splats that :func:`l2t_gs.render.torch_raster.project_gaussians` produced and
composites them with the same rules as the pure path (alpha cap, 1/255 cut-off, transmittance
early stop). Two differences in how the work is organised, neither of which changes the image:

* each splat is binned to the tiles its alpha >= 1/255 ellipse touches (tighter than the 3.33-sigma
  box), and within a tile only the pixels of that ellipse are visited (solved per pixel row);
* arithmetic is float64 inside the kernel; the output is cast back to the input dtype.

numba is optional: :data:`AVAILABLE` tells whether this module can run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from l2t_gs.render.torch_raster import ALPHA_MAX, ALPHA_MIN, T_MIN

try:  # numba is an optional dependency
    import numba
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None
    AVAILABLE = False

# Widening (in sigma units and in pixels) of the visited ellipse, so that rounding never drops a
# pixel the exact alpha test would keep; the per-pixel alpha test still decides.
_SIGMA_SLACK = 1e-3
_PIXEL_SLACK = 1e-3

if AVAILABLE:

    @njit(cache=True)
    def _ellipse_extents(conics: np.ndarray, opacities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per splat: sigma level of alpha = 1/255 (slackened) and its half-extents in x and y."""
        m = conics.shape[0]
        level = np.empty(m)
        ex = np.empty(m)
        ey = np.empty(m)
        for i in range(m):
            a, b, c = conics[i, 0], conics[i, 1], conics[i, 2]
            lv = math.log(max(opacities[i], ALPHA_MIN) / ALPHA_MIN) + _SIGMA_SLACK
            det = a * c - b * b
            level[i] = lv
            if det <= 0.0:  # degenerate: let the tile loop visit nothing
                ex[i] = -1.0
                ey[i] = -1.0
            else:
                ex[i] = math.sqrt(2.0 * lv * c / det) + _PIXEL_SLACK
                ey[i] = math.sqrt(2.0 * lv * a / det) + _PIXEL_SLACK
        return level, ex, ey

    @njit(cache=True)
    def _pixel_span(center: float, half: float, lo: int, hi: int) -> tuple[int, int]:
        """Pixels j in [lo, hi) whose centre j + 0.5 lies in [center - half, center + half]."""
        first = math.ceil(max(center - half - 0.5, lo - 1.0))
        last = math.floor(min(center + half - 0.5, float(hi)))
        return max(int(first), lo), min(int(last) + 1, hi)

    @njit(cache=True)
    def _bin_tiles(
        order: np.ndarray,
        camera_ids: np.ndarray,
        means2d: np.ndarray,
        ex: np.ndarray,
        ey: np.ndarray,
        n_cameras: int,
        width: int,
        height: int,
        tile_size: int,
        tile_width: int,
        tile_height: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tile lists (counts [C*T], offsets [C*T], ids [n_isects]) filled in ``order`` (depth) order."""
        n_tiles = tile_width * tile_height
        m = order.shape[0]
        counts = np.zeros(n_cameras * n_tiles, dtype=np.int64)
        spans = np.zeros((m, 4), dtype=np.int64)
        for i in range(m):
            g = order[i]
            if ex[g] < 0.0:
                continue
            x0, x1 = _pixel_span(means2d[g, 0], ex[g], 0, width)
            y0, y1 = _pixel_span(means2d[g, 1], ey[g], 0, height)
            if x1 <= x0 or y1 <= y0:
                continue
            tx0, tx1 = x0 // tile_size, (x1 - 1) // tile_size + 1
            ty0, ty1 = y0 // tile_size, (y1 - 1) // tile_size + 1
            spans[i, 0], spans[i, 1], spans[i, 2], spans[i, 3] = tx0, tx1, ty0, ty1
            base = camera_ids[g] * n_tiles
            for ty in range(ty0, ty1):
                for tx in range(tx0, tx1):
                    counts[base + ty * tile_width + tx] += 1
        offsets = np.zeros_like(counts)
        total = 0
        for t in range(counts.shape[0]):
            offsets[t] = total
            total += counts[t]
        ids = np.empty(total, dtype=np.int64)
        cursor = offsets.copy()
        for i in range(m):
            g = order[i]
            base = camera_ids[g] * n_tiles
            for ty in range(spans[i, 2], spans[i, 3]):
                for tx in range(spans[i, 0], spans[i, 1]):
                    t = base + ty * tile_width + tx
                    ids[cursor[t]] = g
                    cursor[t] += 1
        return counts, offsets, ids

    @njit(parallel=True, cache=True)
    def _composite_tiles(
        counts: np.ndarray,
        offsets: np.ndarray,
        ids: np.ndarray,
        means2d: np.ndarray,
        conics: np.ndarray,
        opacities: np.ndarray,
        level: np.ndarray,
        ey: np.ndarray,
        colors: np.ndarray,
        backgrounds: np.ndarray,
        width: int,
        height: int,
        tile_size: int,
        tile_width: int,
        tile_height: int,
        out_colors: np.ndarray,
        out_alphas: np.ndarray,
        n_threads: int,
    ) -> None:
        """Front-to-back compositing; tiles are dealt round-robin to the threads."""
        n_tiles = tile_width * tile_height
        n_total = counts.shape[0]
        n_ch = colors.shape[1]
        n_pix = tile_size * tile_size
        n_thr = n_threads
        for w in prange(n_thr):
            trans = np.empty(n_pix)
            acc = np.empty((n_pix, n_ch))
            done = np.empty(n_pix, dtype=np.bool_)
            for t in range(w, n_total, n_thr):
                cam = t // n_tiles
                local = t - cam * n_tiles
                x0 = (local % tile_width) * tile_size
                y0 = (local // tile_width) * tile_size
                x1 = min(x0 + tile_size, width)
                y1 = min(y0 + tile_size, height)
                in_tile = (x1 - x0) * (y1 - y0)
                trans[:] = 1.0
                acc[:, :] = 0.0
                done[:] = False
                n_done = 0
                for k in range(offsets[t], offsets[t] + counts[t]):
                    g = ids[k]
                    mx, my = means2d[g, 0], means2d[g, 1]
                    ca, cb, cc = conics[g, 0], conics[g, 1], conics[g, 2]
                    op = opacities[g]
                    lv = level[g]
                    ry0, ry1 = _pixel_span(my, ey[g], y0, y1)
                    for y in range(ry0, ry1):
                        dy = my - (y + 0.5)
                        # x-range of the row: 0.5 ca dx^2 + cb dy dx + 0.5 cc dy^2 <= lv
                        disc = cb * cb * dy * dy - ca * (cc * dy * dy - 2.0 * lv)
                        if disc < 0.0:
                            continue
                        s = math.sqrt(disc)
                        cx = mx + cb * dy / ca  # mx - (-cb dy / ca)
                        rx0, rx1 = _pixel_span(cx, s / ca + _PIXEL_SLACK, x0, x1)
                        row = (y - y0) * tile_size - x0
                        for x in range(rx0, rx1):
                            p = row + x
                            if done[p]:
                                continue
                            dx = mx - (x + 0.5)
                            sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                            if sigma < 0.0:
                                continue
                            alpha = min(ALPHA_MAX, op * math.exp(-sigma))
                            if alpha < ALPHA_MIN:
                                continue
                            t_next = trans[p] * (1.0 - alpha)
                            if t_next <= T_MIN:
                                done[p] = True
                                n_done += 1
                                continue
                            wgt = alpha * trans[p]
                            for ch in range(n_ch):
                                acc[p, ch] += wgt * colors[g, ch]
                            trans[p] = t_next
                    if n_done == in_tile:
                        break
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        p = (y - y0) * tile_size + (x - x0)
                        out_alphas[cam, y, x, 0] = 1.0 - trans[p]
                        for ch in range(n_ch):
                            out_colors[cam, y, x, ch] = acc[p, ch] + trans[p] * backgrounds[cam, ch]


def _f64(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float64)


def rasterize_packed(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    camera_ids: Tensor,
    n_cameras: int,
    width: int,
    height: int,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Composite M packed splats (forward only, CPU).

    Args:
        means2d: [M, 2]; conics: [M, 3]; colors: [M, D]; opacities: [M]; depths: [M];
        camera_ids: [M] camera of each splat; backgrounds: [C, D] or None.

    Returns:
        colors [C, H, W, D] and alphas [C, H, W, 1] in the dtype of ``means2d``.
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed; the fast CPU path is unavailable")
    dtype = means2d.dtype
    d = colors.shape[-1]
    mu = _f64(means2d)
    con = _f64(conics)
    col = _f64(colors)
    op = _f64(opacities)
    dep = depths.detach().cpu().numpy()
    cam = np.ascontiguousarray(camera_ids.detach().cpu().numpy(), dtype=np.int64)
    bg = np.zeros((n_cameras, d)) if backgrounds is None else _f64(backgrounds)

    # Depth order within each camera; camera_ids arrive sorted (camera-major packing).
    order = np.lexsort((dep, cam)) if n_cameras > 1 else np.argsort(dep, kind="stable")
    level, ex, ey = _ellipse_extents(con, op)
    tw = (width + tile_size - 1) // tile_size
    th = (height + tile_size - 1) // tile_size
    counts, offsets, ids = _bin_tiles(
        order.astype(np.int64), cam, mu, ex, ey, n_cameras, width, height, tile_size, tw, th
    )
    out_colors = np.empty((n_cameras, height, width, d))
    out_alphas = np.empty((n_cameras, height, width, 1))
    _composite_tiles(
        counts, offsets, ids, mu, con, op, level, ey, col, bg,
        width, height, tile_size, tw, th, out_colors, out_alphas, numba.get_num_threads(),
    )  # fmt: skip
    device = means2d.device
    return (
        torch.from_numpy(out_colors).to(device=device, dtype=dtype),
        torch.from_numpy(out_alphas).to(device=device, dtype=dtype),
    )
