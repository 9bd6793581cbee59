"""Rasterizer backends: one registry (``BACKENDS``) that ``rasterize``, the CLI, the viewer and the
benchmarks read their choices from.

A backend is a :class:`Backend` registered under its name in its own module (declared with its name
in ``BACKENDS``): ``status()`` says whether it can run on this machine, ``unusable(...)`` why it
cannot take a given call (device, dtype, gradients), ``render(request)`` draws a validated
:class:`RasterRequest` and returns gsplat's ``(colors, alphas, meta)``. Two names are policies, not
backends: ``"torch"`` picks the best usable backend of this package's own (``own=True``), ``"auto"``
the best usable of all, by ``priority`` (lower first). Adding a backend is one new module plus its
name -> module entry in ``BACKENDS``' declaration (see docs/architecture.md).

Light to import (the command line's ``--help`` lists the backends): torch loads with the backends
themselves, and in the helpers they call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from l2t_gs.core.registry import Registry
from l2t_gs.errors import L2TError

if TYPE_CHECKING:
    import torch
    from torch import Tensor

#: Names that choose a backend instead of naming one.
POLICIES = ("auto", "torch")


@dataclass
class RasterRequest:
    """The validated arguments of one :func:`l2t_gs.render.rasterize` call (tensors in one dtype)."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] wxyz
    scales: Tensor  # [N, 3]
    opacities: Tensor  # [N]
    colors: Tensor  # [N, D] | [C, N, D] | SH [N, K, 3] | [C, N, K, 3]
    viewmats: Tensor  # [C, 4, 4]
    Ks: Tensor  # [C, 3, 3]
    width: int
    height: int
    near_plane: float
    far_plane: float
    sh_degree: int | None
    backgrounds: Tensor | None  # [C, D]
    render_mode: str
    packed: bool
    eps2d: float
    tile_size: int
    radius_clip: float
    rasterize_mode: str
    chunk_elements: int
    needs_grad: bool
    kw: dict[str, Any] = field(default_factory=dict)  # further gsplat options


class Backend:
    """One way to rasterize; subclasses set the class attributes and implement :meth:`render`."""

    name: str = ""
    help: str = ""
    priority: int = 100  # "auto"/"torch" try lower first
    own: bool = False  # this package's own rasterizer (chosen by the "torch" policy)

    def status(self) -> tuple[bool, str]:
        """(can run on this machine, why / what)."""
        return True, "available"

    def unusable(self, device: torch.device, dtype: torch.dtype, needs_grad: bool) -> str | None:
        """Why this backend cannot take a call with these properties, or None."""
        ok, why = self.status()
        return None if ok else why

    def render(self, req: RasterRequest) -> tuple[Tensor, Tensor, dict[str, Any]]:
        raise NotImplementedError


BACKENDS: Registry[Backend] = Registry(
    "rasterizer backend",
    modules={
        "gsplat": "l2t_gs.render.backend_gsplat",
        "torch-pure": "l2t_gs.render.backend_torch",
        "cpu-fast": "l2t_gs.render.backend_cpu",
    },
)


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    BACKENDS.add(cls.name, cls(), cls.help)
    return cls


def backend_choices() -> tuple[str, ...]:
    """Every name ``rasterize(backend=...)`` and ``--backend`` accept: the policies, then the backends
    (without importing them, or torch)."""
    return POLICIES + BACKENDS.names()


def select_backend(name: str, device: torch.device, dtype: torch.dtype, needs_grad: bool) -> Backend:
    """Resolve a backend name or policy for one call; a backend that cannot take it is a one-line error."""
    if name in POLICIES:
        candidates = sorted((BACKENDS.get(n) for n in BACKENDS.choices()), key=lambda b: b.priority)
        for b in candidates:
            if (name == "auto" or b.own) and b.unusable(device, dtype, needs_grad) is None:
                return b
        raise L2TError(f"rasterize: no backend can render {dtype} tensors on {device} here")
    if name not in BACKENDS:
        raise L2TError(f"rasterize: backend must be one of {backend_choices()}, got {name!r}")
    backend = BACKENDS.get(name)
    why = backend.unusable(device, dtype, needs_grad)
    if why is not None:
        raise L2TError(f"rasterize: backend {name!r} {why}")
    return backend


def expected_depth(colors: Tensor, alphas: Tensor, render_mode: str) -> Tensor:
    """For "ED" modes, divide the accumulated depth channel (last) by alpha, as gsplat does."""
    if render_mode not in ("ED", "RGB+ED"):
        return colors
    import torch

    return torch.cat([colors[..., :-1], colors[..., -1:] / alphas.clamp(min=1e-10)], dim=-1)


def finish_meta(
    req: RasterRequest,
    backend: str,
    dense: dict[str, Tensor],
    cam_ids: Tensor,
    gauss_ids: Tensor,
    meta: dict[str, Any],
    gather: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Any]:
    """gsplat's meta dict from a dense projection (``radii``, ``means2d``, ``depths``, ``conics``,
    ``opacities``, each [C, N, ...]) and the visible (camera, splat) pairs; packed as requested.
    ``gather`` indexes a dense tensor by the visible pairs (default: tensor indexing)."""
    import torch

    if req.packed:
        take = gather if gather is not None else (lambda t: t[cam_ids, gauss_ids])
        meta |= {"batch_ids": torch.zeros_like(cam_ids), "camera_ids": cam_ids, "gaussian_ids": gauss_ids}
        meta |= {k: take(v) for k, v in dense.items()}
        if "packed_means2d" in meta:  # the tensor the pure path rendered from (its grad is meaningful)
            meta["means2d"] = meta.pop("packed_means2d")
    else:
        meta.pop("packed_means2d", None)
        meta |= {"batch_ids": None, "camera_ids": None, "gaussian_ids": None} | dense
    meta |= {
        "width": req.width,
        "height": req.height,
        "tile_size": req.tile_size,
        "tile_width": math.ceil(req.width / req.tile_size),
        "tile_height": math.ceil(req.height / req.tile_size),
        "n_cameras": req.viewmats.shape[0],
        "n_batches": 1,
        "backend": backend,
    }
    return meta
