"""Read and write INRIA 3D Gaussian Splatting PLY files (pure numpy).

Layout (one ``vertex`` element, binary little-endian, every property ``float``)::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3*(K-1)-1)  opacity  scale_0..2  rot_0..3  [binding_0]

- Values are raw, pre-activation: ``opacity`` is a logit, ``scale_*`` are log-scales, ``rot_*`` is
  an unnormalised quaternion ``(w, x, y, z)``; ``f_dc_*`` / ``f_rest_*`` are SH coefficients.
- ``f_dc_c`` is the degree-0 coefficient of colour channel ``c``. ``f_rest`` is *channel-major*:
  ``f_rest_{c * (K - 1) + (j - 1)}`` is coefficient ``j >= 1`` of channel ``c`` (all R, then all G,
  then all B); INRIA's ``save_ply`` flattens features of shape ``[N, 3, K-1]``
  (GaussianAvatars ``scene/gaussian_model.py`` keeps that code). ``K = (degree + 1)^2``.
- ``nx ny nz`` are written as zeros and ignored on read (they are optional).
- ``binding_0`` (GaussianAvatars) is the parent triangle of a mesh-bound splat. GaussianAvatars
  writes it as ``float`` like everything else; this writer does the same (exact below 2^24) and the
  reader accepts any numeric type, requiring whole non-negative values.

The reader takes any standard PLY scalar type and byte order for the ``vertex`` element, returns
float32 arrays, and reports a missing attribute, a non-PLY file, a truncated body or non-finite
values as one-line :class:`~l2t_gs.errors.L2TError` messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path

_PLY_TYPES: dict[str, str] = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
_FORMATS = {"binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER = 1 << 20
#: float32 represents every integer up to this exactly (binding_0 is stored as float).
_MAX_FLOAT_INT = 1 << 24


def sh_degree_from_coeffs(k: int) -> int:
    """The SH degree with ``k = (degree + 1)^2`` coefficients per channel (degree 0..3)."""
    for d in range(4):
        if (d + 1) ** 2 == k:
            return d
    raise ValueError(f"{k} SH coefficients per channel is not (degree+1)^2 for a degree 0..3")


@dataclass
class GaussianPly:
    """The contents of a 3DGS PLY, raw (pre-activation) float32 arrays.

    Attributes:
        means: ``[N, 3]``. log_scales: ``[N, 3]``. quats: ``[N, 4]`` wxyz, as stored.
        opacity_logits: ``[N]``. sh: ``[N, K, 3]``, DC first.
        binding: ``[N]`` int64 parent triangles, or ``None`` for a plain (unbound) PLY.
    """

    means: np.ndarray
    log_scales: np.ndarray
    quats: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray
    binding: np.ndarray | None = None

    @property
    def num_splats(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(int(self.sh.shape[1]))


def with_sh_degree(ply: GaussianPly, degree: int) -> GaussianPly:
    """``ply`` with SH bands up to ``degree`` (0..3): higher bands padded with zeros (the colour is
    unchanged); lowering the degree is refused. Readers fixed at degree 3 (INRIA's) need 45 ``f_rest``."""
    if not 0 <= degree <= 3:
        raise L2TError(f"SH degree must be 0..3, got {degree}")
    k, have = (degree + 1) ** 2, ply.sh.shape[1]
    if k < have:
        raise L2TError(f"the PLY has SH degree {ply.sh_degree}; padding cannot lower it to {degree}")
    sh = np.concatenate([ply.sh, np.zeros((ply.sh.shape[0], k - have, 3), dtype=ply.sh.dtype)], axis=1)
    return GaussianPly(ply.means, ply.log_scales, ply.quats, ply.opacity_logits, sh, ply.binding)


def _attribute_names(k: int, with_binding: bool) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    if with_binding:
        names.append("binding_0")
    return names


def write_gaussian_ply(path: str | os.PathLike, ply: GaussianPly) -> None:
    """Write ``ply`` as a binary little-endian INRIA 3DGS PLY, atomically."""
    n = ply.num_splats
    sh = np.asarray(ply.sh, dtype=np.float32)
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3:
        raise L2TError(f"SH coefficients must have shape [N, K, 3], got {list(sh.shape)}")
    k = sh.shape[1]
    try:
        sh_degree_from_coeffs(k)
    except ValueError as exc:
        raise L2TError(str(exc)) from None
    columns: list[np.ndarray] = [
        np.asarray(ply.means, dtype=np.float32).reshape(n, 3),
        np.zeros((n, 3), dtype=np.float32),
        sh[:, 0, :],
        sh[:, 1:, :].transpose(0, 2, 1).reshape(n, 3 * (k - 1)),  # channel-major
        np.asarray(ply.opacity_logits, dtype=np.float32).reshape(n, 1),
        np.asarray(ply.log_scales, dtype=np.float32).reshape(n, 3),
        np.asarray(ply.quats, dtype=np.float32).reshape(n, 4),
    ]
    if ply.binding is not None:
        binding = np.asarray(ply.binding).reshape(n)
        if n and (binding.min() < 0 or binding.max() >= _MAX_FLOAT_INT):
            raise L2TError(f"binding indices must lie in [0, {_MAX_FLOAT_INT}) to be stored in a PLY")
        columns.append(binding.astype(np.float32).reshape(n, 1))
    names = _attribute_names(k, ply.binding is not None)
    data = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")  # [N, P] = the record layout
    header = "\n".join(
        ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
        + [f"property float {name}" for name in names]
        + ["end_header", ""]
    ).encode("ascii")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header)
        f.write(data.tobytes())


