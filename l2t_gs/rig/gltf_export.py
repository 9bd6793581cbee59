"""A FLAME-format head as a glTF skinned mesh with morph targets, and a streamed glTF animation export.

The glTF rig (:func:`head_gltf_rig`) is the head's own: the neutral mesh as the base, the expression
basis plus the pose-corrective basis of the animated joints (9 targets per joint, weights ``R - I``)
as morph targets, and the five FLAME joints (``head`` = FLAME's global joint, ``neck``, ``jaw``,
``left_eye``, ``right_eye``) with the head's skinning weights, bound at the neutral head's joint
positions. For the built-in head (its joints do not move with expressions) this reproduces the rig's
vertices exactly; for heads whose joints do move with the expression, three more targets per animated
joint (its skinning weight along x, y, z) absorb the joint's drift to first order. Each frame's
weights are *fitted* to the frame's vertices (:meth:`~l2t_gs.io.gltf.SkinnedMorphRig.fit`), and the
largest vertex error over the clip is kept (:attr:`HeadAnimationWriter.max_error`) and written into
the file's ``asset.extras``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from l2t_gs.errors import L2TError
from l2t_gs.io.gltf import SkinnedMorphRig, write_glb
from l2t_gs.rig.flame import FLAME_JOINTS
from l2t_gs.rig.model import HeadModel

__all__ = ["GLTF_JOINTS", "head_gltf_rig", "HeadAnimationWriter"]

#: glTF joint names, in FLAME joint order.
GLTF_JOINTS = ("head", "neck", "jaw", "left_eye", "right_eye")
_DRIFT_TOL = 1e-5  # metres of joint motion per unit expression below which no drift targets are added


def head_gltf_rig(
    head: HeadModel, neutral: np.ndarray | None = None, animated: tuple[str, ...] = ("jaw",)
) -> SkinnedMorphRig:
    """The glTF rig of ``head`` (neutral mesh ``[V, 3]``, default its template); ``animated``: FLAME joints
    whose pose-correctives become morph targets (their rotations are animated either way)."""
    if head.n_joints != len(FLAME_JOINTS):
        raise L2TError(f"glTF export needs a FLAME-format head with {len(FLAME_JOINTS)} joints, got {head.n_joints}")
    h = head.to(dtype=torch.float64)
    base = h.v_template.numpy() if neutral is None else np.asarray(neutral, dtype=np.float64)
    v = h.n_verts
    joints = h.J_regressor.numpy() @ base
    basis = [h.exprdirs.numpy().transpose(2, 0, 1)]
    names = [f"expr_{n}" for n in (h.expr_names or [str(i) for i in range(h.n_expr)])]
    parents = [int(p) for p in h.parents.tolist()]
    weights = h.lbs_weights.numpy()
    posedirs = h.posedirs.numpy()
    joint_drift = np.abs(np.einsum("jv,vce->ejc", h.J_regressor.numpy(), h.exprdirs.numpy())).max(initial=0.0)
    for name in animated:
        j = FLAME_JOINTS.index(name)
        if j == 0:
            continue  # the root has no pose-correctives
        rows = posedirs[(j - 1) * 9 : j * 9].reshape(9, v, 3)
        keep = np.abs(rows).reshape(9, -1).max(axis=1) > 0  # heads without correctives for a joint
        basis.append(rows[keep])
        names += [f"{GLTF_JOINTS[j]}_corrective_{i // 3}{i % 3}" for i in np.flatnonzero(keep)]
        if joint_drift > _DRIFT_TOL:
            sub = {j}
            for c, p in enumerate(parents):
                if p in sub:
                    sub.add(c)
            w = weights[:, sorted(sub)].sum(1)
            basis.append(np.einsum("v,kc->kvc", w, np.eye(3)))
            names += [f"{GLTF_JOINTS[j]}_drift_{a}" for a in "xyz"]
    return SkinnedMorphRig(
        base=base,
        basis=np.concatenate(basis),
        joints=joints,
        parents=parents,
        weights=weights,
        joint_names=list(GLTF_JOINTS),
        target_names=names,
    )


class HeadAnimationWriter:
    """Collects frames (vertices + FLAME joint rotations), fits their morph weights, writes a ``.glb``.

    Memory per frame is the weights and rotations only (``K + 15`` floats), so hour-long clips stream.
    """

    def __init__(self, rig: SkinnedMorphRig) -> None:
        self.rig = rig
        self.morph: list[np.ndarray] = []
        self.pose: list[np.ndarray] = []
        self.max_error = 0.0

    def add(self, vertices: np.ndarray, pose: np.ndarray) -> None:
        """``vertices [N, V, 3]``, ``pose [N, 5, 3]`` axis-angle (global, neck, jaw, left eye, right eye)."""
        w, err = self.rig.fit(vertices, pose)
        self.morph.append(w)
        self.pose.append(np.asarray(pose, dtype=np.float32).reshape(w.shape[0], -1, 3))
        self.max_error = max(self.max_error, float(err.max(initial=0.0)))

    def write(
        self,
        path: str | os.PathLike,
        faces: np.ndarray,
        fps: float,
        duration: float | None = None,
        colors: np.ndarray | None = None,
        name: str = "head",
    ) -> int:
        """Write the collected frames; returns the file size in bytes."""
        if not self.morph:
            raise L2TError("no frames to write to the glTF file")
        extras = {"fps": fps, "frames": sum(len(m) for m in self.morph), "max_vertex_error_m": self.max_error}
        return write_glb(
            path,
            self.rig,
            faces,
            np.concatenate(self.morph),
            np.concatenate(self.pose),
            fps,
            duration=duration,
            colors=colors,
            name=name,
            extras=extras,
        )
