"""Gaussian splat rendering: :func:`rasterize` (gsplat, pure torch or compiled CPU) and camera helpers."""

from l2t_gs.render.camera import HEAD_CAMERA_PRESETS, head_camera, intrinsics, look_at, orbit_viewmats
from l2t_gs.render.rasterize import BACKENDS, RENDER_MODES, gsplat_status, rasterize
from l2t_gs.render.sh import eval_sh, rgb_to_sh, sh_to_color, sh_to_rgb

__all__ = [
    "BACKENDS",
    "HEAD_CAMERA_PRESETS",
    "RENDER_MODES",
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
]
