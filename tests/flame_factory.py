"""Test helpers: random small FLAME-format models and an independent brute-force FLAME evaluation.

Imported by tests as ``from flame_factory import ...`` (``tests/conftest.py`` puts this folder on
``sys.path``). Arrays use the raw FLAME layout: ``shapedirs`` [V, 3, S + E] (identity first),
``posedirs`` [V, 3, 36], ``J_regressor`` [5, V], ``weights`` [V, 5], ``kintree_table`` [2, 5] with
FLAME's ``2**32 - 1`` root marker, ``f`` [F, 3] uint32.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from l2t_gs.rig import HeadModel, head_model_from_arrays

FLAME_PARENTS = (-1, 0, 1, 1, 1)  # global -> neck -> (jaw, left eye, right eye)


def make_flame_arrays(
    n_verts: int = 50,
    n_shape: int = 6,
    n_expr: int = 4,
    n_faces: int = 40,
    seed: int = 0,
    exact_weights: bool = False,
) -> dict[str, np.ndarray]:
    """A random FLAME-format model (float64 arrays, FLAME key names and layouts).

    With ``exact_weights`` every skinning-weight row is a sum of multiples of 1/8 equal to exactly 1
    in floating point, so the zero pose reproduces the template bit for bit.
    """
    rng = np.random.default_rng(seed)
    n_joints = len(FLAME_PARENTS)
    v_template = rng.normal(scale=0.1, size=(n_verts, 3))
    shapedirs = rng.normal(scale=0.01, size=(n_verts, 3, n_shape + n_expr))
    posedirs = rng.normal(scale=0.01, size=(n_verts, 3, 9 * (n_joints - 1)))
    # Sparse-ish regressor: each joint averages a few vertices (rows sum to 1, like FLAME's).
    j_reg = np.zeros((n_joints, n_verts))
    for j in range(n_joints):
        idx = rng.choice(n_verts, size=min(6, n_verts), replace=False)
        w = rng.uniform(0.1, 1.0, size=idx.size)
        j_reg[j, idx] = w / w.sum()
    if exact_weights:
        counts = rng.multinomial(8, np.full(n_joints, 1 / n_joints), size=n_verts)
        weights = counts / 8.0
    else:
        weights = rng.uniform(size=(n_verts, n_joints)) ** 3
        weights /= weights.sum(axis=1, keepdims=True)
    kintree = np.array([[2**32 - 1, 0, 1, 1, 1], list(range(n_joints))], dtype=np.int64)
    faces = rng.integers(0, n_verts, size=(n_faces, 3)).astype(np.uint32)
    return {
        "v_template": v_template,
        "shapedirs": shapedirs,
        "posedirs": posedirs,
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": kintree,
        "f": faces,
        "n_shape": np.asarray(n_shape),
    }


def make_head_model(dtype: torch.dtype = torch.float64, **kwargs: object) -> HeadModel:
    """``make_flame_arrays(**kwargs)`` as a validated :class:`HeadModel`."""
    return head_model_from_arrays(make_flame_arrays(**kwargs), name="random", source="factory", dtype=dtype)


# --------------------------------------------------------------------------- brute force reference
def _skew(r: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -r[2], r[1]], [r[2], 0.0, -r[0]], [-r[1], r[0], 0.0]])


def expm(a: np.ndarray) -> np.ndarray:
    """Matrix exponential by scaling and squaring of a Taylor series (scipy-free)."""
    norm = np.abs(a).sum(axis=1).max()
    s = max(0, math.ceil(math.log2(norm)) + 1) if norm > 0 else 0
    x = a / 2.0**s
    out = np.eye(a.shape[0])
    term = np.eye(a.shape[0])
    for k in range(1, 30):
        term = term @ x / k
        out = out + term
    for _ in range(s):
        out = out @ out
    return out


def reference_flame(
    arrays: dict[str, np.ndarray],
    shape: np.ndarray,
    expr: np.ndarray,
    pose: np.ndarray,
    translation: np.ndarray,
    offset: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One frame of FLAME, written out loop by loop in float64 from the raw FLAME arrays.

    pose [5, 3] axis-angle (global, neck, jaw, left eye, right eye); ``offset`` [V, 3] is the sum of
    static and dynamic offsets (added to the canonical shape before joint regression).
    Returns (vertices [V, 3], posed joints [5, 3]).
    """
    v_t = arrays["v_template"]
    n_verts = v_t.shape[0]
    n_shape = int(arrays["n_shape"])
    sd = arrays["shapedirs"]
    parents = [-1] + [int(p) for p in arrays["kintree_table"][0][1:]]
    n_joints = len(parents)

    v_shaped = np.array(v_t, dtype=np.float64)
    for i in range(n_verts):
        for k in range(len(shape)):
            v_shaped[i] += shape[k] * sd[i, :, k]
        for k in range(len(expr)):
            v_shaped[i] += expr[k] * sd[i, :, n_shape + k]
        if offset is not None:
            v_shaped[i] += offset[i]

    joints = np.zeros((n_joints, 3))
    for j in range(n_joints):
        for i in range(n_verts):
            joints[j] += arrays["J_regressor"][j, i] * v_shaped[i]

    rots = [expm(_skew(pose[j])) for j in range(n_joints)]
    feature = np.concatenate([(rots[j] - np.eye(3)).reshape(-1) for j in range(1, n_joints)])
    v_posed = np.zeros_like(v_shaped)
    for i in range(n_verts):
        v_posed[i] = v_shaped[i] + arrays["posedirs"][i] @ feature  # [3, 36] @ [36]

    world = []
    for j in range(n_joints):
        local = np.eye(4)
        local[:3, :3] = rots[j]
        local[:3, 3] = joints[j] - (joints[parents[j]] if j > 0 else 0.0)
        world.append(local if j == 0 else world[parents[j]] @ local)
    skin = []
    for j in range(n_joints):
        unpose = np.eye(4)
        unpose[:3, 3] = -joints[j]
        skin.append(world[j] @ unpose)

    verts = np.zeros_like(v_posed)
    for i in range(n_verts):
        t = np.zeros((4, 4))
        for j in range(n_joints):
            t += arrays["weights"][i, j] * skin[j]
        verts[i] = (t @ np.append(v_posed[i], 1.0))[:3] + translation
    posed_joints = np.stack([world[j][:3, 3] for j in range(n_joints)]) + translation
    return verts, posed_joints
