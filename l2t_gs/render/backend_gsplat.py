"""The ``gsplat`` backend: ``gsplat.rasterization`` with its CUDA kernels (float32 CUDA tensors)."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.render.backends import Backend, RasterRequest, register_backend


@functools.lru_cache(maxsize=1)
def gsplat_status() -> tuple[bool, str]:
    """Whether ``gsplat.rasterization`` can run here (CUDA + compiled kernels), with a reason."""
    try:
        import gsplat
    except Exception as exc:  # ImportError or a broken install
        return False, f"gsplat is not importable ({type(exc).__name__}: {exc})"
    if not torch.cuda.is_available():
        return False, f"gsplat {gsplat.__version__} is installed but no CUDA device is available"
    try:
        from gsplat.cuda._backend import _C
    except Exception as exc:
        return False, f"gsplat {gsplat.__version__}: CUDA kernels unavailable ({type(exc).__name__}: {exc})"
    if _C is None:
        return False, f"gsplat {gsplat.__version__}: CUDA kernels failed to build"
    return True, f"gsplat {gsplat.__version__} with CUDA kernels"


@register_backend
class GsplatBackend(Backend):
    name = "gsplat"
    help = "gsplat's CUDA kernels (float32 CUDA tensors)"
    priority = 0

    def status(self) -> tuple[bool, str]:
        return gsplat_status()

    def unusable(self, device: torch.device, dtype: torch.dtype, needs_grad: bool) -> str | None:
        ok, why = gsplat_status()
        if not ok:
            return f"is unavailable: {why}"
        if device.type != "cuda":
            return f"needs CUDA tensors, got tensors on {device}"
        if dtype != torch.float32:
            return f"needs float32 tensors, got {dtype}"
        return None

    def render(self, req: RasterRequest) -> tuple[Tensor, Tensor, dict[str, Any]]:
        """Call ``gsplat.rasterization``; failures of its CUDA side become :class:`L2TError`."""
        from gsplat import rasterization

        try:
            colors, alphas, meta = rasterization(
                req.means, req.quats, req.scales, req.opacities, req.colors, req.viewmats, req.Ks,
                req.width, req.height, near_plane=req.near_plane, far_plane=req.far_plane,
                sh_degree=req.sh_degree, backgrounds=req.backgrounds, render_mode=req.render_mode,
                packed=req.packed, eps2d=req.eps2d, tile_size=req.tile_size, radius_clip=req.radius_clip,
                rasterize_mode=req.rasterize_mode, **req.kw,
            )  # fmt: skip
        except TypeError as exc:
            raise L2TError(f"rasterize: gsplat rejected the options: {exc}") from exc
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            raise L2TError(f"rasterize: gsplat failed: {str(exc).splitlines()[0] if str(exc) else exc}") from exc
        meta["backend"] = self.name
        return colors, alphas, meta
