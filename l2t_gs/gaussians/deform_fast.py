"""Compiled (numba) per-frame deformation: :func:`l2t_gs.gaussians.binding.triangle_frames` and
:func:`~l2t_gs.gaussians.binding.local_to_world` of one mesh in two passes (faces, then splats, each
in chunks on :mod:`l2t_gs.core.workers` threads), without temporaries; used by
:meth:`GaussianAvatar.deform` for CPU calls without autograd.

The arithmetic follows the torch code operation by operation, in its dtype, so the results agree
with it to float rounding (tests/test_deform_fast.py); the exp/log of the scales stay in torch.
numba is optional: :data:`AVAILABLE` tells whether this module can run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from l2t_gs.core.numba_support import cached_njit
from l2t_gs.core.workers import run_chunks
from l2t_gs.gaussians.binding import NORM_EPS

try:  # numba is an optional dependency
    import numba  # noqa: F401

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only without numba
    AVAILABLE = False


#: Fewest faces / splats a worker thread gets (smaller calls run on one).
_MIN_CHUNK = 8192

if AVAILABLE:

    @cached_njit(inline="always", fastmath=True)
    def _length(x: float, y: float, z: float, eps: float) -> float:
        """sqrt(max(|v|^2, eps)), as binding.safe_normalize divides by."""
        return np.sqrt(max(x * x + y * y + z * z, eps))

    @cached_njit(nogil=True, fastmath=True)
    def _faces(
        verts: np.ndarray, faces: np.ndarray, eps: np.ndarray, out: np.ndarray, worker: int, n_workers: int
    ) -> None:
        """Per face: rotation columns a0, a1, a2 (9), unit quaternion wxyz (4), scale k, centroid (3);
        chunk ``worker`` of ``n_workers`` contiguous chunks of the faces."""
        one, two, three = verts.dtype.type(1.0), verts.dtype.type(2.0), verts.dtype.type(3.0)
        half, zero = verts.dtype.type(0.5), verts.dtype.type(0.0)
        e = eps[0]
        nf = faces.shape[0]
        for f in range(nf * worker // n_workers, nf * (worker + 1) // n_workers):
            i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
            e1x, e1y, e1z = verts[i1, 0] - verts[i0, 0], verts[i1, 1] - verts[i0, 1], verts[i1, 2] - verts[i0, 2]
            e2x, e2y, e2z = verts[i2, 0] - verts[i0, 0], verts[i2, 1] - verts[i0, 1], verts[i2, 2] - verts[i0, 2]
            base = _length(e1x, e1y, e1z, e)
            r = one / base  # one division, three products (the torch path divides: equal to rounding)
            a0x, a0y, a0z = e1x * r, e1y * r, e1z * r
            cx, cy, cz = a0y * e2z - a0z * e2y, a0z * e2x - a0x * e2z, a0x * e2y - a0y * e2x
            r = one / _length(cx, cy, cz, e)
            a1x, a1y, a1z = cx * r, cy * r, cz * r
            dx, dy, dz = a1y * a0z - a1z * a0y, a1z * a0x - a1x * a0z, a1x * a0y - a1y * a0x
            r = -one / _length(dx, dy, dz, e)
            a2x, a2y, a2z = dx * r, dy * r, dz * r
            height = abs(a2x * e2x + a2y * e2y + a2z * e2z)
            # R = [a0 a1 a2] as columns: m_ij = a_j[i]
            m00, m01, m02 = a0x, a1x, a2x
            m10, m11, m12 = a0y, a1y, a2y
            m20, m21, m22 = a0z, a1z, a2z
            out[f, 0], out[f, 1], out[f, 2] = m00, m01, m02
            out[f, 3], out[f, 4], out[f, 5] = m10, m11, m12
            out[f, 6], out[f, 7], out[f, 8] = m20, m21, m22
            # Shepperd's method (as l2t_gs.core.rotation.matrix_to_quat), identity for non-rotations
            p0 = one + m00 + m11 + m22
            p1 = one + m00 - m11 - m22
            p2 = one - m00 + m11 - m22
            p3 = one - m00 - m11 + m22
            best, pb = 0, p0
            if p1 > pb:
                best, pb = 1, p1
            if p2 > pb:
                best, pb = 2, p2
            if p3 > pb:
                best, pb = 3, p3
            if best == 0:
                qw, qx, qy, qz = p0, m21 - m12, m02 - m20, m10 - m01
            elif best == 1:
                qw, qx, qy, qz = m21 - m12, p1, m01 + m10, m02 + m20
            elif best == 2:
                qw, qx, qy, qz = m02 - m20, m01 + m10, p2, m12 + m21
            else:
                qw, qx, qy, qz = m10 - m01, m02 + m20, m12 + m21, p3
            r = one / max(np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), verts.dtype.type(1e-12))
            qw, qx, qy, qz = qw * r, qx * r, qy * r, qz * r
            if qw < 0:
                qw, qx, qy, qz = -qw, -qx, -qy, -qz
            if qw * qw + qx * qx + qy * qy + qz * qz < half:
                qw, qx, qy, qz = one, zero, zero, zero
            out[f, 9], out[f, 10], out[f, 11], out[f, 12] = qw, qx, qy, qz
            out[f, 13] = (base + height) / two
            out[f, 14] = (verts[i0, 0] + verts[i1, 0] + verts[i2, 0]) / three
            out[f, 15] = (verts[i0, 1] + verts[i1, 1] + verts[i2, 1]) / three
            out[f, 16] = (verts[i0, 2] + verts[i1, 2] + verts[i2, 2]) / three

    @cached_njit(nogil=True, fastmath=True)
    def _splats(
        frames: np.ndarray,
        binding: np.ndarray,
        means: np.ndarray,
        quats: np.ndarray,
        eps: np.ndarray,
        out_means: np.ndarray,
        out_quats: np.ndarray,
        out_k: np.ndarray,
        worker: int,
        n_workers: int,
    ) -> None:
        """World means [N, 3], quaternions [N, 4] and parent scales k [N] of the splats (chunk
        ``worker`` of ``n_workers``)."""
        e = eps[0]
        one = means.dtype.type(1.0)
        n = binding.shape[0]
        for i in range(n * worker // n_workers, n * (worker + 1) // n_workers):
            fr = frames[binding[i]]
            k = fr[13]
            mx, my, mz = means[i, 0], means[i, 1], means[i, 2]
            out_means[i, 0] = (fr[0] * mx + fr[1] * my + fr[2] * mz) * k + fr[14]
            out_means[i, 1] = (fr[3] * mx + fr[4] * my + fr[5] * mz) * k + fr[15]
            out_means[i, 2] = (fr[6] * mx + fr[7] * my + fr[8] * mz) * k + fr[16]
            out_k[i] = k
            aw, ax, ay, az = fr[9], fr[10], fr[11], fr[12]  # unit already (_faces normalises it)
            bw, bx, by, bz = quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3]
            r = one / np.sqrt(max(bw * bw + bx * bx + by * by + bz * bz, e))
            bw, bx, by, bz = bw * r, bx * r, by * r, bz * r
            out_quats[i, 0] = aw * bw - ax * bx - ay * by - az * bz
            out_quats[i, 1] = aw * bx + ax * bw + ay * bz - az * by
            out_quats[i, 2] = aw * by - ax * bz + ay * bw + az * bx
            out_quats[i, 3] = aw * bz + ax * by - ay * bx + az * bw


def deform_one(
    vertices: Tensor, faces: Tensor, binding: Tensor, means: Tensor, log_scales: Tensor, quats: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """One mesh's splats in world space: ``(means [N, 3], quats [N, 4], log_scales [N, 3])``.

    Args:
        vertices: ``[V, 3]`` CPU float32/float64. faces: ``[F, 3]``. binding: ``[N]``.
        means, log_scales: ``[N, 3]`` local; quats: ``[N, 4]`` local wxyz (all in the vertices' dtype).
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not installed; the compiled deformation is unavailable")
    np_dtype = np.float32 if vertices.dtype == torch.float32 else np.float64
    verts = np.ascontiguousarray(vertices.detach().numpy(), dtype=np_dtype)
    eps = np.array([NORM_EPS], dtype=np_dtype)
    frames = np.empty((faces.shape[0], 17), dtype=np_dtype)
    n = binding.shape[0]
    out_means = np.empty((n, 3), dtype=np_dtype)
    out_quats = np.empty((n, 4), dtype=np_dtype)
    out_k = np.empty(n, dtype=np_dtype)
    fcs = np.ascontiguousarray(faces.numpy(), dtype=np.int64)
    bnd = np.ascontiguousarray(binding.numpy(), dtype=np.int64)
    mns = np.ascontiguousarray(means.detach().numpy(), dtype=np_dtype)
    qts = np.ascontiguousarray(quats.detach().numpy(), dtype=np_dtype)
    run_chunks(lambda w, k: _faces(verts, fcs, eps, frames, w, k), fcs.shape[0], _MIN_CHUNK)
    run_chunks(lambda w, k: _splats(frames, bnd, mns, qts, eps, out_means, out_quats, out_k, w, k), n, _MIN_CHUNK)
    k = torch.from_numpy(out_k)[:, None]
    return torch.from_numpy(out_means), torch.from_numpy(out_quats), log_scales + torch.log(k)
