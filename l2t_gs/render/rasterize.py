"""``rasterize``: gsplat-compatible Gaussian splat rendering with a gsplat, pure-torch or fast CPU backend.

Backends:

* ``"gsplat"`` — ``gsplat.rasterization`` (CUDA tensors and gsplat's CUDA kernels required).
* ``"torch"`` — this package's rasterizer: the compiled CPU path (:mod:`.cpu_fast`) for CPU calls
  that need no gradient (when numba is installed), the pure PyTorch path (:mod:`.torch_raster`)
  otherwise.
* ``"torch-pure"`` / ``"cpu-fast"`` — force one of the two (for tests and benchmarks).
* ``"auto"`` — ``"gsplat"`` for float32 CUDA tensors when its kernels work, ``"torch"`` otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.render import torch_raster
from l2t_gs.render.sh import MAX_SH_DEGREE, num_sh_bases, sh_to_color

RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
BACKENDS = ("auto", "gsplat", "torch", "torch-pure", "cpu-fast")

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


@functools.lru_cache(maxsize=1)
def fast_cpu_available() -> bool:
    """Whether the compiled CPU path can run (numba importable)."""
    return importlib.util.find_spec("numba") is not None


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
    if backend not in BACKENDS:
        _fail(f"backend must be one of {BACKENDS}, got {backend!r}")
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
    if n and bool(((q * q).sum(-1) == 0).any()):
        _fail("quats contains a zero quaternion")
    if n and bool((sc < 0).any()):
        _fail("scales must be non-negative (pass activated scales, e.g. exp(log_scales))")
    if n and bool(((op < 0) | (op > 1)).any()):
        _fail("opacities must lie in [0, 1] (pass activated opacities, e.g. sigmoid(logits))")
    if bool((k[:, 0, 0] <= 0).any() | (k[:, 1, 1] <= 0).any()):
        _fail("Ks focal lengths must be positive")


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _select_backend(backend: str, device: torch.device, dtype: torch.dtype, needs_grad: bool) -> str:
    """Resolve ``backend`` to "gsplat", "torch-pure" or "cpu-fast"."""
    if backend == "gsplat":
        ok, why = gsplat_status()
        if not ok:
            _fail(f"backend 'gsplat' is unavailable: {why}")
        if device.type != "cuda":
            _fail(f"backend 'gsplat' needs CUDA tensors, got tensors on {device}")
        if dtype != torch.float32:
            _fail(f"backend 'gsplat' needs float32 tensors, got {dtype}")
        return "gsplat"
    if backend == "auto" and device.type == "cuda" and dtype == torch.float32 and gsplat_status()[0]:
        return "gsplat"
    if backend == "cpu-fast":
        if not fast_cpu_available():
            _fail("backend 'cpu-fast' needs numba (pip install numba)")
        if device.type != "cpu":
            _fail(f"backend 'cpu-fast' needs CPU tensors, got tensors on {device}")
        if needs_grad:
            _fail("backend 'cpu-fast' is forward-only; use backend='torch-pure' for gradients")
        return "cpu-fast"
    if backend in ("auto", "torch") and device.type == "cpu" and not needs_grad and fast_cpu_available():
        return "cpu-fast"
    return "torch-pure"


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
    chosen = _select_backend(backend, means.device, means.dtype, needs_grad)

    if chosen == "gsplat":
        return _rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree, backgrounds=backgrounds,
            render_mode=render_mode, packed=packed, eps2d=eps2d, tile_size=tile_size,
            radius_clip=radius_clip, rasterize_mode=rasterize_mode, **kw,
        )  # fmt: skip

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
    c = viewmats.shape[0]
    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    meta: dict[str, Any] = {}

    if chosen == "cpu-fast":
        from l2t_gs.render import cpu_fast

        render_colors, render_alphas, fproj = cpu_fast.render(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, radius_clip=radius_clip,
            antialiased=rasterize_mode == "antialiased", sh_degree=sh_degree, backgrounds=backgrounds,
            render_mode=render_mode, tile_size=tile_size,
        )  # fmt: skip
        radii, means2d, depths, conics, ops = fproj.radii, fproj.means2d, fproj.depths, fproj.conics, fproj.opacities
        cam_ids, gauss_ids = (torch.from_numpy(i) for i in np.nonzero((fproj.radii.numpy() > 0).all(-1)))
    else:
        proj = torch_raster.project_gaussians(
            means, quats, scales, viewmats, Ks, width, height,
            opacities=opacities, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
            radius_clip=radius_clip, calc_compensations=rasterize_mode == "antialiased",
        )  # fmt: skip
        assert proj.opacities is not None
        radii, means2d, depths, conics, ops = proj.radii, proj.means2d, proj.depths, proj.conics, proj.opacities
        cam_ids, gauss_ids = (radii > 0).all(dim=-1).nonzero(as_tuple=True)  # camera-major
        render_colors, render_alphas, isect_meta = _render_pure(
            means, colors, viewmats, proj, cam_ids, gauss_ids, width, height, sh_degree, backgrounds,
            render_mode, tile_size, packed, chunk_elements,
        )  # fmt: skip
        meta |= isect_meta

    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)], dim=-1
        )

    if packed:
        if chosen == "cpu-fast":  # no autograd here: gather with numpy (single-threaded, cheap)
            ci, gi = cam_ids.numpy(), gauss_ids.numpy()

            def gather(t: Tensor) -> Tensor:
                return torch.from_numpy(t.numpy()[ci, gi])
        else:

            def gather(t: Tensor) -> Tensor:
                return t[cam_ids, gauss_ids]

        meta |= {
            "batch_ids": torch.zeros_like(cam_ids),
            "camera_ids": cam_ids,
            "gaussian_ids": gauss_ids,
            "radii": gather(radii),
            "means2d": gather(means2d),
            "depths": gather(depths),
            "conics": gather(conics),
            "opacities": gather(ops),
        }
        if "packed_means2d" in meta:  # the tensor the pure path rendered from (its grad is meaningful)
            meta["means2d"] = meta.pop("packed_means2d")
    else:
        meta.pop("packed_means2d", None)
        meta |= {
            "batch_ids": None,
            "camera_ids": None,
            "gaussian_ids": None,
            "radii": radii,
            "means2d": means2d,
            "depths": depths,
            "conics": conics,
            "opacities": ops,
        }
    meta |= {
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "n_cameras": c,
        "n_batches": 1,
        "backend": chosen,
    }
    return render_colors, render_alphas, meta


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


def _rasterize_gsplat(*args: Any, **kwargs: Any) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Call ``gsplat.rasterization``; failures of its CUDA side become :class:`L2TError`."""
    from gsplat import rasterization

    try:
        render_colors, render_alphas, meta = rasterization(*args, **kwargs)
    except TypeError as exc:
        raise L2TError(f"rasterize: gsplat rejected the options: {exc}") from exc
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        raise L2TError(f"rasterize: gsplat failed: {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    meta["backend"] = "gsplat"
    return render_colors, render_alphas, meta
