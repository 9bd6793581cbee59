"""ARKit's 52 blendshapes on the built-in head, rig coefficients -> ARKit weights, Live Link Face CSV.

The mapping (``assets/head/arkit_builtin.json``) defines every ARKit shape on the built-in head as a
combination of its rig coefficients (:data:`COEFFICIENTS`: the expressions, jaw and eye rotations)
added to the head's rest pose (ARKit's neutral face has closed lips; the head closes its 2 mm rest
slit with ``lip_close = 1``). Shapes the head cannot make (cheek puff, tongue, asymmetric mouth
shifts...) are empty and stay at 0.

Converting a frame's coefficients ``c`` to ARKit weights ``a`` is a bounded least-squares problem in
*vertex space*: ``min_a |B (rest + M a - c)|^2 + sum_k lam_k a_k^2`` over ``0 <= a <= 1``, with ``B`` the
head's vertex displacement per unit of each coefficient at rest (exact for expressions, central
differences for rotations) and ``M`` the mapping. Symmetric rig coefficients spread evenly over the
left/right ARKit pairs (the small ridge ``lam_k = RIDGE |B M_k|^2`` picks the even split and keeps
opposite shapes such as eyeBlink/eyeWide from both turning on). Solved for all frames at once
by accelerated projected gradient (FISTA) on the Jacobi-preconditioned problem.

:func:`write_live_link_csv` writes Epic's Live Link Face CSV: ``Timecode, BlendShapeCount`` (61), the
52 shapes in the app's column order (:data:`LIVE_LINK_SHAPES`), then head yaw/pitch/roll and both eyes'
yaw/pitch/roll (radians).
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from l2t_gs.assets import asset_path
from l2t_gs.core.rotation import axis_angle_to_matrix
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path
from l2t_gs.rig.flame import FlameRig
from l2t_gs.rig.model import HeadModel

__all__ = [
    "ARKIT_SHAPES",
    "LIVE_LINK_SHAPES",
    "LIVE_LINK_ROTATIONS",
    "ROTATION_COEFFICIENTS",
    "RIDGE",
    "ArkitMapping",
    "load_arkit_mapping",
    "rig_coefficients",
    "euler_yaw_pitch_roll",
    "write_live_link_csv",
]

#: The 52 ARKit blendshape names (ARFaceAnchor.BlendShapeLocation), in the Live Link Face CSV column
#: order (the app lists JawRight before JawLeft and MouthRight before MouthLeft).
ARKIT_SHAPES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawRight", "jawLeft", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthRight", "mouthLeft", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
#: The CSV column names of the shapes (Live Link Face capitalises them).
LIVE_LINK_SHAPES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_SHAPES)
LIVE_LINK_ROTATIONS: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
#: Rotation coefficients after the head's expressions (axis-angle components, radians).
ROTATION_COEFFICIENTS: tuple[str, ...] = (
    "jaw_x", "jaw_y", "jaw_z", "left_eye_x", "left_eye_y", "left_eye_z", "right_eye_x", "right_eye_y", "right_eye_z",
)  # fmt: skip
_MAPPING_FILE = ("head", "arkit_builtin.json")
RIDGE = 1e-3  # per shape, relative to its own diagonal entry of the normal matrix
_FD_STEP = 1e-4  # radians, central differences of the rotation coefficients


@dataclass
class ArkitMapping:
    """ARKit shapes as rig combinations on one head.

    Attributes:
        coefficients: names of the rig coefficients ``C`` (the head's expressions, then
            :data:`ROTATION_COEFFICIENTS`). rest: ``[C]`` ARKit's neutral. matrix: ``[C, 52]``, column
            ``k`` = shape ``k`` at weight 1. metric: ``[C, C]`` ``B^T B`` (square metres per unit^2).
    """

    coefficients: list[str]
    rest: np.ndarray
    matrix: np.ndarray
    metric: np.ndarray

    def to_coefficients(self, weights: np.ndarray) -> np.ndarray:
        """ARKit weights ``[T, 52]`` -> rig coefficients ``[T, C]`` (``rest + M a``)."""
        return self.rest + np.asarray(weights, dtype=np.float64) @ self.matrix.T

    def from_coefficients(self, coeffs: np.ndarray, iterations: int = 600) -> np.ndarray:
        """Rig coefficients ``[T, C]`` -> ARKit weights ``[T, 52]`` in ``[0, 1]`` (float32), see the module doc."""
        c = np.asarray(coeffs, dtype=np.float64).reshape(-1, len(self.coefficients)) - self.rest
        h = self.matrix.T @ self.metric @ self.matrix  # [52, 52]
        diag = np.diag(h)
        h = h + np.diag(RIDGE * np.where(diag > 0, diag, 1.0))
        f = c @ self.metric @ self.matrix  # [T, 52]
        d = np.sqrt(np.diag(h))  # Jacobi scaling: b = d * a, b in [0, d]
        hs = h / d[:, None] / d[None, :]
        fs = f / d
        step = 1.0 / np.linalg.eigvalsh(hs).max()
        b = np.zeros_like(fs)
        y, t = b, 1.0
        for _ in range(iterations):
            b_next = np.clip(y - step * (y @ hs - fs), 0.0, d)
            t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            y = b_next + ((t - 1.0) / t_next) * (b_next - b)
            b, t = b_next, t_next
        return np.clip(b / d, 0.0, 1.0).astype(np.float32)


def _vertex_jacobian(head: HeadModel, rest: np.ndarray) -> np.ndarray:
    """``B [3V, C]``: vertex displacement per unit of each coefficient at ``rest`` (float64)."""
    h = head.to(dtype=torch.float64)
    e = h.n_expr
    rig = FlameRig(h)
    cols = [h.exprdirs.numpy().reshape(-1, e)]
    expr = torch.as_tensor(rest[:e])[None]
    n_rot = len(ROTATION_COEFFICIENTS)
    delta = torch.zeros(2 * n_rot, n_rot, dtype=torch.float64)
    for i in range(n_rot):
        delta[2 * i, i], delta[2 * i + 1, i] = _FD_STEP, -_FD_STEP
    with torch.no_grad():
        v = rig(expr=expr, jaw_pose=delta[:, 0:3], eyes_pose=delta[:, 3:9]).reshape(2 * n_rot, -1).numpy()
    cols.append(((v[0::2] - v[1::2]) / (2 * _FD_STEP)).T)
    return np.concatenate(cols, axis=1)


@functools.cache
def _mapping_file() -> dict:
    with open(asset_path(*_MAPPING_FILE), encoding="utf-8") as f:
        return json.load(f)


def load_arkit_mapping(head: HeadModel) -> ArkitMapping:
    """The ARKit mapping of the built-in head (its expression names must be those the file uses)."""
    spec = _mapping_file()
    names = list(head.expr_names) + list(ROTATION_COEFFICIENTS)
    index = {n: i for i, n in enumerate(names)}
    if set(spec["shapes"]) != set(ARKIT_SHAPES):
        raise L2TError("the ARKit mapping file does not define exactly the 52 ARKit shapes")

    def vec(entry: dict, what: str) -> np.ndarray:
        out = np.zeros(len(names))
        for key, value in entry.items():
            if key not in index:
                raise L2TError(
                    f"ARKit mapping: {what} uses {key!r}, which head {head.name!r} does not have "
                    "(the mapping is defined on the built-in head)"
                )
            out[index[key]] = float(value)
        return out

    rest = vec(spec.get("rest", {}), "rest")
    matrix = np.stack([vec(spec["shapes"][n], n) for n in ARKIT_SHAPES], axis=1)
    b = _vertex_jacobian(head, rest)
    return ArkitMapping(coefficients=names, rest=rest, matrix=matrix, metric=b.T @ b)


def rig_coefficients(expr: np.ndarray, jaw_pose: np.ndarray, eyes_pose: np.ndarray | None = None) -> np.ndarray:
    """Per-frame rig coefficients ``[T, E + 9]`` from ``expr [T, E]``, ``jaw_pose [T, 3]``, ``eyes_pose [T, 6]``."""
    expr = np.asarray(expr, dtype=np.float64)
    eyes = np.zeros((expr.shape[0], 6)) if eyes_pose is None else np.asarray(eyes_pose, dtype=np.float64)
    return np.concatenate([expr, np.asarray(jaw_pose, dtype=np.float64), eyes], axis=1)


def euler_yaw_pitch_roll(axis_angle: np.ndarray) -> np.ndarray:
    """Axis-angle ``[..., 3]`` -> ``[..., 3]`` (yaw about y, pitch about x, roll about z; R = Ry Rx Rz), radians.

    In the head's frame (y up, the face looking along +z) positive yaw turns to the subject's left and
    positive pitch looks down.
    """
    r = axis_angle_to_matrix(torch.as_tensor(np.asarray(axis_angle, dtype=np.float64))).numpy()
    pitch = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.stack([yaw, pitch, roll], axis=-1)


def _timecode(i: int, fps: float) -> str:
    """Frame ``i``'s Live Link timecode ``HH:MM:SS:FF.fff`` (frame number at ``fps`` plus its fraction)."""
    t = i / fps
    whole = math.floor(t + 1e-9)
    frames = (t - whole) * fps
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    ff = math.floor(frames + 1e-6)
    frac = min(999, round((frames - ff) * 1000))
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.{frac:03d}"


def write_live_link_csv(path: str | os.PathLike, weights: np.ndarray, rotations: np.ndarray, fps: float) -> None:
    """Write ARKit ``weights [T, 52]`` and ``rotations [T, 9]`` (head yaw/pitch/roll, left eye, right eye;
    radians) as a Live Link Face CSV, frame ``i`` at time ``i / fps``, atomically."""
    w = np.asarray(weights, dtype=np.float64)
    rot = np.asarray(rotations, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != len(ARKIT_SHAPES) or rot.shape != (w.shape[0], len(LIVE_LINK_ROTATIONS)):
        raise L2TError(f"Live Link CSV: need [T, 52] weights and [T, 9] rotations, got {w.shape} and {rot.shape}")
    count = len(ARKIT_SHAPES) + len(LIVE_LINK_ROTATIONS)
    lines = [",".join(("Timecode", "BlendShapeCount", *LIVE_LINK_SHAPES, *LIVE_LINK_ROTATIONS))]
    values = np.concatenate([w, rot], axis=1)
    for i, row in enumerate(values):
        lines.append(f"{_timecode(i, fps)},{count}," + ",".join(f"{x:.6f}" for x in row))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
