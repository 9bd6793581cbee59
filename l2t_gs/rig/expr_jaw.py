"""``ExprJawRig``: FLAME skinning restricted to expression + jaw, exact and fast (optionally on a few vertices)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from l2t_gs.core.rotation import axis_angle_to_matrix
from l2t_gs.rig.flame import FLAME_JOINTS

__all__ = ["ExprJawRig"]


class ExprJawRig(nn.Module):
    """FLAME linear blend skinning restricted to expression + jaw (every other joint at rest), exact.

    ``coeffs [N, E + 3]`` (``E`` leading expression coefficients, jaw axis-angle) -> vertex offsets
    ``[N, K, 3]`` from the neutral head, equal to ``rig(expr=, jaw_pose=) - rig()`` of the
    :class:`~l2t_gs.rig.FlameRig` it is built from, at the ``vertex_ids`` given (``K`` of them) or at
    every vertex (``K = V``). With all other joints at rest their skinning transforms are the
    identity, so LBS reduces to ``v = v_posed + w_jaw (R - I)(v_posed - J_jaw)`` (``w_jaw``: summed
    skinning weights of the jaw and its descendants) and only the jaw's 9 pose-corrective rows
    matter: a few large matrix products instead of per-vertex 4x4 blends (several times faster on
    CPU, in training and inference). The jaw joint is regressed from the whole expression-shaped head
    (its regression is precomputed per expression component), so a vertex subset is exact too.
    Differentiable.
    """

    exprdirs: Tensor
    posedirs: Tensor
    v_template: Tensor
    j_jaw0: Tensor
    j_jaw_expr: Tensor
    w_jaw: Tensor

    def __init__(self, rig: Any, n_expr: int, vertex_ids: Sequence[int] | Tensor | None = None) -> None:
        super().__init__()
        jaw = FLAME_JOINTS.index("jaw")
        dirs_all = rig.exprdirs[:, :, :n_expr]  # [V, 3, E]
        ids = (
            torch.arange(rig.n_verts)
            if vertex_ids is None
            else torch.as_tensor(vertex_ids, dtype=torch.long).reshape(-1)
        )
        k = int(ids.shape[0])
        parents = [int(p) for p in rig.parents.tolist()]
        subtree = {jaw}
        for j in range(len(parents)):
            if parents[j] in subtree:
                subtree.add(j)
        posedirs = rig.posedirs[(jaw - 1) * 9 : jaw * 9].reshape(9, rig.n_verts, 3)[:, ids]
        self.n_expr, self.n_verts = n_expr, k
        self.register_buffer("exprdirs", dirs_all[ids].reshape(k * 3, n_expr).T.contiguous(), persistent=False)
        self.register_buffer("posedirs", posedirs.reshape(9, k * 3).contiguous(), persistent=False)
        self.register_buffer("v_template", rig.v_template[ids].clone(), persistent=False)
        self.register_buffer("j_jaw0", rig.J_regressor[jaw] @ rig.v_template, persistent=False)
        self.register_buffer("j_jaw_expr", torch.einsum("v,vce->ec", rig.J_regressor[jaw], dirs_all), persistent=False)
        self.register_buffer("w_jaw", rig.lbs_weights[ids][:, sorted(subtree)].sum(1), persistent=False)

    def forward(self, coeffs: Tensor) -> Tensor:
        n, e = coeffs.shape[0], self.n_expr
        expr, jaw = coeffs[:, :e], coeffs[:, e : e + 3]
        rot = axis_angle_to_matrix(jaw) - torch.eye(3, dtype=coeffs.dtype, device=coeffs.device)  # R - I
        delta = (expr @ self.exprdirs + rot.reshape(n, 9) @ self.posedirs).view(n, self.n_verts, 3)
        joint = self.j_jaw0 + expr @ self.j_jaw_expr  # [N, 3] jaw joint of the expression-shaped head
        swing = (self.v_template + delta - joint[:, None]) @ rot.transpose(1, 2)  # (R - I)(v_posed - J)
        return delta + self.w_jaw[:, None] * swing
