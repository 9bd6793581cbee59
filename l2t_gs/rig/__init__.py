"""FLAME rig: head model container, loaders (FLAME pickles without chumpy, .npz), LBS and rotations."""

from l2t_gs.core.rotation import (
    axis_angle_to_matrix,
    axis_angle_to_quat,
    matrix_to_axis_angle,
    matrix_to_quat,
    quat_conjugate,
    quat_multiply,
    quat_normalize,
    quat_rotate,
    quat_to_axis_angle,
    quat_to_matrix,
    skew,
)
from l2t_gs.rig.expr_jaw import ExprJawRig
from l2t_gs.rig.flame import FLAME_JOINTS, FlameRig
from l2t_gs.rig.flame_teeth import GA_TEETH, add_gaussian_avatars_teeth, has_gaussian_avatars_teeth
from l2t_gs.rig.lbs import (
    batch_rigid_transform,
    blend_shapes,
    lbs,
    pose_feature,
    skin_vertices,
    vertices2joints,
)
from l2t_gs.rig.loader import (
    BUILTIN_HEAD,
    head_model_from_arrays,
    load_flame_masks,
    load_head_model,
    resolve_head_spec,
    save_head_model,
)
from l2t_gs.rig.model import HEAD_EXTENSIONS, HeadModel, apply_head_extensions

__all__ = [
    "BUILTIN_HEAD",
    "ExprJawRig",
    "FLAME_JOINTS",
    "FlameRig",
    "GA_TEETH",
    "HEAD_EXTENSIONS",
    "HeadModel",
    "add_gaussian_avatars_teeth",
    "apply_head_extensions",
    "axis_angle_to_matrix",
    "axis_angle_to_quat",
    "batch_rigid_transform",
    "blend_shapes",
    "has_gaussian_avatars_teeth",
    "head_model_from_arrays",
    "lbs",
    "load_flame_masks",
    "load_head_model",
    "matrix_to_axis_angle",
    "matrix_to_quat",
    "pose_feature",
    "quat_conjugate",
    "quat_multiply",
    "quat_normalize",
    "quat_rotate",
    "quat_to_axis_angle",
    "quat_to_matrix",
    "resolve_head_spec",
    "save_head_model",
    "skew",
    "skin_vertices",
    "vertices2joints",
]
