"""The ``cpu-fast`` backend: the compiled (numba) CPU rasterizer of :mod:`.cpu_fast`, forward only."""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

import numpy as np
import torch
from torch import Tensor

from l2t_gs.render.backends import Backend, RasterRequest, expected_depth, finish_meta, register_backend


@functools.lru_cache(maxsize=1)
def fast_cpu_available() -> bool:
    """Whether the compiled CPU path can run (numba importable)."""
    return importlib.util.find_spec("numba") is not None


@register_backend
class CpuFastBackend(Backend):
    name = "cpu-fast"
    help = "compiled CPU rasterizer (numba), forward only"
    priority = 10
    own = True

    def status(self) -> tuple[bool, str]:
        return (True, "numba") if fast_cpu_available() else (False, "needs numba (pip install numba)")

    def unusable(self, device: torch.device, dtype: torch.dtype, needs_grad: bool) -> str | None:
        if not fast_cpu_available():
            return "needs numba (pip install numba)"
        if device.type != "cpu":
            return f"needs CPU tensors, got tensors on {device}"
        if needs_grad:
            return "is forward-only; use backend='torch-pure' for gradients"
        return None

    def render(self, req: RasterRequest) -> tuple[Tensor, Tensor, dict[str, Any]]:
        from l2t_gs.render import cpu_fast  # compiles (or loads cached) numba kernels on first use

        colors, alphas, fproj = cpu_fast.render(
            req.means, req.quats, req.scales, req.opacities, req.colors, req.viewmats, req.Ks, req.width,
            req.height, near_plane=req.near_plane, far_plane=req.far_plane, eps2d=req.eps2d,
            radius_clip=req.radius_clip, antialiased=req.rasterize_mode == "antialiased",
            sh_degree=req.sh_degree, backgrounds=req.backgrounds, render_mode=req.render_mode,
            tile_size=req.tile_size,
        )  # fmt: skip
        colors = expected_depth(colors, alphas, req.render_mode)
        c, n = fproj.radii.shape[:2]
        if req.packed:  # the visible (camera, splat) pairs; unpacked meta has no use for them
            flat = np.flatnonzero((fproj.radii.numpy() > 0).all(-1).reshape(-1))
            ci, gi = np.divmod(flat, max(n, 1))
        else:
            flat = ci = gi = np.zeros(0, dtype=np.int64)
        cam_ids, gauss_ids = torch.from_numpy(ci), torch.from_numpy(gi)

        def gather(t: Tensor) -> Tensor:  # no autograd here: rows of the flattened [C * N, ...] array
            a = t.numpy()
            return torch.from_numpy(np.take(a.reshape(c * n, *a.shape[2:]), flat, axis=0))

        dense = {"radii": fproj.radii, "means2d": fproj.means2d, "depths": fproj.depths, "conics": fproj.conics,
                 "opacities": fproj.opacities}  # fmt: skip
        return colors, alphas, finish_meta(req, self.name, dense, cam_ids, gauss_ids, {}, gather)
