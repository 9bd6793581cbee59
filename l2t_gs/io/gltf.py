"""glTF 2.0 binary (``.glb``) animated skinned meshes with morph targets, in plain numpy + json + struct.

A :class:`SkinnedMorphRig` is a base mesh, a morph-target basis ``[K, V, 3]`` and a joint tree with
linear-blend skinning weights. glTF evaluates a frame as

    ``v = sum_j w_vj (G_j(t) B_j^-1) (base + sum_k m_k(t) target_k)``

(morph targets first, then skinning; ``G_j`` the joint's world transform from the node tree, ``B_j^-1``
its inverse bind matrix). Joints bind at rest positions ``J_j`` with no rotation (``B_j^-1 = T(-J_j)``),
each node's translation is ``J_j - J_parent`` and only joint rotations are animated: the FLAME/SMPL
skinning convention, so a FLAME frame maps onto a glTF frame exactly when its joints do not move with
the blendshapes.

:meth:`SkinnedMorphRig.fit` finds a frame's morph weights from the vertices it must reproduce and
the joint rotations: it undoes the skinning per vertex (a 3x3 solve) and projects the unskinned
displacement onto the basis (least squares), so whatever the basis cannot express shows up as the
returned error instead of silently. :meth:`SkinnedMorphRig.evaluate` is glTF's evaluation above
(the reference the fit and the tests use). :func:`write_glb` writes the file: one skinned mesh
(positions, optional per-vertex colours, JOINTS_0/WEIGHTS_0 with the four largest influences), its
morph targets named in ``mesh.extras.targetNames`` (read by Blender and three.js; stored as sparse
accessors where that is smaller, rescaled so every animated weight lies in [0, 1]), and one animation
sampled at a fixed rate: a ``weights`` channel and a ``rotation`` channel per joint, LINEAR.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass

import numpy as np
import torch

from l2t_gs.core.rotation import axis_angle_to_matrix, axis_angle_to_quat
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path

__all__ = ["SkinnedMorphRig", "write_glb", "read_glb"]

_FLOAT, _UINT, _USHORT = 5126, 5125, 5123
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_GLB_MAGIC, _JSON_CHUNK, _BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942


def _rotations(pose: np.ndarray) -> np.ndarray:
    """Axis-angle ``[..., 3]`` -> rotation matrices ``[..., 3, 3]`` (float64)."""
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(pose, dtype=np.float64))).numpy()


@dataclass
class SkinnedMorphRig:
    """A skinned mesh with a morph basis, as glTF evaluates it.

    Attributes:
        base: ``[V, 3]`` rest vertices. basis: ``[K, V, 3]`` morph-target displacements.
        joints: ``[J, 3]`` rest (bind) positions of the joints in world space.
        parents: ``J`` parent indices, ``-1`` for the root, ``parents[j] < j``.
        weights: ``[V, J]`` skinning weights (rows sum to 1).
        joint_names, target_names: names written into the file.
    """

    base: np.ndarray
    basis: np.ndarray
    joints: np.ndarray
    parents: list[int]
    weights: np.ndarray
    joint_names: list[str]
    target_names: list[str]

    def __post_init__(self) -> None:
        self.base = np.asarray(self.base, dtype=np.float64)
        self.basis = np.asarray(self.basis, dtype=np.float64)
        self.joints = np.asarray(self.joints, dtype=np.float64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        v, k, j = self.base.shape[0], self.basis.shape[0], self.joints.shape[0]
        if self.basis.shape != (k, v, 3) or self.weights.shape != (v, j) or len(self.parents) != j:
            raise L2TError("glTF rig: base, basis, joints, parents and weights disagree on their sizes")
        if len(self.joint_names) != j or len(self.target_names) != k:
            raise L2TError("glTF rig: one name per joint and per morph target is needed")
        if self.parents[0] != -1 or any(not 0 <= p < i for i, p in enumerate(self.parents[1:], start=1)):
            raise L2TError("glTF rig: parents must list the root first and each parent before its children")
        self._pinv = np.linalg.pinv(self.basis.reshape(k, -1).T)  # [K, 3V] least squares onto the basis

    @property
    def n_targets(self) -> int:
        return int(self.basis.shape[0])

    def skin_transforms(self, pose: np.ndarray) -> np.ndarray:
        """Per-joint skinning matrices ``G_j B_j^-1``: pose ``[N, J, 3]`` axis-angle -> ``[N, J, 3, 4]``."""
        rot = _rotations(pose)
        n, nj = rot.shape[:2]
        glob_r = np.empty_like(rot)
        glob_t = np.empty((n, nj, 3))
        for j, p in enumerate(self.parents):  # the joint tree (5 joints), not vertices
            if p < 0:
                glob_r[:, j], glob_t[:, j] = rot[:, j], self.joints[j]
            else:
                glob_r[:, j] = glob_r[:, p] @ rot[:, j]
                glob_t[:, j] = glob_t[:, p] + glob_r[:, p] @ (self.joints[j] - self.joints[p])
        trans = glob_t - np.einsum("njab,jb->nja", glob_r, self.joints)  # G_j T(-J_j)
        return np.concatenate([glob_r, trans[..., None]], axis=-1)

    def _vertex_transforms(self, pose: np.ndarray) -> np.ndarray:
        return np.einsum("vj,njab->nvab", self.weights, self.skin_transforms(pose))  # [N, V, 3, 4]

    def evaluate(self, morph: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """glTF's vertices for morph weights ``[N, K]`` and joint rotations ``[N, J, 3]`` -> ``[N, V, 3]``."""
        morph = np.asarray(morph, dtype=np.float64).reshape(-1, self.n_targets)
        x = self.base + np.einsum("nk,kvc->nvc", morph, self.basis)
        a = self._vertex_transforms(np.asarray(pose).reshape(morph.shape[0], -1, 3))
        return np.einsum("nvab,nvb->nva", a[..., :3], x) + a[..., 3]

    def fit(self, vertices: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Morph weights reproducing ``vertices [N, V, 3]`` under joint rotations ``pose [N, J, 3]``.

        Returns ``(weights [N, K] float32, max vertex error [N] in the vertices' unit)``; the error is
        measured through :meth:`evaluate` on the float32 weights the file stores.
        """
        verts = np.asarray(vertices, dtype=np.float64).reshape(-1, *self.base.shape)
        pose = np.asarray(pose, dtype=np.float64).reshape(verts.shape[0], -1, 3)
        a = self._vertex_transforms(pose)
        unskinned = np.linalg.solve(a[..., :3], (verts - a[..., 3])[..., None])[..., 0]  # [N, V, 3]
        d = (unskinned - self.base).reshape(verts.shape[0], -1)
        w = (d @ self._pinv.T).astype(np.float32)
        err = np.linalg.norm(self.evaluate(w, pose) - verts, axis=-1).max(axis=-1)
        return w, err


class _Buffer:
    """The binary chunk under construction: bufferViews and accessors over 4-byte aligned blocks."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, arr: np.ndarray, kind: str, target: int | None = None, minmax: bool = False) -> int:
        """Append ``arr`` (rows = elements) as one bufferView + accessor; returns the accessor index."""
        ctype = {np.dtype("<f4"): _FLOAT, np.dtype("<u4"): _UINT, np.dtype("<u2"): _USHORT}[arr.dtype]
        data = np.ascontiguousarray(arr).tobytes()
        view = {"buffer": 0, "byteOffset": self.size, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        pad = (-len(data)) % 4
        self.parts.append(data + b"\0" * pad)
        self.size += len(data) + pad
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[kind]
        acc = {"bufferView": len(self.views) - 1, "componentType": ctype, "count": len(data) // (arr.itemsize * width)}
        acc["type"] = kind
        if minmax:
            flat = arr.reshape(acc["count"], width)
            acc["min"] = [float(x) for x in flat.min(axis=0)]
            acc["max"] = [float(x) for x in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def add_sparse_vec3(self, arr: np.ndarray) -> int:
        """A VEC3 float accessor stored sparsely (indices + values of the non-zero rows, zeros elsewhere)
        when that is smaller; morph targets of local shapes (lips, lids) are mostly zeros."""
        rows = np.flatnonzero(np.abs(arr).max(axis=1) > 0)
        if len(rows) * 16 >= arr.size * 4:
            return self.add(arr, "VEC3", _ARRAY_BUFFER, minmax=True)
        idx_acc = self.add(rows.astype("<u4"), "SCALAR")
        val_acc = self.add(np.ascontiguousarray(arr[rows]), "VEC3")
        idx_view = self.accessors[idx_acc]["bufferView"]
        val_view = self.accessors[val_acc]["bufferView"]
        del self.accessors[-2:]  # the two blocks are referenced by the sparse accessor only
        acc: dict = {"componentType": _FLOAT, "count": int(arr.shape[0]), "type": "VEC3"}
        acc["min"] = [float(x) for x in arr.min(axis=0)]
        acc["max"] = [float(x) for x in arr.max(axis=0)]
        acc["sparse"] = {
            "count": int(len(rows)),
            "indices": {"bufferView": idx_view, "componentType": _UINT},
            "values": {"bufferView": val_view},
        }
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _top4(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JOINTS_0 / WEIGHTS_0: the four largest influences per vertex, renormalised."""
    idx = np.argsort(-weights, axis=1, kind="stable")[:, :4]
    w = np.take_along_axis(weights, idx, axis=1)
    w = w / w.sum(axis=1, keepdims=True)
    w32 = w.astype(np.float32)
    w32[:, 0] += (1.0 - w32.astype(np.float64).sum(axis=1)).astype(np.float32)  # sum to 1 in float32
    idx = np.where(w32 > 0, idx, 0)  # unused slots: joint 0, weight 0
    return idx.astype(np.uint16), w32


def _unit_weights(basis: np.ndarray, names: list[str], morph: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Rescale the targets so every animated weight lies in ``[0, 1]``; a target whose weight goes
    negative gets a mirrored twin (``NAME_neg``) that carries the negative part; targets whose weight is
    always 0 are dropped.

    Many consumers clamp morph weights to [0, 1] (Blender 3.4's importer widens a shape key's slider
    range from the first key only). At every key the vertices are unchanged: ``w t = (w / s)(s t)``.
    """
    used = np.flatnonzero(np.abs(morph).max(axis=0) > 0)  # targets the clip never uses are left out
    basis, names, morph = basis[used], [names[i] for i in used], morph[:, used]
    scale = np.abs(morph).max(axis=0).astype(np.float64)  # [K]
    pos = np.clip(morph / scale, 0.0, 1.0)
    neg_k = np.flatnonzero((morph < 0).any(axis=0))
    out_basis = np.concatenate([basis * scale[:, None, None], -basis[neg_k] * scale[neg_k, None, None]])
    out_morph = np.concatenate([pos, np.clip(-morph[:, neg_k] / scale[neg_k], 0.0, 1.0)], axis=1)
    return out_basis, list(names) + [f"{names[i]}_neg" for i in neg_k], out_morph.astype(np.float32)


def write_glb(
    path: str | os.PathLike,
    rig: SkinnedMorphRig,
    faces: np.ndarray,
    morph: np.ndarray,
    pose: np.ndarray,
    fps: float,
    duration: float | None = None,
    colors: np.ndarray | None = None,
    name: str = "head",
    extras: dict | None = None,
) -> int:
    """Write an animated ``.glb`` atomically; returns its size in bytes.

    Args:
        faces: ``[F, 3]`` triangles. morph: ``[T, K]`` weights of frame ``i`` at time ``i / fps``.
        pose: ``[T, J, 3]`` axis-angle joint rotations (local, FLAME order of ``rig.parents``).
        duration: animation length in seconds (default ``T / fps``); when it ends after the last
            frame, the last frame is held until then (one more key), so it matches the audio.
        colors: ``[V, 3]`` linear RGB in ``[0, 1]`` (COLOR_0), optional.
        extras: JSON-able metadata stored in the asset's ``extras``.
    """
    morph = np.asarray(morph, dtype=np.float32)
    pose = np.asarray(pose, dtype=np.float64)
    t, k = morph.shape
    nj = rig.joints.shape[0]
    if t < 1 or k != rig.n_targets or pose.shape != (t, nj, 3):
        raise L2TError(f"glTF animation: need [T, {rig.n_targets}] weights and [T, {nj}, 3] rotations")
    basis, target_names, morph = _unit_weights(rig.basis, rig.target_names, morph)
    k = basis.shape[0]
    times = np.arange(t, dtype=np.float64) / fps
    if duration is not None and duration > times[-1] + 1e-6:
        times = np.append(times, duration)
        morph = np.concatenate([morph, morph[-1:]])
        pose = np.concatenate([pose, pose[-1:]])
    quat = axis_angle_to_quat(torch.as_tensor(pose)).numpy()  # [T, J, 4] wxyz
    quat = quat[..., [1, 2, 3, 0]] / np.linalg.norm(quat, axis=-1, keepdims=True)  # glTF: xyzw

    buf = _Buffer()
    attrs = {"POSITION": buf.add(rig.base.astype("<f4"), "VEC3", _ARRAY_BUFFER, minmax=True)}
    if colors is not None:
        col = np.clip(np.asarray(colors, dtype=np.float64), 0.0, 1.0).astype("<f4")
        attrs["COLOR_0"] = buf.add(col, "VEC3", _ARRAY_BUFFER)
    jidx, jw = _top4(rig.weights)
    attrs["JOINTS_0"] = buf.add(jidx.astype("<u2"), "VEC4", _ARRAY_BUFFER)
    attrs["WEIGHTS_0"] = buf.add(jw.astype("<f4"), "VEC4", _ARRAY_BUFFER)
    indices = buf.add(np.asarray(faces, dtype="<u4").reshape(-1), "SCALAR", _ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": buf.add_sparse_vec3(b.astype("<f4"))} for b in basis]

    ibm = np.tile(np.eye(4), (nj, 1, 1))
    ibm[:, :3, 3] = -rig.joints
    ibm_acc = buf.add(ibm.transpose(0, 2, 1).astype("<f4").reshape(nj, 16), "MAT4")  # column-major
    t_acc = buf.add(times.astype("<f4"), "SCALAR", minmax=True)
    w_acc = buf.add(morph.reshape(-1).astype("<f4"), "SCALAR")
    q_accs = [buf.add(np.ascontiguousarray(quat[:, j]).astype("<f4"), "VEC4") for j in range(nj)]

    mesh_node = nj
    nodes: list[dict] = []
    for j, jname in enumerate(rig.joint_names):
        p = rig.parents[j]
        node: dict = {
            "name": jname,
            "translation": [float(x) for x in rig.joints[j] - (rig.joints[p] if p >= 0 else 0)],
        }
        kids = [c for c, pc in enumerate(rig.parents) if pc == j]
        if kids:
            node["children"] = kids
        nodes.append(node)
    nodes.append({"name": name, "mesh": 0, "skin": 0})
    samplers = [{"input": t_acc, "output": w_acc, "interpolation": "LINEAR"}]
    channels = [{"sampler": 0, "target": {"node": mesh_node, "path": "weights"}}]
    for j in range(nj):
        samplers.append({"input": t_acc, "output": q_accs[j], "interpolation": "LINEAR"})
        channels.append({"sampler": j + 1, "target": {"node": j, "path": "rotation"}})
    primitive = {"attributes": attrs, "indices": indices, "mode": 4, "targets": targets}
    doc = {
        "asset": {"version": "2.0", "generator": "l2t-gs", **({"extras": extras} if extras else {})},
        "scene": 0,
        "scenes": [{"name": name, "nodes": [0, mesh_node]}],
        "nodes": nodes,
        "meshes": [
            {
                "name": name,
                "primitives": [primitive],
                "weights": [0.0] * k,
                "extras": {"targetNames": target_names},
            }
        ],
        "skins": [
            {"name": f"{name}_skeleton", "joints": list(range(nj)), "skeleton": 0, "inverseBindMatrices": ibm_acc}
        ],
        "animations": [{"name": "speech", "samplers": samplers, "channels": channels}],
        "buffers": [{"byteLength": buf.size}],
        "bufferViews": buf.views,
        "accessors": buf.accessors,
    }
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 4)
    total = 12 + 8 + len(js) + 8 + buf.size
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<III", _GLB_MAGIC, 2, total))
        f.write(struct.pack("<II", len(js), _JSON_CHUNK) + js)
        f.write(struct.pack("<II", buf.size, _BIN_CHUNK))
        for part in buf.parts:
            f.write(part)
    return total


def read_glb(path: str | os.PathLike) -> tuple[dict, bytes]:
    """The JSON document and binary chunk of a ``.glb`` (for tests and tools)."""
    data = open(path, "rb").read()  # noqa: SIM115
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC or version != 2 or total != len(data):
        raise L2TError(f"{path}: not a glTF 2.0 binary file")
    jlen, jtype = struct.unpack_from("<II", data, 12)
    doc = json.loads(data[20 : 20 + jlen])
    blen, _ = struct.unpack_from("<II", data, 20 + jlen)
    return doc, data[28 + jlen : 28 + jlen + blen]
