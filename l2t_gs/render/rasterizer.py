"""``rasterize``: gsplat-compatible Gaussian splat rendering through the backends of :mod:`.backends`.

Backends (``BACKENDS``, each in its own module): ``"gsplat"`` (gsplat's CUDA kernels), ``"cpu-fast"``
(the compiled CPU path, forward only), ``"torch-pure"`` (pure PyTorch, differentiable). Policies:
``"torch"`` takes this package's own rasterizer (cpu-fast for CPU calls that need no gradient, else
torch-pure); ``"auto"`` takes gsplat for float32 CUDA tensors where its kernels work, else as "torch".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.render import torch_raster
from l2t_gs.render.backends import RasterRequest, backend_choices, select_backend
from l2t_gs.render.sh import MAX_SH_DEGREE, num_sh_bases

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")

# gsplat keyword arguments the torch backends accept when left at these values.
_NEUTRAL_KWARGS: dict[str, Any] = {
    "sparse_grad": False,
    "absgrad": False,
    "distributed": False,
    "camera_model": "pinhole",
    "segmented": False,
    "covars": None,
    "with_ut": False,
    "with_eval3d": False,
    "radial_coeffs": None,
    "tangential_coeffs": None,
    "thin_prism_coeffs": None,
    "ftheta_coeffs": None,
    "viewmats_rs": None,
}
_IGNORED_KWARGS = ("channel_chunk",)  # performance knobs of gsplat without meaning here


def _fail(msg: str) -> None:
    raise L2TError(f"rasterize: {msg}")


def _values(t: Tensor) -> Tensor | np.ndarray:
    """A numpy view of a CPU tensor (checks then run single-threaded, immune to busy cores), else ``t``."""
    return t.detach().numpy() if t.device.type == "cpu" else t.detach()


def _check_finite(name: str, t: Tensor) -> None:
    v = _values(t)
    # A sum is NaN/inf when any element is (cheap); confirm element-wise so that an overflowing sum of
    # finite values is not reported.
    if not bool(_isfinite(v.sum())) and not bool(_isfinite(v).all()):
        _fail(f"{name} contains NaN or inf")


def _isfinite(v: Any) -> Any:
    return np.isfinite(v) if isinstance(v, (np.ndarray, np.generic)) else torch.isfinite(v)


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _validate(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
    sh_degree: int | None,
    backgrounds: Tensor | None,
    render_mode: str,
    backend: str,
    eps2d: float,
    tile_size: int,
) -> None:
    """Raise one-line :class:`L2TError` for any malformed input."""
    named = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors}
    named |= {"viewmats": viewmats, "Ks": Ks}
    if backgrounds is not None:
        named["backgrounds"] = backgrounds
    for name, t in named.items():
        if not isinstance(t, Tensor):
            _fail(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            _fail(f"{name} must be a floating-point tensor, got {t.dtype}")
    if means.dtype not in (torch.float32, torch.float64):
        _fail(f"means must be float32 or float64, got {means.dtype}")
    devices = {str(t.device) for t in named.values()}
    if len(devices) > 1:
        _fail(f"all tensors must be on one device, got {sorted(devices)}")
    if render_mode not in RENDER_MODES:
        _fail(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if backend not in backend_choices():
        _fail(f"backend must be one of {backend_choices()}, got {backend!r}")
    for name, v in (("width", width), ("height", height), ("tile_size", tile_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            _fail(f"{name} must be a positive int, got {v!r}")
    if not near_plane < far_plane:
        _fail(f"near_plane ({near_plane}) must be below far_plane ({far_plane})")
    if not eps2d >= 0:
        _fail(f"eps2d must be >= 0, got {eps2d}")

    if means.dim() != 2 or means.shape[1] != 3:
        _fail(f"means must be [N, 3], got {_shape(means)}")
    n = means.shape[0]
    for name, t, tail in (("quats", quats, (4,)), ("scales", scales, (3,)), ("opacities", opacities, ())):
        if tuple(t.shape) != (n, *tail):
            _fail(f"{name} must be {list((n, *tail))} for {n} splats, got {_shape(t)}")
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4):
        _fail(f"viewmats must be [C, 4, 4], got {_shape(viewmats)}")
    c = viewmats.shape[0]
    if tuple(Ks.shape) != (c, 3, 3):
        _fail(f"Ks must be [{c}, 3, 3] for {c} cameras, got {_shape(Ks)}")

    if sh_degree is None:
        if not ((colors.dim() == 2 and colors.shape[0] == n) or (colors.dim() == 3 and colors.shape[:2] == (c, n))):
            _fail(f"colors must be [N, D] or [C, N, D] (N={n}, C={c}) without sh_degree, got {_shape(colors)}")
        d = colors.shape[-1]
    else:
        if isinstance(sh_degree, bool) or not isinstance(sh_degree, int) or not 0 <= sh_degree <= MAX_SH_DEGREE:
            _fail(f"sh_degree must be an int in 0..{MAX_SH_DEGREE}, got {sh_degree!r}")
        ok = (colors.dim() == 3 and colors.shape[0] == n) or (colors.dim() == 4 and colors.shape[:2] == (c, n))
        if not ok or colors.shape[-1] != 3:
            _fail(f"colors must be SH coefficients [N, K, 3] or [C, N, K, 3] (N={n}, C={c}), got {_shape(colors)}")
        if colors.shape[-2] < num_sh_bases(sh_degree):
            _fail(f"sh_degree {sh_degree} needs K >= {num_sh_bases(sh_degree)} coefficients, got K={colors.shape[-2]}")
        d = 3
    if backgrounds is not None and tuple(backgrounds.shape) != (c, d):
        _fail(f"backgrounds must be [C, D] = [{c}, {d}], got {_shape(backgrounds)}")

    for name, t in named.items():
        _check_finite(name, t)
    q, sc, op, k = _values(quats), _values(scales), _values(opacities), _values(Ks)
    sq = q * q  # column sums: a sum over the last axis of size 4 is ~20x slower in numpy
    if n and bool(((sq[:, 0] + sq[:, 1] + sq[:, 2] + sq[:, 3]) == 0).any()):
        _fail("quats contains a zero quaternion")
    if n and bool((sc < 0).any()):
        _fail("scales must be non-negative (pass activated scales, e.g. exp(log_scales))")
    if n and bool(((op < 0) | (op > 1)).any()):
        _fail("opacities must lie in [0, 1] (pass activated opacities, e.g. sigmoid(logits))")
    if bool((k[:, 0, 0] <= 0).any() | (k[:, 1, 1] <= 0).any()):
        _fail("Ks focal lengths must be positive")


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def rasterize(
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
    sh_degree: int | None = None,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    backend: str = "auto",
    packed: bool = True,
    eps2d: float = 0.3,
    tile_size: int = 16,
    radius_clip: float = 0.0,
    rasterize_mode: str = "classic",
    chunk_elements: int = torch_raster.DEFAULT_CHUNK_ELEMENTS,
    **kw: Any,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Render N 3D Gaussians into C pinhole cameras, with ``gsplat.rasterization`` semantics.

    Args:
        means: [N, 3] world positions. quats: [N, 4] wxyz (normalised internally).
        scales: [N, 3] activated scales. opacities: [N] activated opacities in [0, 1].
        colors: [N, D] / [C, N, D] colours, or with ``sh_degree`` SH coefficients [N, K, 3] /
            [C, N, K, 3] evaluated per view direction as ``max(SH + 0.5, 0)``.
        viewmats: [C, 4, 4] world-to-camera, OpenCV (+x right, +y down, +z forward). Ks: [C, 3, 3].
        width, height: image size in pixels.
        backgrounds: [C, D] colour behind the splats (depth channels always get 0).
        render_mode: "RGB", "D" (accumulated depth), "ED" (depth / alpha), "RGB+D", "RGB+ED".
        backend: "auto", "gsplat", "torch", "torch-pure" or "cpu-fast" (see the module doc).
        packed: meta holds per-visible-splat tensors [nnz, ...] with ``camera_ids`` and
            ``gaussian_ids`` (True) or dense [C, N, ...] tensors (False).
        rasterize_mode: "classic" or "antialiased" (opacity times the eps2d compensation).
        chunk_elements: memory bound of the pure path (elements of one tile-chunk tensor).
        **kw: further ``gsplat.rasterization`` options (passed through to gsplat; the torch
            backends accept them only at their neutral defaults).

    Returns:
        colors [C, H, W, D'] (D' = D, 1 or D + 1 with depth), alphas [C, H, W, 1], and meta with
        ``radii``, ``means2d``, ``depths``, ``conics``, ``opacities`` (packed or dense, see
        ``packed``), ``width``, ``height``, ``tile_size``, ``tile_width``, ``tile_height``,
        ``n_cameras``, ``backend`` (the one used); the pure path adds gsplat's tile lists
        ``tiles_per_gauss``, ``flatten_ids`` and ``isect_offsets``.
    """
    _validate(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane,
        sh_degree, backgrounds, render_mode, backend, eps2d, tile_size,
    )  # fmt: skip
    if rasterize_mode not in ("classic", "antialiased"):
        _fail(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    needs_grad = _needs_grad(means, quats, scales, opacities, colors, viewmats, Ks, backgrounds)
    chosen = select_backend(backend, means.device, means.dtype, needs_grad)
    if not chosen.own:
        req = RasterRequest(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane,
            sh_degree, backgrounds, render_mode, packed, eps2d, tile_size, radius_clip, rasterize_mode,
            chunk_elements, needs_grad, kw,
        )  # fmt: skip
        return chosen.render(req)

    for key, value in kw.items():
        if key in _IGNORED_KWARGS:
            continue
        if key not in _NEUTRAL_KWARGS:
            _fail(f"unknown option {key!r}")
        if value is not _NEUTRAL_KWARGS[key] and value != _NEUTRAL_KWARGS[key]:
            _fail(f"option {key}={value!r} is only supported by the gsplat backend")

    dtype = means.dtype
    quats, scales, opacities, colors, viewmats, Ks = (
        t.to(dtype) for t in (quats, scales, opacities, colors, viewmats, Ks)
    )
    if backgrounds is not None:
        backgrounds = backgrounds.to(dtype)
    req = RasterRequest(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane,
        sh_degree, backgrounds, render_mode, packed, eps2d, tile_size, radius_clip, rasterize_mode,
        chunk_elements, needs_grad,
    )  # fmt: skip
    return chosen.render(req)
