"""``FlameRig``: the FLAME deformation model as a differentiable ``torch.nn.Module``.

Order of operations:

1. ``v_shaped = v_template + shapedirs . shape + exprdirs . expr + static_offset + dynamic_offset``;
2. ``J = J_regressor . v_shaped``;
3. ``v_posed = v_shaped + posedirs^T . vec(R_j - I)`` over joints 1..4 (not the global joint);
4. linear blend skinning along the kinematic tree;
5. ``+ translation``.

Offsets: GaussianAvatars' FLAME adds ``static_offset`` to the shaped template right after the
shape/expression blendshapes, i.e. before joint regression and pose correctives (so offsets move the
joints); it accepts ``dynamic_offset`` but never applies it. VHAP, the tracker that writes the
``flame_param.npz`` files GaussianAvatars reads, adds ``dynamic_offset`` at that same point. This rig
adds whatever offsets it is given, summed into ``v_shaped`` before step 2; whether a file's
``dynamic_offset`` is passed in at all follows that file's meaning and is decided by its reader
(``l2t_gs.gaussians.avatar_io.use_dynamic_offset``, ``docs/avatar-format.md``).

GaussianAvatars' teeth (120 vertices, 168 faces appended to FLAME) are a head-model extension,
:mod:`l2t_gs.rig.flame_teeth`; the rig needs nothing special for them.

Pose vector order (5 joints): global rotation, neck, jaw, left eye, right eye; ``eyes_pose`` is
[left eye (3), right eye (3)].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from l2t_gs.errors import L2TError
from l2t_gs.rig.lbs import blend_shapes, lbs, vertices2joints
from l2t_gs.rig.model import HeadModel

__all__ = ["FLAME_JOINTS", "FlameRig"]

#: Joint names in FLAME's kinematic order.
FLAME_JOINTS = ("global", "neck", "jaw", "left_eye", "right_eye")


class FlameRig(nn.Module):
    """Differentiable FLAME rig built from a :class:`HeadModel`.

    The model arrays become non-persistent buffers (they follow ``.to()``/``.double()`` but are not
    written into ``state_dict``: a rig is rebuilt from its head model). ``self.head`` keeps the
    head model it was built from (metadata: masks, component names, source).
    """

    v_template: Tensor
    shapedirs: Tensor
    exprdirs: Tensor
    posedirs: Tensor
    J_regressor: Tensor
    lbs_weights: Tensor
    parents: Tensor
    faces: Tensor

    def __init__(self, model: HeadModel) -> None:
        super().__init__()
        model.validate()
        if model.n_joints != len(FLAME_JOINTS):
            raise L2TError(
                f"head model {model.name!r} has {model.n_joints} joints; the FLAME rig needs "
                f"{len(FLAME_JOINTS)} ({', '.join(FLAME_JOINTS)})"
            )
        self.head = model
        for name in (
            "v_template",
            "shapedirs",
            "exprdirs",
            "posedirs",
            "J_regressor",
            "lbs_weights",
            "parents",
            "faces",
        ):
            self.register_buffer(name, getattr(model, name).clone(), persistent=False)
        self._parents_list: list[int] = [int(p) for p in model.parents.tolist()]

    # ------------------------------------------------------------------ sizes
    @property
    def n_verts(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def n_expr(self) -> int:
        return int(self.exprdirs.shape[-1])

    @property
    def n_joints(self) -> int:
        return int(self.parents.shape[0])

    # ------------------------------------------------------------------ inputs
    def _prep(self, x: Tensor | None, name: str, tail: tuple[int, ...], pad: bool = False) -> Tensor | None:
        """Cast ``x`` to the rig's dtype/device, check its trailing shape, give it a batch dim.

        Accepts ``tail``-shaped (shared by the batch) or [B, *tail]. With ``pad``, a shorter last
        dimension is zero-padded (coefficient vectors).
        """
        if x is None:
            return None
        x = torch.as_tensor(x).to(dtype=self.v_template.dtype, device=self.v_template.device)
        if x.ndim == len(tail):
            x = x.unsqueeze(0)
        if x.ndim != len(tail) + 1:
            raise L2TError(
                f"FLAME {name} must be {list(tail)} or [B, {', '.join(map(str, tail))}], got {list(x.shape)}"
            )
        if pad and x.shape[-1] != tail[-1]:
            if x.shape[-1] > tail[-1]:
                raise L2TError(f"FLAME {name} has {x.shape[-1]} coefficients; the head model has {tail[-1]}")
            x = torch.nn.functional.pad(x, (0, tail[-1] - x.shape[-1]))
        if tuple(x.shape[1:]) != tail:
            raise L2TError(f"FLAME {name} must be [B, {', '.join(map(str, tail))}], got {list(x.shape)}")
        return x

    @staticmethod
    def _batch_size(tensors: dict[str, Tensor | None]) -> int:
        sizes = {name: t.shape[0] for name, t in tensors.items() if t is not None and t.shape[0] != 1}
        if len(set(sizes.values())) > 1:
            desc = ", ".join(f"{k}={v}" for k, v in sizes.items())
            raise L2TError(f"FLAME parameters disagree on the batch size: {desc}")
        return next(iter(sizes.values()), 1)

    def _v_shaped(
        self,
        shape: Tensor | None,
        expr: Tensor | None,
        static_offset: Tensor | None,
        dynamic_offset: Tensor | None,
    ) -> Tensor:
        """Template + blendshapes + offsets; [1 or B, V, 3] (stays at batch 1 when nothing varies)."""
        v = self.v_template.unsqueeze(0)
        if shape is not None and self.n_shape:
            v = v + blend_shapes(shape, self.shapedirs)
        if expr is not None and self.n_expr:
            v = v + blend_shapes(expr, self.exprdirs)
        if static_offset is not None:
            v = v + static_offset
        if dynamic_offset is not None:
            v = v + dynamic_offset
        return v

    # ------------------------------------------------------------------ API
    def forward(
        self,
        shape: Tensor | None = None,
        expr: Tensor | None = None,
        rotation: Tensor | None = None,
        neck_pose: Tensor | None = None,
        jaw_pose: Tensor | None = None,
        eyes_pose: Tensor | None = None,
        translation: Tensor | None = None,
        static_offset: Tensor | None = None,
        dynamic_offset: Tensor | None = None,
        return_joints: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Posed vertices [B, V, 3] (and posed joints [B, J, 3] with ``return_joints``).

        Args (each optional, zeros when missing; each may omit the batch dim to share it):
            shape: [B, S'] identity coefficients, S' <= S (zero-padded).
            expr: [B, E'] expression coefficients, E' <= E (zero-padded).
            rotation, neck_pose, jaw_pose: [B, 3] axis-angle (radians).
            eyes_pose: [B, 6] left eye then right eye, axis-angle.
            translation: [B, 3], added after skinning.
            static_offset: [V, 3] or [B, V, 3]; dynamic_offset: [B, V, 3] per-vertex offsets in
                the canonical space (before joint regression, see the module docstring).

        B is taken from whichever inputs carry a batch dimension > 1 (1 by default).
        """
        v = self.n_verts
        p = {
            "shape": self._prep(shape, "shape", (self.n_shape,), pad=True),
            "expr": self._prep(expr, "expr", (self.n_expr,), pad=True),
            "rotation": self._prep(rotation, "rotation", (3,)),
            "neck_pose": self._prep(neck_pose, "neck_pose", (3,)),
            "jaw_pose": self._prep(jaw_pose, "jaw_pose", (3,)),
            "eyes_pose": self._prep(eyes_pose, "eyes_pose", (6,)),
            "translation": self._prep(translation, "translation", (3,)),
            "static_offset": self._prep(static_offset, "static_offset", (v, 3)),
            "dynamic_offset": self._prep(dynamic_offset, "dynamic_offset", (v, 3)),
        }
        b = self._batch_size(p)
        v_shaped = self._v_shaped(p["shape"], p["expr"], p["static_offset"], p["dynamic_offset"])

        zeros3 = self.v_template.new_zeros(1, 3)
        parts = [
            p["rotation"] if p["rotation"] is not None else zeros3,
            p["neck_pose"] if p["neck_pose"] is not None else zeros3,
            p["jaw_pose"] if p["jaw_pose"] is not None else zeros3,
            p["eyes_pose"] if p["eyes_pose"] is not None else self.v_template.new_zeros(1, 6),
        ]
        full_pose = torch.cat([x.expand(b, -1) for x in parts], dim=1).reshape(b, self.n_joints, 3)

        verts, joints, _ = lbs(
            full_pose, v_shaped, self.posedirs, self.J_regressor, self._parents_list, self.lbs_weights
        )
        if p["translation"] is not None:
            verts = verts + p["translation"][:, None, :]
            joints = joints + p["translation"][:, None, :]
        return (verts, joints) if return_joints else verts

    def joints_rest(
        self,
        shape: Tensor | None = None,
        expr: Tensor | None = None,
        static_offset: Tensor | None = None,
    ) -> Tensor:
        """Rest-pose joint locations [B, J, 3] (B = 1 when no input is batched)."""
        p = {
            "shape": self._prep(shape, "shape", (self.n_shape,), pad=True),
            "expr": self._prep(expr, "expr", (self.n_expr,), pad=True),
            "static_offset": self._prep(static_offset, "static_offset", (self.n_verts, 3)),
        }
        b = self._batch_size(p)
        v_shaped = self._v_shaped(p["shape"], p["expr"], p["static_offset"], None)
        return vertices2joints(self.J_regressor, v_shaped).expand(b, -1, -1)

    def extra_repr(self) -> str:
        return f"name={self.head.name!r}, V={self.n_verts}, J={self.n_joints}, shape={self.n_shape}, expr={self.n_expr}"
