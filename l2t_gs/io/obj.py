"""Wavefront OBJ output for meshes."""

from __future__ import annotations

import io
import os

import numpy as np

from l2t_gs.io.atomic import write_text_atomic


def write_obj(path: str | os.PathLike, verts: np.ndarray, faces: np.ndarray, header: str = "") -> None:
    """Write a triangle mesh (verts [V,3], faces [F,3] zero-based) as OBJ, atomically."""
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    buf = io.StringIO()
    for line in header.splitlines():
        buf.write(f"# {line}\n")
    np.savetxt(buf, verts, fmt="v %.6f %.6f %.6f")
    np.savetxt(buf, faces + 1, fmt="f %d %d %d")
    write_text_atomic(path, buf.getvalue())
