"""The ``HeadModel`` container: the arrays of a FLAME-format rigged head as torch tensors."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from l2t_gs.core.registry import Registry
from l2t_gs.errors import L2TError

__all__ = ["HEAD_EXTENSIONS", "HeadModel", "apply_head_extensions"]


@dataclass
class HeadModel:
    """A FLAME-format head: template, blendshape bases, pose correctives, joints and skinning weights.

    Shapes (V vertices, F faces, J joints, S identity and E expression components):

    - ``v_template``  [V, 3] float
    - ``shapedirs``   [V, 3, S] float, identity basis
    - ``exprdirs``    [V, 3, E] float, expression basis
    - ``posedirs``    [9 * (J - 1), V * 3] float, pose-corrective basis (PyTorch layout; the raw
      FLAME pickle stores it as [V, 3, 9 * (J - 1)])
    - ``J_regressor`` [J, V] float, dense
    - ``lbs_weights`` [V, J] float
    - ``parents``     [J] long, ``parents[0] == -1``, ``parents[j] < j`` otherwise
    - ``faces``       [F, 3] long
    - ``masks``       region name -> LongTensor of vertex indices
    - ``extensions``  names of :data:`HEAD_EXTENSIONS` applied to the model loaded from ``source``
      (e.g. GaussianAvatars' teeth appended to a FLAME pickle)

    Treat instances as immutable; :meth:`to` returns a new one.
    """

    v_template: Tensor
    shapedirs: Tensor
    exprdirs: Tensor
    posedirs: Tensor
    J_regressor: Tensor
    lbs_weights: Tensor
    parents: Tensor
    faces: Tensor
    masks: dict[str, Tensor] = field(default_factory=dict)
    shape_names: list[str] = field(default_factory=list)
    expr_names: list[str] = field(default_factory=list)
    name: str = "head"
    source: str = ""
    extensions: tuple[str, ...] = ()

    @property
    def n_verts(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def n_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def n_shape(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def n_expr(self) -> int:
        return int(self.exprdirs.shape[-1])

    @property
    def n_joints(self) -> int:
        return int(self.parents.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.v_template.dtype

    @property
    def device(self) -> torch.device:
        return self.v_template.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> HeadModel:
        """A copy on ``device`` with float tensors cast to ``dtype`` (index tensors stay long)."""
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"HeadModel dtype must be a floating type, got {dtype}")

        def f(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype)

        def i(t: Tensor) -> Tensor:
            return t.to(device=device)

        return replace(
            self,
            v_template=f(self.v_template),
            shapedirs=f(self.shapedirs),
            exprdirs=f(self.exprdirs),
            posedirs=f(self.posedirs),
            J_regressor=f(self.J_regressor),
            lbs_weights=f(self.lbs_weights),
            parents=i(self.parents),
            faces=i(self.faces),
            masks={k: i(v) for k, v in self.masks.items()},
            shape_names=list(self.shape_names),
            expr_names=list(self.expr_names),
        )

    def validate(self) -> HeadModel:
        """Check that all arrays agree in size; raise :class:`L2TError` naming the first mismatch."""
        who = f"head model {self.name!r}" + (f" ({self.source})" if self.source else "")

        def bad(msg: str) -> L2TError:
            return L2TError(f"{who}: {msg}")

        vt = self.v_template
        if vt.ndim != 2 or vt.shape[1] != 3 or vt.shape[0] == 0:
            raise bad(f"v_template must be [V, 3], got {list(vt.shape)}")
        v = vt.shape[0]
        for nm, t in (("shapedirs", self.shapedirs), ("exprdirs", self.exprdirs)):
            if t.ndim != 3 or tuple(t.shape[:2]) != (v, 3):
                raise bad(f"{nm} must be [{v}, 3, K], got {list(t.shape)}")
        if self.parents.ndim != 1 or self.parents.shape[0] == 0:
            raise bad(f"parents must be [J], got {list(self.parents.shape)}")
        j = self.parents.shape[0]
        par = self.parents.tolist()
        if par[0] != -1 or any(not 0 <= p < k for k, p in enumerate(par) if k > 0):
            raise bad(f"kinematic tree must have parents[0] = -1 and parents[j] < j, got {par}")
        if tuple(self.J_regressor.shape) != (j, v):
            raise bad(f"J_regressor must be [{j}, {v}] (joints, vertices), got {list(self.J_regressor.shape)}")
        if tuple(self.lbs_weights.shape) != (v, j):
            raise bad(f"weights must be [{v}, {j}] (vertices, joints), got {list(self.lbs_weights.shape)}")
        if tuple(self.posedirs.shape) != (9 * (j - 1), 3 * v):
            raise bad(f"posedirs must be [{9 * (j - 1)}, {3 * v}], got {list(self.posedirs.shape)}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise bad(f"faces must be [F, 3], got {list(self.faces.shape)}")
        if self.faces.numel() and (int(self.faces.min()) < 0 or int(self.faces.max()) >= v):
            raise bad(f"faces index vertices outside 0..{v - 1}")
        for region, idx in self.masks.items():
            if idx.ndim != 1 or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= v)):
                raise bad(f"mask {region!r} must be a list of vertex indices in 0..{v - 1}")
        if self.shape_names and len(self.shape_names) != self.n_shape:
            raise bad(f"{len(self.shape_names)} shape_names for {self.n_shape} identity components")
        if self.expr_names and len(self.expr_names) != self.n_expr:
            raise bad(f"{len(self.expr_names)} expr_names for {self.n_expr} expression components")
        for nm in ("v_template", "shapedirs", "exprdirs", "posedirs", "J_regressor", "lbs_weights"):
            t = getattr(self, nm)
            if not t.dtype.is_floating_point:
                raise bad(f"{nm} must be a float tensor, got {t.dtype}")
            if not bool(torch.isfinite(t).all()):
                raise bad(f"{nm} contains NaN or infinite values")
        return self

    def __repr__(self) -> str:
        return (
            f"HeadModel(name={self.name!r}, V={self.n_verts}, F={self.n_faces}, J={self.n_joints}, "
            f"shape={self.n_shape}, expr={self.n_expr}, masks={sorted(self.masks)}, "
            f"dtype={self.dtype}, source={self.source!r}"
            + (f", extensions={list(self.extensions)})" if self.extensions else ")")
        )


#: Topology extensions of a loaded head model (name -> function returning the extended model).
HEAD_EXTENSIONS: Registry[Callable[[HeadModel], HeadModel]] = Registry(
    "head model extension", modules=("l2t_gs.rig.flame_teeth",)
)


def apply_head_extensions(model: HeadModel, names: Iterable[str]) -> HeadModel:
    """``model`` with the named :data:`HEAD_EXTENSIONS` applied in order (ones it has are skipped)."""
    for name in names:
        if name not in model.extensions:
            model = HEAD_EXTENSIONS.get(name)(model)
    return model
