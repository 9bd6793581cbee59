"""GaussianAvatars' teeth extension of FLAME, rebuilt on the user's FLAME model.

GaussianAvatars (``flame_model/flame.py::FlameHead.add_teeth``, also in VHAP) appends two simple
teeth rows to FLAME's template: 8 rows of 15 vertices (120) and 168 triangles, after FLAME's own
5023 vertices and 9976 triangles. Avatars it trains bind splats to those triangles, so importing one
whole needs the same vertices in the same order. This module builds them from the facts of that
source (no code of it):

* **Reference rings**: FLAME's outer lip rings, 15 vertices each from the subject's right mouth
  corner to the left (:data:`LIP_OUTSIDE_RING_UPPER`, :data:`LIP_OUTSIDE_RING_LOWER`).
* **Geometry** (template space, ``d`` = mean distance between paired ring vertices): the middle row
  is the mid-point of each pair, with ``y`` replaced by the mean ``y`` of the row and pushed back by
  ``1.5 d`` in ``z``. Upper edge = middle + ``0.1 d`` up; upper root = upper edge + ``2 d`` up.
  Lower edge = middle - ``0.1 d`` in ``y`` and ``0.4 d`` further back; lower root = lower edge -
  ``2 d`` in ``y``. Each row has a back copy ``1.0 d`` (the thickness) further back in ``z``.
* **Vertex order** (:data:`TEETH_ROWS`): upper root, lower root, upper edge, lower edge, upper root
  back, upper edge back, lower root back, lower edge back; 15 each.
* **Faces**: six strips of 14 quads (two triangles each) between two rows: upper front (root/edge),
  upper back (root back/edge back), upper biting surface (edge back/edge), then the same three for
  the lower teeth; the quad diagonal flips at the middle of the arch (quad 7). See :func:`teeth_faces`.
* **Rig rows**: identity blendshapes of every teeth vertex = mean of the two lip-ring vertices of its
  column; expression blendshapes, pose correctives and joint-regressor columns are zero; skinning
  weights are one-hot: upper teeth on the neck joint (1, which carries the head), lower teeth on
  the jaw joint (2).

:func:`add_gaussian_avatars_teeth` returns the extended :class:`HeadModel`; the extension is
registered as :data:`GA_TEETH` (``HEAD_EXTENSIONS``) so avatar folders can name it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.rig.model import HEAD_EXTENSIONS, HeadModel

__all__ = [
    "FLAME_N_FACES",
    "FLAME_N_VERTS",
    "GA_TEETH",
    "LIP_OUTSIDE_RING_LOWER",
    "LIP_OUTSIDE_RING_UPPER",
    "TEETH_FACES",
    "TEETH_ROWS",
    "TEETH_VERTICES",
    "add_gaussian_avatars_teeth",
    "has_gaussian_avatars_teeth",
    "teeth_faces",
    "teeth_vertices",
]

#: Name of the extension (``HeadModel.extensions``, ``avatar.json``'s ``head_model_extensions``).
GA_TEETH = "gaussian_avatars_teeth"
#: FLAME's own topology, which the lip-ring indices refer to.
FLAME_N_VERTS = 5023
FLAME_N_FACES = 9976
#: Columns per row, rows, and the sizes of the extension.
_COLS = 15
TEETH_ROWS: tuple[str, ...] = (
    "upper_root",
    "lower_root",
    "upper_edge",
    "lower_edge",
    "upper_root_back",
    "upper_edge_back",
    "lower_root_back",
    "lower_edge_back",
)
TEETH_VERTICES = _COLS * len(TEETH_ROWS)  # 120
TEETH_FACES = 6 * 2 * (_COLS - 1)  # 168

#: FLAME vertex indices of the outer lip rings (GaussianAvatars' ``lip_outside_ring_upper/lower``).
LIP_OUTSIDE_RING_UPPER: tuple[int, ...] = (
    1713, 1715, 1716, 1735, 1696, 1694, 1657, 3543, 2774, 2811, 2813, 2850, 2833, 2832, 2830,
)  # fmt: skip
LIP_OUTSIDE_RING_LOWER: tuple[int, ...] = (
    1576, 1577, 1773, 1774, 1795, 1802, 1865, 3503, 2948, 2905, 2898, 2881, 2880, 2713, 2712,
)  # fmt: skip

# (y, z) of each row relative to the middle row, in units of the mean lip distance d.
_EDGE_Y, _ROOT_Y, _LOWER_BACKSET, _THICKNESS, _DEPTH = 0.1, 2.0, 0.4, 1.0, 1.5
_UPPER_JOINT, _LOWER_JOINT = 1, 2  # neck (the head), jaw


def _row(name: str) -> Tensor:
    """Local indices (0..119) of one row."""
    start = TEETH_ROWS.index(name) * _COLS
    return torch.arange(start, start + _COLS)


def _rows(*names: str) -> Tensor:
    return torch.cat([_row(n) for n in names])


#: Local vertex indices of the upper and the lower teeth (GaussianAvatars' mask order).
UPPER = ("upper_root", "upper_edge", "upper_root_back", "upper_edge_back")
LOWER = ("lower_root", "lower_edge", "lower_root_back", "lower_edge_back")


def teeth_vertices(v_template: Tensor) -> Tensor:
    """The 120 teeth vertices ``[120, 3]`` built from a FLAME template ``[V >= 3544, 3]``."""
    upper = v_template[list(LIP_OUTSIDE_RING_UPPER)]
    lower = v_template[list(LIP_OUTSIDE_RING_LOWER)]
    d = (upper - lower).norm(dim=-1).mean()
    middle = 0.5 * (upper + lower)
    middle = torch.stack([middle[:, 0], middle[:, 1].mean().expand(_COLS), middle[:, 2] - _DEPTH * d], dim=-1)
    up = middle.new_tensor([0.0, 1.0, 0.0]) * d
    back = middle.new_tensor([0.0, 0.0, 1.0]) * d
    rows = {"upper_edge": middle + _EDGE_Y * up}
    rows["upper_root"] = rows["upper_edge"] + _ROOT_Y * up
    rows["lower_edge"] = middle - _EDGE_Y * up - _LOWER_BACKSET * back
    rows["lower_root"] = rows["lower_edge"] - _ROOT_Y * up
    for name in ("upper_root", "upper_edge", "lower_root", "lower_edge"):
        rows[f"{name}_back"] = rows[name] - _THICKNESS * back
    return torch.cat([rows[name] for name in TEETH_ROWS])


def _strip(a: str, b: str, first_half_diag_a_next: bool, reverse: bool) -> Tensor:
    """Triangles [28, 3] of the 14 quads between rows ``a`` and ``b`` (local indices).

    Quad ``k`` has corners ``a_k, a_k+1, b_k, b_k+1``. Diagonal ``a_k - b_k+1`` gives the triangles
    ``(a_k, b_k+1, b_k), (a_k, a_k+1, b_k+1)``; diagonal ``a_k+1 - b_k`` gives ``(a_k, a_k+1, b_k),
    (a_k+1, b_k+1, b_k)``. The first 7 quads use one diagonal, the last 7 the other
    (``first_half_diag_a_next`` picks the second kind for the first half); ``reverse`` flips the
    winding.
    """
    ra, rb = _row(a), _row(b)
    k = torch.arange(_COLS - 1)
    a0, a1, b0, b1 = ra[k], ra[k + 1], rb[k], rb[k + 1]
    diag_ab = torch.stack([torch.stack([a0, b1, b0], -1), torch.stack([a0, a1, b1], -1)], 1)  # [14, 2, 3]
    diag_ba = torch.stack([torch.stack([a0, a1, b0], -1), torch.stack([a1, b1, b0], -1)], 1)
    first = (k < (_COLS - 1) // 2)[:, None, None]
    tris = torch.where(first, diag_ba, diag_ab) if first_half_diag_a_next else torch.where(first, diag_ab, diag_ba)
    tris = tris.reshape(-1, 3)
    return tris[:, [0, 2, 1]] if reverse else tris


def teeth_faces() -> Tensor:
    """The 168 teeth triangles ``[168, 3]`` (int64, local indices 0..119) in GaussianAvatars' order.

    Upper teeth (84): front, back, biting surface; then lower teeth (84): front, back, biting surface.
    """
    return torch.cat(
        [
            _strip("upper_root", "upper_edge", False, False),
            _strip("upper_root_back", "upper_edge_back", False, True),
            _strip("upper_edge_back", "upper_edge", True, True),
            _strip("lower_edge", "lower_root", True, False),
            _strip("lower_root_back", "lower_edge_back", False, False),
            _strip("lower_edge_back", "lower_edge", True, False),
        ]
    )


def has_gaussian_avatars_teeth(model: HeadModel) -> bool:
    """Whether ``model`` carries the extension (built by :func:`add_gaussian_avatars_teeth`)."""
    return GA_TEETH in model.extensions


def check_flame_topology(model: HeadModel) -> None:
    """Raise :class:`L2TError` unless ``model`` has FLAME's vertex/face counts and 5 joints."""
    if model.n_verts != FLAME_N_VERTS or model.n_faces != FLAME_N_FACES or model.n_joints != 5:
        raise L2TError(
            f"GaussianAvatars' teeth extension needs a FLAME model ({FLAME_N_VERTS} vertices, {FLAME_N_FACES} "
            f"triangles, 5 joints); head model {model.name!r} has {model.n_verts} vertices, {model.n_faces} "
            f"triangles, {model.n_joints} joints"
        )