def _parse_header(raw: bytes, path: Path) -> tuple[int, str, list[tuple[str, int, list[tuple[str, str]]]]]:
    """Return (body offset, byte order, elements as (name, count, [(prop, numpy type)]))."""
    if not raw.startswith(b"ply\n") and not raw.startswith(b"ply\r\n"):
        raise L2TError(f"{path}: not a PLY file (missing 'ply' magic)")
    end = raw.find(b"end_header")
    if end < 0:
        raise L2TError(f"{path}: not a valid PLY file (no end_header in the first {_MAX_HEADER} bytes)")
    newline = raw.find(b"\n", end)
    if newline < 0:
        raise L2TError(f"{path}: truncated PLY header")
    lines = raw[:end].decode("ascii", errors="replace").splitlines()
    order = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            if len(words) < 2 or words[1] not in _FORMATS:
                fmt = words[1] if len(words) > 1 else "?"
                raise L2TError(f"{path}: unsupported PLY format '{fmt}' (only binary PLYs are read)")
            order = _FORMATS[words[1]]
        elif words[0] == "element":
            try:
                count = int(words[2])
            except (IndexError, ValueError):
                raise L2TError(f"{path}: malformed PLY header line '{line}'") from None
            if count < 0:
                raise L2TError(f"{path}: PLY header declares a negative count for element '{words[1]}': {count}")
            elements.append((words[1], count, []))
        elif words[0] == "property":
            if not elements:
                raise L2TError(f"{path}: PLY property before any element")
            if words[-1] in {name for name, _ in elements[-1][2]}:
                raise L2TError(f"{path}: PLY element '{elements[-1][0]}' repeats the property '{words[-1]}'")
            if len(words) >= 2 and words[1] == "list":
                elements[-1][2].append((words[-1], "list"))
                continue
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise L2TError(f"{path}: unsupported PLY property line '{line}'")
            elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
        else:
            raise L2TError(f"{path}: unknown PLY header keyword '{words[0]}'")
    if order is None:
        raise L2TError(f"{path}: PLY header has no format line")
    return newline + 1, order, elements


