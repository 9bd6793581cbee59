"""Forward-only compiled CPU renderer (numba), used for CPU calls that need no gradient.

Same semantics as the pure path (:mod:`l2t_gs.render.torch_raster`: EWA projection with gsplat's
FOV clamp, eps2d dilation, opacity-aware extent and culling, SH colours, alpha cap, 1/255 cut-off,
transmittance early stop); the work is organised for a CPU instead:

* one pass per splat, in splat order, does the quaternion, the projection and the SH colour without
  temporaries, and writes each visible splat's centre, conic, opacity and colour into one short row;
  a second gathers those rows in depth order (in blocks, so that the cache misses overlap) and makes
  each splat's compositing record and the tiles its alpha >= 1/255 ellipse touches (tighter than the
  3.33-sigma box); a third copies each record into every tile list it joins (so that a tile reads one
  contiguous block forwards, not records scattered over the whole array); the rows, records and tile
  lists are scratch arrays kept per thread from frame to frame;
* tiles are composited independently; within a tile only that ellipse's pixels are visited (solved
  per pixel row; small round splats simply over their bounding box, the alpha test rejecting the
  corners), with ``o exp(-sigma)`` advanced by multiplication along rows and from row to row;
* per tile row a bit mask of the pixels that ran out of transmittance lets occluded splats and rows
  be skipped before any exp is taken (early termination per pixel row, not only per tile);
* every pass is a ``nogil`` kernel over a chunk (splats, or every k-th tile) run on the threads of
  :mod:`l2t_gs.core.workers`, so that several frames can also be rendered at once, one per thread;
* arithmetic is float64 inside the kernels (the float64 tests compare to a brute force at 1e-8);
  results are written straight in the input dtype.

Kernels are compiled with ``cache=True`` (:func:`l2t_gs.core.numba_support.cached_njit`): numba keeps
them next to this module, or under ``NUMBA_CACHE_DIR`` / the user cache directory when the install is
read-only (else a private temp directory), so that only the very first process pays the compilation.
numba is optional: :data:`AVAILABLE` tells whether this module can run.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from l2t_gs.core.numba_support import cached_njit
from l2t_gs.core.workers import run_chunks
from l2t_gs.render.sh import SH_C0, SH_C1, SH_C2, SH_C3
from l2t_gs.render.torch_raster import ALPHA_MAX, ALPHA_MIN, MAX_EXTENT, T_MIN

try:  # numba is an optional dependency
    import numba  # noqa: F401

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only without numba
    AVAILABLE = False

# Widening (in sigma units and in pixels) of the visited ellipse, so that rounding never drops a
# pixel the exact alpha test would keep; the per-pixel alpha test still decides.
_SIGMA_SLACK = 1e-3
_PIXEL_SLACK = 1e-3
#: Compositing tile (pixels); a tile row's "done" pixels are bits of one int64, so TILE_W <= 62.
#: The image does not depend on it (every pixel a splat can reach is visited whatever the tiling).
#: Wide tiles cut fewer splat rows in two (62 x 64 composited the default avatar ~7% faster than
#: 32 x 32); a tile's buffers (128 KB) stay in a core's L2 cache.
TILE_W = 62
TILE_H = 64
# Columns of the per-splat record: mean x, y; conic a, b, c; sigma level where alpha = 1/255
# (slackened); half-extents x, y of that ellipse; log(opacity); 1 / a; exp(-a), exp(a), exp(-b),
# exp(b), exp(-c) (the factors that move o exp(-sigma) and its pixel-to-pixel ratios by one pixel);
# 1.0 when the splat is visited over its whole bounding box (see _BOX_RATIO), else 0.0.
_REC = 16
#: A small splat whose bounding box is at most this many times its ellipse's area is visited over
#: the box (the alpha test rejects the corners), which saves solving every row for its x-range.
_BOX_RATIO = 1.6
#: Largest half-extent (pixels) of a box-visited splat.
_BOX_MAX = 8.0
# Most pixel steps (rows down plus columns across) between two exact evaluations of a splat's
# o exp(-sigma) and its ratios in one tile; in between they are advanced by multiplication.
_MAX_WALK = 8
#: Fewest splats a worker thread of the projection / packing passes gets (smaller calls run on one).
_MIN_CHUNK = 4096
#: Largest |conic| entry for which a splat is walked (exp(+-30) and 8 steps stay far from overflow).
_WALK_CONIC = 30.0
#: Splats gathered at once (in depth order) before their records are computed.
_PACK_BLOCK = 256

if AVAILABLE:

    @cached_njit(error_model="numpy", inline="always", fastmath=True)
    def _sh_basis(x: float, y: float, z: float, degree: int, basis: np.ndarray) -> int:
        """SH basis values at the unit direction (x, y, z) into ``basis[:K]`` (INRIA order, K =
        (degree + 1)^2, returned); a colour channel is then sum_j basis[j] * coeffs[j, ch]."""
        basis[0] = SH_C0
        if degree >= 1:
            basis[1], basis[2], basis[3] = -SH_C1 * y, SH_C1 * z, -SH_C1 * x
        if degree >= 2:
            xx, yy, zz = x * x, y * y, z * z
            basis[4] = SH_C2[0] * x * y
            basis[5] = SH_C2[1] * y * z
            basis[6] = SH_C2[2] * (2.0 * zz - xx - yy)
            basis[7] = SH_C2[3] * x * z
            basis[8] = SH_C2[4] * (xx - yy)
            if degree >= 3:
                basis[9] = SH_C3[0] * y * (3.0 * xx - yy)
                basis[10] = SH_C3[1] * x * y * z
                basis[11] = SH_C3[2] * y * (4.0 * zz - xx - yy)
                basis[12] = SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy)
                basis[13] = SH_C3[4] * x * (4.0 * zz - xx - yy)
                basis[14] = SH_C3[5] * z * (xx - yy)
                basis[15] = SH_C3[6] * x * (xx - 3.0 * yy)
        return (min(degree, 3) + 1) ** 2

    @cached_njit(error_model="numpy")
    def _pixel_span(center: float, half: float, lo: int, hi: int) -> tuple[int, int]:
        """Pixels j in [lo, hi) whose centre j + 0.5 lies in [center - half, center + half]."""
        first = math.ceil(max(center - half - 0.5, lo - 1.0))
        last = math.floor(min(center + half - 0.5, float(hi)))
        return max(int(first), lo), min(int(last) + 1, hi)

    @cached_njit(nogil=True, error_model="numpy", fastmath=True)
    def _project(
        means: np.ndarray,
        quats: np.ndarray,
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
        sh_coeffs: np.ndarray,
        sh_degree: int,
        campos: np.ndarray,
        out_radii: np.ndarray,
        out_means2d: np.ndarray,
        out_depths: np.ndarray,
        out_conics: np.ndarray,
        out_opacities: np.ndarray,
        out_cmp: np.ndarray,
        depth_key: np.ndarray,
        worker: int,
        n_workers: int,
    ) -> None:
        """EWA projection of N splats into C cameras; outputs are [C, N, ...] (radii 0 = culled; every
        entry is written, in the outputs' dtype). This call does chunk ``worker`` of ``n_workers``
        contiguous chunks of the splats.

        ``quats`` [N, 4] wxyz need not be unit. For compositing, row ``c * N + i`` of ``out_cmp``
        [C * N, 6 + D] gets a visible splat's float64 centre x, y, conic a, b, c and opacity, one short
        row that the depth-ordered pass gathers instead of four arrays; with ``sh_degree >= 0`` columns
        6..8 get its SH colour (``sh_coeffs`` [1 or C, N, K, 3], view direction from ``campos`` [C, 3]).
        ``depth_key`` [C * N] gets every splat's float64 depth.
        """
        n = means.shape[0]
        n_cams = viewmats.shape[0]
        basis = np.empty(16)
        for i in range(n * worker // n_workers, n * (worker + 1) // n_workers):
            # rotation of the normalised quaternion (as l2t_gs.core.rotation.quat_to_matrix)
            rq = 1.0 / max(math.sqrt(quats[i, 0] ** 2 + quats[i, 1] ** 2 + quats[i, 2] ** 2 + quats[i, 3] ** 2), 1e-12)
            qw, qx, qy, qz = quats[i, 0] * rq, quats[i, 1] * rq, quats[i, 2] * rq, quats[i, 3] * rq
            r00, r01, r02 = 1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)
            r10, r11, r12 = 2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)
            r20, r21, r22 = 2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)
            # M = R diag(scale); world covariance = M M^T
            sx, sy, sz = scales[i, 0], scales[i, 1], scales[i, 2]
            m00, m01, m02 = r00 * sx, r01 * sy, r02 * sz
            m10, m11, m12 = r10 * sx, r11 * sy, r12 * sz
            m20, m21, m22 = r20 * sx, r21 * sy, r22 * sz
            for c in range(n_cams):
                out_radii[c, i, 0] = 0
                out_radii[c, i, 1] = 0
                out_means2d[c, i, 0] = 0.0
                out_means2d[c, i, 1] = 0.0
                out_conics[c, i, 0] = 0.0
                out_conics[c, i, 1] = 0.0
                out_conics[c, i, 2] = 0.0
                out_opacities[c, i] = 0.0
                k = c * n + i
                v = viewmats[c]
                px = v[0, 0] * means[i, 0] + v[0, 1] * means[i, 1] + v[0, 2] * means[i, 2] + v[0, 3]
                py = v[1, 0] * means[i, 0] + v[1, 1] * means[i, 1] + v[1, 2] * means[i, 2] + v[1, 3]
                pz = v[2, 0] * means[i, 0] + v[2, 1] * means[i, 1] + v[2, 2] * means[i, 2] + v[2, 3]
                out_depths[c, i] = pz
                depth_key[k] = pz
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
                rdet = 1.0 / det
                op = opacities[i]
                if antialiased:
                    op *= math.sqrt(max(0.0, det0 * rdet))
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
                ca, cb, cc = d * rdet, -b * rdet, a * rdet
                out_conics[c, i, 0] = ca
                out_conics[c, i, 1] = cb
                out_conics[c, i, 2] = cc
                out_opacities[c, i] = op
                out_cmp[k, 0] = mx
                out_cmp[k, 1] = my
                out_cmp[k, 2] = ca
                out_cmp[k, 3] = cb
                out_cmp[k, 4] = cc
                out_cmp[k, 5] = op
                if sh_degree >= 0:  # colour of the view direction mean - camera centre
                    cf = sh_coeffs[min(c, sh_coeffs.shape[0] - 1)]
                    x = means[i, 0] - campos[c, 0]
                    y = means[i, 1] - campos[c, 1]
                    z = means[i, 2] - campos[c, 2]
                    nrm = 1.0 / max(math.sqrt(x * x + y * y + z * z), 1e-12)
                    x, y, z = x * nrm, y * nrm, z * nrm
                    nb = _sh_basis(x, y, z, sh_degree, basis)
                    r, g, bl = 0.0, 0.0, 0.0
                    for j in range(nb):  # the basis once, then the three channels together
                        r += basis[j] * cf[i, j, 0]
                        g += basis[j] * cf[i, j, 1]
                        bl += basis[j] * cf[i, j, 2]
                    out_cmp[k, 6] = max(r + 0.5, 0.0)
                    out_cmp[k, 7] = max(g + 0.5, 0.0)
                    out_cmp[k, 8] = max(bl + 0.5, 0.0)

    @cached_njit(error_model="numpy", inline="always", fastmath=True)
    def _pack_one(
        geo: np.ndarray,
        j: int,
        width: int,
        height: int,
        tile_w: int,
        tile_h: int,
        rec: np.ndarray,
        spans: np.ndarray,
        k: int,
    ) -> None:
        """Record ``rec[k]`` and tile span ``spans[k]`` of the splat whose centre, conic and opacity are
        ``geo[j]``."""
        spans[k, 0] = 0
        spans[k, 1] = 0
        spans[k, 2] = 0
        spans[k, 3] = 0
        mx, my, a, b, c = geo[j, 0], geo[j, 1], geo[j, 2], geo[j, 3], geo[j, 4]
        op = max(geo[j, 5], ALPHA_MIN)
        lv = math.log(op / ALPHA_MIN) + _SIGMA_SLACK
        det = a * c - b * b
        if det <= 0.0 or a <= 0.0:  # degenerate: visit nothing
            return
        ex = math.sqrt(2.0 * lv * c / det) + _PIXEL_SLACK
        ey = math.sqrt(2.0 * lv * a / det) + _PIXEL_SLACK
        rec[k, 0], rec[k, 1] = mx, my
        rec[k, 2], rec[k, 3], rec[k, 4] = a, b, c
        rec[k, 5], rec[k, 6], rec[k, 7] = lv, ex, ey
        rec[k, 8], rec[k, 9] = math.log(op), 1.0 / a
        e_a, e_b = math.exp(-a), math.exp(-b)
        rec[k, 10], rec[k, 11], rec[k, 12], rec[k, 13], rec[k, 14] = e_a, 1.0 / e_a, e_b, 1.0 / e_b, math.exp(-c)
        area = 2.0 * math.pi * lv / math.sqrt(det)  # of the ellipse sigma <= lv
        small = ex <= _BOX_MAX and ey <= _BOX_MAX and max(a, abs(b), c) < _WALK_CONIC
        rec[k, 15] = 1.0 if small and 4.0 * ex * ey <= _BOX_RATIO * area else 0.0
        x0, x1 = _pixel_span(mx, ex, 0, width)
        y0, y1 = _pixel_span(my, ey, 0, height)
        if x1 > x0 and y1 > y0:
            spans[k, 0], spans[k, 1] = x0 // tile_w, (x1 - 1) // tile_w + 1
            spans[k, 2], spans[k, 3] = y0 // tile_h, (y1 - 1) // tile_h + 1

    @cached_njit(nogil=True, error_model="numpy", fastmath=True)
    def _pack(
        order: np.ndarray,
        cmp: np.ndarray,
        width: int,
        height: int,
        tile_w: int,
        tile_h: int,
        rec: np.ndarray,
        fr: np.ndarray,
        spans: np.ndarray,
        worker: int,
        n_workers: int,
    ) -> None:
        """Records of the visible flat splats ``order`` [M] (depth order) from :func:`_project`'s rows
        ``cmp``, for chunk ``worker`` of ``n_workers``: ``rec`` [M, _REC] (see :data:`_REC`), features
        ``fr`` [M, D] (``cmp``'s columns 6:), and tile spans [M, 4] (tx0, tx1, ty0, ty1; empty when
        off-image or degenerate). Every row is written."""
        m = order.shape[0]
        n_feat = fr.shape[1]
        lo, hi = m * worker // n_workers, m * (worker + 1) // n_workers
        geo = np.empty((_PACK_BLOCK, 6))
        for k0 in range(lo, hi, _PACK_BLOCK):
            k1 = min(k0 + _PACK_BLOCK, hi)
            # gather first, in a loop that does nothing else: the rows are scattered over memory, and
            # only a short loop body lets the CPU keep many of these cache misses in flight at once
            for k in range(k0, k1):
                g = order[k]
                for j in range(6):
                    geo[k - k0, j] = cmp[g, j]
                for ch in range(n_feat):
                    fr[k, ch] = cmp[g, 6 + ch]
            for k in range(k0, k1):
                _pack_one(geo, k - k0, width, height, tile_w, tile_h, rec, spans, k)

    @cached_njit(nogil=True, error_model="numpy")
    def _count_tiles(
        order: np.ndarray, n: int, spans: np.ndarray, tile_width: int, tile_height: int, counts: np.ndarray
    ) -> int:
        """Entries per tile list, ``counts`` [C * T] (zeroed here), of the packed splats (flat
        (camera, splat) indices ``order`` [M] over ``n`` splats, tile spans [M, 4]); returns the total."""
        n_tiles = tile_width * tile_height
        counts[:] = 0
        total = 0
        for k in range(spans.shape[0]):
            base = (order[k] // n) * n_tiles
            for ty in range(spans[k, 2], spans[k, 3]):
                for tx in range(spans[k, 0], spans[k, 1]):
                    counts[base + ty * tile_width + tx] += 1
                    total += 1
        return total

    @cached_njit(nogil=True, error_model="numpy")
    def _fill_tiles(
        order: np.ndarray,
        n: int,
        spans: np.ndarray,
        rec: np.ndarray,
        feat: np.ndarray,
        counts: np.ndarray,
        tile_width: int,
        tile_height: int,
        offsets: np.ndarray,
        trec: np.ndarray,
        tfeat: np.ndarray,
    ) -> None:
        """Tile lists: ``offsets`` [C * T] (from ``counts``), and the packed records ``rec`` [M, _REC]
        and features ``feat`` [M, D] copied into ``trec`` / ``tfeat`` (tile t's entries are rows
        offsets[t]:offsets[t]+counts[t]). Packed rows are in (camera, depth) order, so every list is
        depth-sorted; compositing then reads each tile's records forwards from one contiguous block
        instead of gathering them from all over ``rec``."""
        n_tiles = tile_width * tile_height
        total = 0
        for t in range(counts.shape[0]):
            offsets[t] = total
            total += counts[t]
        cursor = offsets.copy()
        for k in range(spans.shape[0]):
            base = (order[k] // n) * n_tiles
            for ty in range(spans[k, 2], spans[k, 3]):
                for tx in range(spans[k, 0], spans[k, 1]):
                    t = base + ty * tile_width + tx
                    e = cursor[t]
                    trec[e, :] = rec[k, :]
                    tfeat[e, :] = feat[k, :]
                    cursor[t] = e + 1

    @cached_njit(nogil=True, error_model="numpy")
    def _composite_tiles(
        counts: np.ndarray,
        offsets: np.ndarray,
        rec: np.ndarray,
        feat: np.ndarray,
        backgrounds: np.ndarray,
        width: int,
        height: int,
        tile_w: int,
        tile_h: int,
        tile_width: int,
        tile_height: int,
        out_colors: np.ndarray,
        out_alphas: np.ndarray,
        worker: int,
        n_workers: int,
    ) -> None:
        """Front-to-back compositing of the per-tile lists of :func:`_bin_tiles` (``rec`` and ``feat``
        are its tile-ordered copies); this call does every ``n_workers``-th tile from ``worker`` on.

        ``g = o exp(-sigma)`` is advanced by multiplication: sigma is quadratic in x and y, so
        g(x+1, y) = g h with h = g(x+1, y) / g(x, y), h(x+1, y) = h exp(-a), h(x, y+1) = h exp(-b),
        and likewise downwards with v = g(x, y+1) / g(x, y). Within a tile a splat's first visited
        row start is evaluated with exps; later row starts are reached from the previous one by at
        most :data:`_MAX_WALK` such steps (else evaluated again), so most rows take no exp at all.
        ``done[row]`` holds one bit per pixel of the tile row that ran out of transmittance: a row
        (or a whole splat) whose pixels are all done is skipped before its exps.
        """
        n_tiles = tile_width * tile_height
        n_total = counts.shape[0]
        n_ch = feat.shape[1]
        rgb = n_ch == 3  # the common case, unrolled (the channel count is not known at compile time)
        trans = np.empty(tile_w * tile_h)
        acc = np.empty((tile_w * tile_h, n_ch))
        done = np.empty(tile_h, dtype=np.int64)
        for t in range(worker, n_total, n_workers):
            cam = t // n_tiles
            local = t - cam * n_tiles
            x0 = (local % tile_width) * tile_w
            y0 = (local // tile_width) * tile_h
            x1 = min(x0 + tile_w, width)
            y1 = min(y0 + tile_h, height)
            full = (1 << (x1 - x0)) - 1
            rows_left = y1 - y0
            trans[:] = 1.0
            acc[:, :] = 0.0
            done[:] = 0
            for i in range(offsets[t], offsets[t] + counts[t]):
                mx, my = rec[i, 0], rec[i, 1]
                bx0, bx1 = _pixel_span(mx, rec[i, 6], x0, x1)
                if bx0 >= bx1:
                    continue
                box = ((1 << (bx1 - x0)) - 1) ^ ((1 << (bx0 - x0)) - 1)
                ry0, ry1 = _pixel_span(my, rec[i, 7], y0, y1)
                ca, cb, cc, lv = rec[i, 2], rec[i, 3], rec[i, 4], rec[i, 5]
                log_op, inv_ca = rec[i, 8], rec[i, 9]
                e_ma, e_pa, e_mb, e_pb, e_mc = rec[i, 10], rec[i, 11], rec[i, 12], rec[i, 13], rec[i, 14]
                # walk state at pixel (xa, ya): g, h = g(x+1)/g(x), hi = 1/h, v = g(y+1)/g(y)
                xa, ya = -(1 << 30), -(1 << 30)
                g0, h0, hi0, v0 = 0.0, 0.0, 0.0, 0.0
                # steep conics (tiny splats with eps2d ~ 0) would over/underflow exp(+-a): no walk
                walk = _MAX_WALK if max(ca, abs(cb), cc) < _WALK_CONIC else -1
                boxed = rec[i, 15] != 0.0
                f0, f1, f2 = feat[i, 0], feat[i, 1 % n_ch], feat[i, 2 % n_ch]
                if boxed:  # rows start at bx0: the walk only goes down, within the box
                    walk = 2 * _BOX_MAX + 2
                for y in range(ry0, ry1):
                    ly = y - y0
                    dn = done[ly]
                    if dn & box == box:  # every pixel the splat can reach in this row is done
                        continue
                    dy = my - (y + 0.5)
                    if boxed:
                        rx0, rx1 = bx0, bx1
                    else:
                        # x-range of the row: 0.5 ca dx^2 + cb dy dx + 0.5 cc dy^2 <= lv
                        disc = cb * cb * dy * dy - ca * (cc * dy * dy - 2.0 * lv)
                        if disc < 0.0:
                            continue
                        half = math.sqrt(disc) * inv_ca + _PIXEL_SLACK
                        rx0, rx1 = _pixel_span(mx + cb * dy * inv_ca, half, x0, x1)
                        if rx0 >= rx1:
                            continue
                        span = ((1 << (rx1 - x0)) - 1) ^ ((1 << (rx0 - x0)) - 1)
                        if dn & span == span:
                            continue
                    if (y - ya) + abs(rx0 - xa) > walk:
                        dx = mx - (rx0 + 0.5)
                        sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                        g0 = math.exp(log_op - sigma)  # o exp(-sigma) at (rx0, y)
                        h0 = math.exp(ca * dx - 0.5 * ca + cb * dy)
                        hi0 = 1.0 / h0
                        v0 = math.exp(cc * dy - 0.5 * cc + cb * dx)
                        xa, ya = rx0, y
                    else:
                        while ya < y:
                            g0 *= v0
                            v0 *= e_mc
                            h0 *= e_mb
                            hi0 *= e_pb
                            ya += 1
                        while xa < rx0:
                            g0 *= h0
                            h0 *= e_ma
                            hi0 *= e_pa
                            v0 *= e_mb
                            xa += 1
                        while xa > rx0:
                            h0 *= e_pa
                            hi0 *= e_ma
                            g0 *= hi0
                            v0 *= e_pb
                            xa -= 1
                    gval, step = g0, h0
                    row = ly * tile_w - x0
                    for x in range(rx0, rx1):
                        alpha = min(ALPHA_MAX, gval)
                        gval *= step
                        step *= e_ma
                        bit = 1 << (x - x0)
                        if dn & bit or alpha < ALPHA_MIN:
                            continue
                        p = row + x
                        t_next = trans[p] * (1.0 - alpha)
                        if t_next <= T_MIN:
                            dn |= bit
                            continue
                        wgt = alpha * trans[p]
                        if rgb:
                            acc[p, 0] += wgt * f0
                            acc[p, 1] += wgt * f1
                            acc[p, 2] += wgt * f2
                        else:
                            for ch in range(n_ch):
                                acc[p, ch] += wgt * feat[i, ch]
                        trans[p] = t_next
                    if dn != done[ly]:
                        done[ly] = dn
                        if dn == full:
                            rows_left -= 1
                if rows_left == 0:
                    break
            for y in range(y0, y1):
                for x in range(x0, x1):
                    p = (y - y0) * tile_w + (x - x0)
                    out_alphas[cam, y, x, 0] = 1.0 - trans[p]
                    for ch in range(n_ch):
                        out_colors[cam, y, x, ch] = acc[p, ch] + trans[p] * backgrounds[cam, ch]


class _Scratch:
    """Scratch arrays of one thread, kept from call to call: a frame then writes into memory that is
    already mapped and warm instead of paying page faults on fresh allocations (for 100k splats the
    records alone are 13 MB). Buffers only grow (by a quarter beyond the request), up to the largest
    scene the thread rendered; :func:`release_scratch` frees them."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def array(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """A C-contiguous ``shape`` view of buffer ``name`` (contents undefined)."""
        size = math.prod(shape)
        buf = self.buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = np.empty(max(size + size // 4, 1), dtype=dtype)
            self.buffers[name] = buf
        return buf[:size].reshape(shape)


_scratch = threading.local()


def _workspace() -> _Scratch:
    ws = getattr(_scratch, "ws", None)
    if ws is None:
        ws = _scratch.ws = _Scratch()
    return ws


def release_scratch() -> None:
    """Free this thread's scratch buffers (they are otherwise kept for the next frame)."""
    _scratch.ws = None


def _np_float(x: Tensor) -> np.ndarray:
    """A C-contiguous float32 or float64 numpy array of ``x``: float32 is passed as it is (kernels promote
    it exactly as they read), saving a per-frame float64 copy of the splat arrays."""
    a = x.detach().cpu().numpy()
    return np.ascontiguousarray(a if a.dtype in (np.float32, np.float64) else a.astype(np.float64))


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

    ``tile_size`` is accepted for the API's sake: the compositing tiles are :data:`TILE_W` x
    :data:`TILE_H` and the image does not depend on them.

    Returns:
        accumulated features [C, H, W, D'] (depth not yet divided by alpha for "ED" modes),
        alphas [C, H, W, 1], and the dense projection.
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed; the fast CPU path is unavailable")
    out_dtype = np.float32 if means.dtype == torch.float32 else np.float64
    n, c = means.shape[0], viewmats.shape[0]
    ws = _workspace()
    mu3 = _np_float(means)
    vms = _np64(viewmats)
    # the dense projection is returned (fresh arrays, written whole by the kernel in the output dtype);
    # the per-(camera, splat) rows, depths, records and tile lists are scratch reused from frame to frame
    radii = np.empty((c, n, 2), dtype=np.int32)
    means2d = np.empty((c, n, 2), dtype=out_dtype)
    depths = np.empty((c, n), dtype=out_dtype)
    conics = np.empty((c, n, 3), dtype=out_dtype)
    ops = np.empty((c, n), dtype=out_dtype)
    depth_key = ws.array("depth", (c * n,), np.float64)
    wants_rgb = render_mode in ("RGB", "RGB+D", "RGB+ED")
    sh = wants_rgb and sh_degree is not None
    if sh:
        # float32 coefficients stay float32 (the kernel promotes them as it reads, exactly): no per-frame
        # float64 copy of [N, K, 3], which cost 8 ms a frame for 100k splats at SH degree 3
        coeffs = _np_float(colors)
        coeffs = coeffs[None] if coeffs.ndim == 3 else coeffs  # [1 or C, N, K, 3]
        campos = np.ascontiguousarray(np.linalg.inv(vms)[:, :3, 3])
        degree = int(sh_degree)
    else:
        coeffs, campos, degree = np.zeros((1, 1, 1, 3)), np.zeros((c, 3)), -1
    d = (3 if sh else colors.shape[-1] if wants_rgb else 0) + (render_mode != "RGB")
    cmp = ws.array("cmp", (c * n, 6 + d), np.float64)
    qs, ss, os_, ks = _np_float(quats), _np_float(scales), _np_float(opacities), _np64(Ks)
    run_chunks(
        lambda w, k: _project(
            mu3, qs, ss, os_, vms, ks, width, height, float(eps2d), float(near_plane), float(far_plane),
            float(radius_clip), bool(antialiased), coeffs, degree, campos, radii, means2d, depths, conics, ops,
            cmp, depth_key, w, k,
        ),
        n, _MIN_CHUNK,
    )  # fmt: skip
    if wants_rgb and not sh:  # the given features [N, D] or [C, N, D] into the rows' columns 6:
        col = colors.detach().cpu().numpy()
        cmp.reshape(c, n, 6 + d)[:, :, 6 : 6 + col.shape[-1]] = col
    if render_mode != "RGB":
        cmp[:, -1] = depth_key
    bg = np.zeros((c, d))
    if backgrounds is not None and wants_rgb:
        bg[:, : backgrounds.shape[1]] = _np64(backgrounds)

    # Visible splats as flat [C * N] indices, ordered by camera then depth (stable).
    flat_vis = np.flatnonzero((radii > 0).all(axis=-1).reshape(-1))
    flat_depth = depth_key[flat_vis]
    # (numpy's default sort is deterministic; only exact depth ties may order differently from the pure path)
    order = flat_vis[np.lexsort((flat_depth, flat_vis // max(n, 1)))] if c > 1 else flat_vis[np.argsort(flat_depth)]
    order = order.astype(np.int64, copy=False)
    m = order.shape[0]
    rec, feat_r = ws.array("rec", (m, _REC), np.float64), ws.array("feat", (m, d), np.float64)
    spans = ws.array("spans", (m, 4), np.int64)
    run_chunks(lambda w, k: _pack(order, cmp, width, height, TILE_W, TILE_H, rec, feat_r, spans, w, k), m, _MIN_CHUNK)
    tw = (width + TILE_W - 1) // TILE_W
    th = (height + TILE_H - 1) // TILE_H
    counts = np.empty(c * tw * th, dtype=np.int64)
    offsets = np.empty_like(counts)
    total = _count_tiles(order, max(n, 1), spans, tw, th, counts)
    trec = ws.array("trec", (total, _REC), np.float64)
    tfeat = ws.array("tfeat", (total, d), np.float64)
    _fill_tiles(order, max(n, 1), spans, rec, feat_r, counts, tw, th, offsets, trec, tfeat)
    out_colors = np.empty((c, height, width, d), dtype=out_dtype)
    out_alphas = np.empty((c, height, width, 1), dtype=out_dtype)
    run_chunks(
        lambda w, k: _composite_tiles(
            counts, offsets, trec, tfeat, bg, width, height, TILE_W, TILE_H, tw, th, out_colors, out_alphas, w, k
        ),
        counts.shape[0],
    )

    t = torch.from_numpy
    proj = FastProjection(t(radii), t(means2d), t(depths), t(conics), t(ops))
    return torch.from_numpy(out_colors), torch.from_numpy(out_alphas), proj