@HEAD_EXTENSIONS.register(GA_TEETH, "GaussianAvatars' teeth: 120 vertices and 168 triangles appended to FLAME")
def add_gaussian_avatars_teeth(model: HeadModel) -> HeadModel:
    """``model`` (FLAME topology) with GaussianAvatars' teeth appended: V + 120 vertices, F + 168 faces.

    FLAME's own rows are unchanged; the new rows follow the module docstring. The masks
    ``teeth_upper``, ``teeth_lower`` and ``teeth`` (global indices, GaussianAvatars' order) are added.
    Applying it to a model that already has the extension returns the model unchanged.
    """
    if has_gaussian_avatars_teeth(model):
        return model
    check_flame_topology(model)
    v, t = model.n_verts, TEETH_VERTICES
    n_pose = model.posedirs.shape[0]
    upper, lower = _rows(*UPPER), _rows(*LOWER)

    v_teeth = teeth_vertices(model.v_template)
    ring_mean = 0.5 * (
        model.shapedirs[list(LIP_OUTSIDE_RING_UPPER)] + model.shapedirs[list(LIP_OUTSIDE_RING_LOWER)]
    )  # [15, 3, S]: every row copies its column's lip mean
    shapedirs_teeth = ring_mean.repeat(len(TEETH_ROWS), 1, 1)
    weights_teeth = model.lbs_weights.new_zeros(t, model.n_joints)
    weights_teeth[upper, _UPPER_JOINT] = 1.0
    weights_teeth[lower, _LOWER_JOINT] = 1.0
    posedirs = torch.cat([model.posedirs.reshape(n_pose, v, 3), model.posedirs.new_zeros(n_pose, t, 3)], dim=1).reshape(
        n_pose, (v + t) * 3
    )
    masks = dict(model.masks)
    masks.update({"teeth_upper": upper + v, "teeth_lower": lower + v, "teeth": torch.cat([upper, lower]) + v})
    out = dataclasses.replace(
        model,
        v_template=torch.cat([model.v_template, v_teeth]),
        shapedirs=torch.cat([model.shapedirs, shapedirs_teeth]),
        exprdirs=torch.cat([model.exprdirs, model.exprdirs.new_zeros(t, 3, model.n_expr)]),
        posedirs=posedirs,
        J_regressor=torch.cat([model.J_regressor, model.J_regressor.new_zeros(model.n_joints, t)], dim=1),
        lbs_weights=torch.cat([model.lbs_weights, weights_teeth]),
        faces=torch.cat([model.faces, teeth_faces().to(model.faces.device) + v]),
        masks={k: idx.to(model.v_template.device) for k, idx in masks.items()},
        extensions=(*model.extensions, GA_TEETH),
    )
    return out.validate()
