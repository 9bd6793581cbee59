"""The named camera views (no torch: the command line lists them in its ``--help``).

:func:`l2t_gs.render.camera.head_camera` places them around a head; :mod:`l2t_gs.render.preview` adds
a close-up of the mouth for mesh previews.
"""

from __future__ import annotations

#: name -> (azimuth degrees, elevation degrees); azimuth 0 is the front (+z), 90 the subject's left (+x).
HEAD_CAMERA_PRESETS: dict[str, tuple[float, float]] = {
    "front": (0.0, 0.0),
    "three-quarter": (35.0, 5.0),
    "side": (90.0, 0.0),
    "orbit": (0.0, 5.0),  # azimuth = 360 * frame
}
#: Presets for a still image (every preset but the moving orbit).
STILL_VIEWS: tuple[str, ...] = tuple(p for p in HEAD_CAMERA_PRESETS if p != "orbit")
#: Cameras of a talking video (``l2t-gs render --camera``): every preset.
RENDER_CAMERAS: tuple[str, ...] = tuple(HEAD_CAMERA_PRESETS)
#: Views of a mesh preview: the still camera presets plus a close-up of the mouth.
PREVIEW_VIEWS: tuple[str, ...] = (*STILL_VIEWS, "mouth")
