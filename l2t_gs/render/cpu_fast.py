"""Forward-only compiled CPU renderer (numba), used for CPU calls that need no gradient.

Same semantics as the pure path (:mod:`l2t_gs.render.torch_raster`: EWA projection with gsplat's
FOV clamp, eps2d dilation, opacity-aware extent and culling, SH colours, alpha cap, 1/255 cut-off,
transmittance early stop); the work is organised for a CPU instead:

* projection and SH run per splat in parallel (``prange``), without temporaries;
* each splat is binned to the 16x16 tiles its alpha >= 1/255 ellipse touches (tighter than the
  3.33-sigma box), tiles are composited in parallel, and within a tile only that ellipse's pixels
  are visited (solved per pixel row), with ``o exp(-sigma)`` advanced by multiplication along a row;
* arithmetic is float64 inside the kernels; results are cast back to the input dtype.

numba is optional: :data:`AVAILABLE` tells whether this module can run.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from l2t_gs.core.rotation import quat_to_matrix
from l2t_gs.render.sh import SH_C0, SH_C1, SH_C2, SH_C3
from l2t_gs.render.torch_raster import ALPHA_MAX, ALPHA_MIN, MAX_EXTENT, T_MIN

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
# numba's "workqueue" threading layer must not be entered from two threads at once.
_LOCK = threading.Lock()

if AVAILABLE:

    @njit(parallel=True, cache=True, error_model="numpy")
    def _project(
        means: np.ndarray,
        rotmats: np.ndarray,
        scales: np.ndarray,
        opacities: np.ndarray,
        viewmats: np.ndarray,
        ks: np.ndarray,
        width: int,
        height: int,
        eps2d: float,
        near_plane: float,
        far_plane: float,
        radius_clip: float,
        antialiased: bool,
        out_radii: np.ndarray,
        out_means2d: np.ndarray,
        out_depths: np.ndarray,
        out_conics: np.ndarray,
        out_opacities: np.ndarray,
    ) -> None:
        """EWA projection of N splats into C cameras; outputs are [C, N, ...] (radii 0 = culled)."""
        n = means.shape[0]
        n_cams = viewmats.shape[0]
        for i in prange(n):
            # M = R diag(scale); world covariance = M M^T
            sx, sy, sz = scales[i, 0], scales[i, 1], scales[i, 2]
            m00, m01, m02 = rotmats[i, 0, 0] * sx, rotmats[i, 0, 1] * sy, rotmats[i, 0, 2] * sz
            m10, m11, m12 = rotmats[i, 1, 0] * sx, rotmats[i, 1, 1] * sy, rotmats[i, 1, 2] * sz
            m20, m21, m22 = rotmats[i, 2, 0] * sx, rotmats[i, 2, 1] * sy, rotmats[i, 2, 2] * sz
            for c in range(n_cams):
                out_radii[c, i, 0] = 0
                out_radii[c, i, 1] = 0
                v = viewmats[c]
                px = v[0, 0] * means[i, 0] + v[0, 1] * means[i, 1] + v[0, 2] * means[i, 2] + v[0, 3]
                py = v[1, 0] * means[i, 0] + v[1, 1] * means[i, 1] + v[1, 2] * means[i, 2] + v[1, 3]
                pz = v[2, 0] * means[i, 0] + v[2, 1] * means[i, 1] + v[2, 2] * means[i, 2] + v[2, 3]
                out_depths[c, i] = pz
                if not (pz >= near_plane and pz <= far_plane):
                    continue
                # camera-space covariance = (W M)(W M)^T, W the view rotation
                a00 = v[0, 0] * m00 + v[0, 1] * m10 + v[0, 2] * m20
                a01 = v[0, 0] * m01 + v[0, 1] * m11 + v[0, 2] * m21
                a02 = v[0, 0] * m02 + v[0, 1] * m12 + v[0, 2] * m22
                a10 = v[1, 0] * m00 + v[1, 1] * m10 + v[1, 2] * m20
                a11 = v[1, 0] * m01 + v[1, 1] * m11 + v[1, 2] * m21
                a12 = v[1, 0] * m02 + v[1, 1] * m12 + v[1, 2] * m22
                a20 = v[2, 0] * m00 + v[2, 1] * m10 + v[2, 2] * m20
                a21 = v[2, 0] * m01 + v[2, 1] * m11 + v[2, 2] * m21
                a22 = v[2, 0] * m02 + v[2, 1] * m12 + v[2, 2] * m22
                s00 = a00 * a00 + a01 * a01 + a02 * a02
                s01 = a00 * a10 + a01 * a11 + a02 * a12
                s02 = a00 * a20 + a01 * a21 + a02 * a22
                s11 = a10 * a10 + a11 * a11 + a12 * a12
                s12 = a10 * a20 + a11 * a21 + a12 * a22
                s22 = a20 * a20 + a21 * a21 + a22 * a22
                fx, fy, cx, cy = ks[c, 0, 0], ks[c, 1, 1], ks[c, 0, 2], ks[c, 1, 2]
                lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
                lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
                lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
                lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
                rz = 1.0 / pz
                tx = pz * min(lim_x_pos, max(-lim_x_neg, px * rz))
                ty = pz * min(lim_y_pos, max(-lim_y_neg, py * rz))
                j00, j11 = fx * rz, fy * rz
                j02, j12 = -fx * tx * rz * rz, -fy * ty * rz * rz
                a = j00 * j00 * s00 + 2 * j00 * j02 * s02 + j02 * j02 * s22
                b = j00 * j11 * s01 + j00 * j12 * s02 + j02 * j11 * s12 + j02 * j12 * s22
                d = j11 * j11 * s11 + 2 * j11 * j12 * s12 + j12 * j12 * s22
                mx, my = fx * px * rz + cx, fy * py * rz + cy
                det0 = a * d - b * b
                a += eps2d
                d += eps2d
                det = a * d - b * b
                if not det > 0.0:
                    continue
                op = opacities[i]
                if antialiased:
                    op *= math.sqrt(max(0.0, det0 / det))
                if op < ALPHA_MIN:
                    continue
                extent = min(MAX_EXTENT, math.sqrt(2.0 * math.log(max(op / ALPHA_MIN, 1.0))))
                rx = math.ceil(extent * math.sqrt(a))
                ry = math.ceil(extent * math.sqrt(d))
                if rx <= radius_clip and ry <= radius_clip:
                    continue
                if mx + rx <= 0 or mx - rx >= width or my + ry <= 0 or my - ry >= height:
                    continue
                out_radii[c, i, 0] = int(rx)
                out_radii[c, i, 1] = int(ry)
                out_means2d[c, i, 0] = mx
                out_means2d[c, i, 1] = my
                out_conics[c, i, 0] = d / det
                out_conics[c, i, 1] = -b / det
                out_conics[c, i, 2] = a / det
                out_opacities[c, i] = op

    @njit(cache=True, error_model="numpy", inline="always")
    def _sh_value(x: float, y: float, z: float, degree: int, cf: np.ndarray, i: int, ch: int) -> float:
        """SH sum of splat i, channel ch at the unit direction (x, y, z) (INRIA basis order)."""
        val = SH_C0 * cf[i, 0, ch]
        if degree >= 1:
            val += -SH_C1 * y * cf[i, 1, ch] + SH_C1 * z * cf[i, 2, ch] - SH_C1 * x * cf[i, 3, ch]
        if degree >= 2:
            xx, yy, zz = x * x, y * y, z * z
            val += (
                SH_C2[0] * x * y * cf[i, 4, ch]
                + SH_C2[1] * y * z * cf[i, 5, ch]
                + SH_C2[2] * (2.0 * zz - xx - yy) * cf[i, 6, ch]
                + SH_C2[3] * x * z * cf[i, 7, ch]
                + SH_C2[4] * (xx - yy) * cf[i, 8, ch]
            )
            if degree >= 3:
                val += (
                    SH_C3[0] * y * (3.0 * xx - yy) * cf[i, 9, ch]
                    + SH_C3[1] * x * y * z * cf[i, 10, ch]
                    + SH_C3[2] * y * (4.0 * zz - xx - yy) * cf[i, 11, ch]
                    + SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * cf[i, 12, ch]
                    + SH_C3[4] * x * (4.0 * zz - xx - yy) * cf[i, 13, ch]
                    + SH_C3[5] * z * (xx - yy) * cf[i, 14, ch]
                    + SH_C3[6] * x * (xx - 3.0 * yy) * cf[i, 15, ch]
                )
        return val

    @njit(parallel=True, cache=True, error_model="numpy")
    def _sh_colors(
        means: np.ndarray, coeffs: np.ndarray, degree: int, campos: np.ndarray, mask: np.ndarray, out: np.ndarray
    ) -> None:
        """out[i] = max(SH(dir_i) + 0.5, 0) for splats with mask[i]; dir = mean - camera centre."""
        for i in prange(means.shape[0]):
            if not mask[i]:
                continue
            x = means[i, 0] - campos[0]
            y = means[i, 1] - campos[1]
            z = means[i, 2] - campos[2]
            nrm = 1.0 / max(math.sqrt(x * x + y * y + z * z), 1e-12)
            x, y, z = x * nrm, y * nrm, z * nrm
            for ch in range(3):
                out[i, ch] = max(_sh_value(x, y, z, degree, coeffs, i, ch) + 0.5, 0.0)

    @njit(cache=True, error_model="numpy")
    def _pixel_span(center: float, half: float, lo: int, hi: int) -> tuple[int, int]:
        """Pixels j in [lo, hi) whose centre j + 0.5 lies in [center - half, center + half]."""
        first = math.ceil(max(center - half - 0.5, lo - 1.0))
        last = math.floor(min(center + half - 0.5, float(hi)))
        return max(int(first), lo), min(int(last) + 1, hi)

    @njit(parallel=True, cache=True, error_model="numpy")
    def _splat_setup(
        order: np.ndarray,
        means2d: np.ndarray,
        conics: np.ndarray,
        opacities: np.ndarray,
        width: int,
        height: int,
        tile_size: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """For the visible flat splats ``order`` [M]: constants [C*N, 6] (sigma level where
        alpha = 1/255, slackened; half-extents x, y of that ellipse; log(opacity); exp(-conic_xx);
        1 / conic_xx) and tile spans [M, 4] (tx0, tx1, ty0, ty1; empty when off-image)."""
        consts = np.zeros((conics.shape[0], 6))
        spans = np.zeros((order.shape[0], 4), dtype=np.int64)
        for i in prange(order.shape[0]):
            g = order[i]
            a, b, c = conics[g, 0], conics[g, 1], conics[g, 2]
            op = max(opacities[g], ALPHA_MIN)
            lv = math.log(op / ALPHA_MIN) + _SIGMA_SLACK
            det = a * c - b * b
            if det <= 0.0 or a <= 0.0:  # degenerate: visit nothing
                continue
            ex = math.sqrt(2.0 * lv * c / det) + _PIXEL_SLACK
            ey = math.sqrt(2.0 * lv * a / det) + _PIXEL_SLACK
            consts[g, 0], consts[g, 1], consts[g, 2] = lv, ex, ey
            consts[g, 3], consts[g, 4], consts[g, 5] = math.log(op), math.exp(-a), 1.0 / a
            x0, x1 = _pixel_span(means2d[g, 0], ex, 0, width)
            y0, y1 = _pixel_span(means2d[g, 1], ey, 0, height)
            if x1 > x0 and y1 > y0:
                spans[i, 0], spans[i, 1] = x0 // tile_size, (x1 - 1) // tile_size + 1
                spans[i, 2], spans[i, 3] = y0 // tile_size, (y1 - 1) // tile_size + 1
        return consts, spans

    @njit(cache=True, error_model="numpy")
    def _bin_tiles(
        order: np.ndarray, spans: np.ndarray, n_splats: int, n_cameras: int, tile_width: int, tile_height: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tile lists (counts [C*T], offsets [C*T], ids [n_isects]) of flat [C*N] splat indices, filled
        in ``order`` (camera, then depth) so that every list is depth-sorted."""
        n_tiles = tile_width * tile_height
        counts = np.zeros(n_cameras * n_tiles, dtype=np.int64)
        for i in range(order.shape[0]):
            base = (order[i] // n_splats) * n_tiles
            for ty in range(spans[i, 2], spans[i, 3]):
                for tx in range(spans[i, 0], spans[i, 1]):
                    counts[base + ty * tile_width + tx] += 1
        offsets = np.zeros_like(counts)
        total = 0
        for t in range(counts.shape[0]):
            offsets[t] = total
            total += counts[t]
        ids = np.empty(total, dtype=np.int64)
        cursor = offsets.copy()
        for i in range(order.shape[0]):
            g = order[i]
            base = (g // n_splats) * n_tiles
            for ty in range(spans[i, 2], spans[i, 3]):
                for tx in range(spans[i, 0], spans[i, 1]):
                    t = base + ty * tile_width + tx
                    ids[cursor[t]] = g
                    cursor[t] += 1
        return counts, offsets, ids

    @njit(parallel=True, cache=True, error_model="numpy")
    def _composite_tiles(
        counts: np.ndarray,
        offsets: np.ndarray,
        ids: np.ndarray,
        means2d: np.ndarray,
        conics: np.ndarray,
        consts: np.ndarray,
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
        """Front-to-back compositing; tiles are dealt round-robin to the threads.

        Along a pixel row, ``g = o exp(-sigma)`` is advanced by multiplication: sigma is quadratic in
        x, so g(x+1) = g(x) e(x) with e(x+1) = e(x) exp(-conic_xx); two exps per row, not per pixel.
        """
        n_tiles = tile_width * tile_height
        n_total = counts.shape[0]
        n_ch = colors.shape[1]
        n_pix = tile_size * tile_size
        for w in prange(n_threads):
            trans = np.empty(n_pix)
            acc = np.empty((n_pix, n_ch))
            done = np.empty(n_pix, dtype=np.bool_)
            for t in range(w, n_total, n_threads):
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
                    lv, log_op, f_ca, inv_ca = consts[g, 0], consts[g, 3], consts[g, 4], consts[g, 5]
                    ry0, ry1 = _pixel_span(my, consts[g, 2], y0, y1)
                    for y in range(ry0, ry1):
                        dy = my - (y + 0.5)
                        # x-range of the row: 0.5 ca dx^2 + cb dy dx + 0.5 cc dy^2 <= lv
                        disc = cb * cb * dy * dy - ca * (cc * dy * dy - 2.0 * lv)
                        if disc < 0.0:
                            continue
                        half = math.sqrt(disc) * inv_ca + _PIXEL_SLACK
                        rx0, rx1 = _pixel_span(mx + cb * dy * inv_ca, half, x0, x1)
                        if rx0 >= rx1:
                            continue
                        dx = mx - (rx0 + 0.5)
                        sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        gval = math.exp(log_op - sigma)  # o exp(-sigma) at rx0
                        step = math.exp(ca * dx - 0.5 * ca + cb * dy)  # g(rx0 + 1) / g(rx0)
                        row = (y - y0) * tile_size - x0
                        for x in range(rx0, rx1):
                            p = row + x
                            alpha = min(ALPHA_MAX, gval)
                            gval *= step
                            step *= f_ca
                            if done[p] or alpha < ALPHA_MIN:
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


def _np64(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float64)


@dataclass
class FastProjection:
    """Dense per-camera projection results [C, N, ...] as torch tensors (radii 0 = culled)."""

    radii: Tensor
    means2d: Tensor
    depths: Tensor
    conics: Tensor
    opacities: Tensor


def render(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    radius_clip: float = 0.0,
    antialiased: bool = False,
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    tile_size: int = 16,
) -> tuple[Tensor, Tensor, FastProjection]:
    """Render on the CPU without autograd; inputs as :func:`l2t_gs.render.rasterize` (validated).

    Returns:
        accumulated features [C, H, W, D'] (depth not yet divided by alpha for "ED" modes),
        alphas [C, H, W, 1], and the dense projection.
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed; the fast CPU path is unavailable")
    dtype = means.dtype
    n, c = means.shape[0], viewmats.shape[0]
    mu3 = _np64(means)
    vms = _np64(viewmats)
    radii = np.zeros((c, n, 2), dtype=np.int32)
    means2d = np.zeros((c, n, 2))
    depths = np.zeros((c, n))
    conics = np.zeros((c, n, 3))
    ops = np.zeros((c, n))
    rotmats = _np64(quat_to_matrix(quats.detach().double()))  # [N, 3, 3]
    with _LOCK:
        _project(
            mu3, rotmats, _np64(scales), _np64(opacities), vms, _np64(Ks), width, height,
            float(eps2d), float(near_plane), float(far_plane), float(radius_clip), bool(antialiased),
            radii, means2d, depths, conics, ops,
        )  # fmt: skip
    visible = (radii > 0).all(axis=-1)  # [C, N]

    feats: list[np.ndarray] = []
    if render_mode in ("RGB", "RGB+D", "RGB+ED"):
        if sh_degree is None:
            col = colors.detach().cpu().numpy()
            rgb = np.broadcast_to(col, (c, n, col.shape[-1])) if col.ndim == 2 else col
        else:
            rgb = np.zeros((c, n, 3))
            coeffs = colors.detach().cpu().numpy()
            campos = np.linalg.inv(vms)[:, :3, 3]
            with _LOCK:
                for ci in range(c):
                    cf = coeffs if coeffs.ndim == 3 else coeffs[ci]
                    _sh_colors(mu3, np.ascontiguousarray(cf), sh_degree, campos[ci], visible[ci], rgb[ci])
        feats.append(rgb.reshape(c * n, rgb.shape[-1]))
    if render_mode != "RGB":
        feats.append(depths.reshape(c * n, 1))
    # a writeable C-contiguous float64 copy, so that one compiled kernel variant serves every call
    feat = np.require(np.concatenate(feats, axis=1), np.float64, ["C", "W"])
    d = feat.shape[1]
    bg = np.zeros((c, d))
    if backgrounds is not None and render_mode in ("RGB", "RGB+D", "RGB+ED"):
        bg[:, : backgrounds.shape[1]] = _np64(backgrounds)

    # Visible splats as flat [C * N] indices, ordered by camera then depth (stable).
    flat_vis = np.flatnonzero(visible.reshape(-1))
    flat_depth = depths.reshape(-1)[flat_vis]
    cams = flat_vis // max(n, 1)
    # (numpy's default sort is deterministic; only exact depth ties may order differently from the pure path)
    order = flat_vis[np.lexsort((flat_depth, cams))] if c > 1 else flat_vis[np.argsort(flat_depth)]
    tw = (width + tile_size - 1) // tile_size
    th = (height + tile_size - 1) // tile_size
    m2 = means2d.reshape(c * n, 2)
    con = conics.reshape(c * n, 3)
    out_dtype = np.float32 if dtype == torch.float32 else np.float64
    out_colors = np.empty((c, height, width, d))
    out_alphas = np.empty((c, height, width, 1))
    with _LOCK:
        order = order.astype(np.int64)
        consts, spans = _splat_setup(order, m2, con, ops.reshape(-1), width, height, tile_size)
        counts, offsets, ids = _bin_tiles(order, spans, n, c, tw, th)
        _composite_tiles(
            counts, offsets, ids, m2, con, consts, feat, bg,
            width, height, tile_size, tw, th, out_colors, out_alphas, numba.get_num_threads(),
        )  # fmt: skip

    def t(x: np.ndarray) -> Tensor:
        return torch.from_numpy(x.astype(out_dtype, copy=False))

    proj = FastProjection(torch.from_numpy(radii), t(means2d), t(depths), t(conics), t(ops))
    return t(out_colors), t(out_alphas), proj