def read_gaussian_ply(path: str | os.PathLike, *, require_binding: bool = False) -> GaussianPly:
    """Read a 3DGS PLY (INRIA layout, optional ``binding_0``) into float32 arrays.

    Raises:
        L2TError: not a PLY, unsupported format, a missing attribute (named), a truncated body,
            non-finite values (attribute named), a bad ``binding_0``, or ``require_binding`` and
            no ``binding_0``.
    """
    path = Path(path)
    if not path.is_file():
        raise L2TError(f"PLY file not found: {path}")
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(_MAX_HEADER)
        offset, order, elements = _parse_header(raw, path)
        skip = 0
        vertex = None
        for name, count, props in elements:
            if name == "vertex":
                vertex = (count, props)
                break
            if any(t == "list" for _, t in props):
                raise L2TError(f"{path}: PLY element '{name}' with list properties precedes 'vertex'")
            skip += count * int(np.dtype([(p, order + t) for p, t in props]).itemsize)
        if vertex is None:
            raise L2TError(f"{path}: PLY file has no 'vertex' element")
        count, props = vertex
        if any(t == "list" for _, t in props):
            raise L2TError(f"{path}: PLY 'vertex' element has list properties; not a 3DGS PLY")
        names = [p for p, _ in props]
        if len(set(names)) != len(names):
            raise L2TError(f"{path}: PLY 'vertex' element repeats a property name")
        dtype = np.dtype([(p, order + t) for p, t in props])
        if dtype.itemsize == 0:
            raise L2TError(f"{path}: PLY 'vertex' element has no properties; not a 3DGS PLY")
        need = count * dtype.itemsize  # Python integers: no overflow
        if offset + skip + need > file_size:  # checked before reading: a forged count allocates nothing
            raise L2TError(
                f"{path}: truncated PLY: element vertex declares {count} splats, which need "
                f"{offset + skip + need} bytes; the file has {file_size}"
            )
        f.seek(offset + skip)
        body = f.read(need)
    if len(body) < count * dtype.itemsize:
        raise L2TError(
            f"{path}: truncated PLY: {count} splats need {count * dtype.itemsize} bytes of vertex data, "
            f"found {len(body)}"
        )
    rec = np.frombuffer(body, dtype=dtype, count=count)

    present = set(names)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    required += ["scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [n for n in required if n not in present]
    if missing:
        raise L2TError(f"{path}: PLY lacks required 3DGS attribute(s): {', '.join(missing)}")
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest % 3 or (n_rest // 3 + 1) not in (1, 4, 9, 16):
        raise L2TError(f"{path}: {n_rest} f_rest_* attributes do not match an SH degree 0..3 (0, 9, 24 or 45)")
    expected_rest = [f"f_rest_{i}" for i in range(n_rest)]
    missing_rest = [n for n in expected_rest if n not in present]
    if missing_rest:
        raise L2TError(f"{path}: PLY lacks attribute(s): {', '.join(missing_rest)}")

    def cols(keys: list[str]) -> np.ndarray:
        out = np.empty((count, len(keys)), dtype=np.float32)
        for i, key in enumerate(keys):
            out[:, i] = rec[key]
        finite = np.isfinite(out)
        if not finite.all():
            bad = [key for i, key in enumerate(keys) if not finite[:, i].all()]
            n_bad = int((~finite).any(axis=1).sum())
            raise L2TError(f"{path}: {n_bad} splat(s) have non-finite (NaN/Inf) values in {', '.join(bad)}")
        return out

    k = n_rest // 3 + 1
    dc = cols(["f_dc_0", "f_dc_1", "f_dc_2"])
    sh = np.empty((count, k, 3), dtype=np.float32)
    sh[:, 0, :] = dc
    if k > 1:
        sh[:, 1:, :] = cols(expected_rest).reshape(count, 3, k - 1).transpose(0, 2, 1)
    binding = None
    if "binding_0" in present:
        raw_binding = rec["binding_0"]
        if raw_binding.dtype.kind == "f" and not np.isfinite(raw_binding).all():
            raise L2TError(f"{path}: binding_0 has non-finite values")
        binding = raw_binding.astype(np.int64)
        if count and ((binding != raw_binding).any() or binding.min() < 0):
            raise L2TError(f"{path}: binding_0 must hold whole non-negative triangle indices")
    elif require_binding:
        raise L2TError(f"{path}: PLY lacks attribute binding_0 (not a mesh-bound avatar point cloud)")
    return GaussianPly(
        means=cols(["x", "y", "z"]),
        log_scales=cols(["scale_0", "scale_1", "scale_2"]),
        quats=cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacity_logits=cols(["opacity"])[:, 0],
        sh=sh,
        binding=binding,
    )
