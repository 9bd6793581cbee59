"""Gaussian splat rendering: :func:`rasterize` (backends in one registry) and camera helpers.

The names below load with their modules on first use, so that importing a light submodule (the camera
views or the backend names a command line's ``--help`` lists) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from l2t_gs.core.lazy import lazy_exports

#: exported name -> the submodule that defines it
_EXPORTS: dict[str, str] = {
    "BACKENDS": "backends",
    "HEAD_CAMERA_PRESETS": "views",
    "RENDER_MODES": "rasterizer",
    "backend_choices": "backends",
    "eval_sh": "sh",
    "gsplat_status": "backend_gsplat",
    "head_camera": "camera",
    "intrinsics": "camera",
    "look_at": "camera",
    "orbit_viewmats": "camera",
    "rasterize": "rasterizer",
    "rgb_to_sh": "sh",
    "sh_to_color": "sh",
    "sh_to_rgb": "sh",
    "to_uint8": "image",
}

__all__ = [
    "BACKENDS",
    "HEAD_CAMERA_PRESETS",
    "RENDER_MODES",
    "backend_choices",
    "eval_sh",
    "gsplat_status",
    "head_camera",
    "intrinsics",
    "look_at",
    "orbit_viewmats",
    "rasterize",
    "rgb_to_sh",
    "sh_to_color",
    "sh_to_rgb",
    "to_uint8",
]

if TYPE_CHECKING:
    from l2t_gs.render.backend_gsplat import gsplat_status
    from l2t_gs.render.backends import BACKENDS, backend_choices
    from l2t_gs.render.camera import head_camera, intrinsics, look_at, orbit_viewmats
    from l2t_gs.render.image import to_uint8
    from l2t_gs.render.rasterizer import RENDER_MODES, rasterize
    from l2t_gs.render.sh import eval_sh, rgb_to_sh, sh_to_color, sh_to_rgb
    from l2t_gs.render.views import HEAD_CAMERA_PRESETS


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
