"""Gaussian splat rendering: :func:`rasterize` (backends in one registry) and camera helpers."""

from l2t_gs.render.backend_gsplat import gsplat_status
from l2t_gs.render.backends import BACKENDS, backend_choices
from l2t_gs.render.camera import HEAD_CAMERA_PRESETS, head_camera, intrinsics, look_at, orbit_viewmats
from l2t_gs.render.image import to_uint8
from l2t_gs.render.rasterize import RENDER_MODES, rasterize
from l2t_gs.render.sh import eval_sh, rgb_to_sh, sh_to_color, sh_to_rgb

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
