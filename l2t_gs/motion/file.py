"""Motion files: per-frame vertices or rig coefficients on disk, read in chunks and resampled in time.

``l2t-gs render --motion FILE`` renders such a file (ground truth, saved predictions) instead of a model's
output. Accepted files:

- ``.npy``: vertices ``[T, V, 3]`` or flat ``[T, V*3]`` (VOCASET's and BIWI's ``vertices_npy`` layout,
  ``l2t-gs eval --save-predictions``). Its frame rate comes from ``fps=`` (``--motion-fps``), else the
  ``predictions.json`` beside it (written by ``eval --save-predictions``), else the ``dataset.json`` of
  the dataset it sits in (``<root>/vertices_npy/<clip>.npy``: ``vertices_fps``, else ``fps``), else
  ``fps=`` (``--motion-fps``; VOCASET's files are 60 fps, BIWI's 25).
- ``.npz``: ``vertices`` ``[T, V, 3]`` (``render --export-mesh``), or rig coefficients: any of
  :data:`RIG_KEYS` (``expr [T, E]``, ``jaw_pose [T, 3]``, ...; missing ones stay at the avatar's
  neutral), optionally with ``fps`` (a scalar; without it, ``fps=``).

What a file records wins over ``fps=``, so one ``--motion-fps`` serves a comparison of ground truth
(unrecorded) with saved predictions (recorded).

Frames are read lazily (``.npy`` memory-mapped), so memory stays bounded by one chunk.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2t_gs.errors import L2TError

__all__ = ["RIG_KEYS", "MotionFile", "open_motion", "resample_positions"]

#: Per-frame rig inputs a motion ``.npz`` may hold (those of a Gaussian avatar's rig).
RIG_KEYS: tuple[str, ...] = ("expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation", "dynamic_offset")


def resample_positions(n_out: int, fps_out: float, n_in: int, fps_in: float, start: int = 0) -> np.ndarray:
    """Fractional source-frame positions ``[n_out]`` of output frames ``start..start+n_out-1``: output frame
    ``m`` (time ``m / fps_out``) sits at ``m * fps_in / fps_out``, clamped to the last source frame (a
    motion shorter than the audio holds its last frame)."""
    m = np.arange(start, start + n_out, dtype=np.float64)
    return np.clip(m * (fps_in / fps_out), 0.0, max(n_in - 1, 0))


@dataclass
class MotionFile:
    """An opened motion file: ``kind`` ``"vertices"`` or ``"rig"``, ``n_frames`` at ``fps``; ``n_verts``
    for vertices. Read frames with :meth:`chunks`."""

    path: Path
    kind: str
    fps: float
    n_frames: int
    n_verts: int | None
    arrays: dict[str, Any]  # name -> array-like [T, ...] (a memory map for .npy)

    @property
    def seconds(self) -> float:
        return self.n_frames / self.fps

    def chunks(self, fps: float, n_out: int, chunk: int = 250) -> Iterator[dict[str, np.ndarray]]:
        """``n_out`` frames at ``fps``, ``chunk`` at a time, linearly interpolated in time (float32):
        ``{"vertices": [t, V, 3]}`` or ``{rig key: [t, ...]}``."""
        for start in range(0, n_out, chunk):
            pos = resample_positions(min(chunk, n_out - start), fps, self.n_frames, self.fps, start)
            lo = np.floor(pos).astype(np.int64)
            hi = np.minimum(lo + 1, self.n_frames - 1)
            w = (pos - lo).astype(np.float32)
            a, b = int(lo.min()), int(hi.max()) + 1  # read only the source frames this chunk needs
            out = {}
            for key, arr in self.arrays.items():
                block = np.asarray(arr[a:b], dtype=np.float32)
                if key == "vertices":
                    block = block.reshape(block.shape[0], -1, 3)
                ww = w.reshape(-1, *([1] * (block.ndim - 1)))
                out[key] = block[lo - a] * (1 - ww) + block[hi - a] * ww
                if not np.isfinite(out[key]).all():
                    raise L2TError(f"{self.path}: the motion holds NaN or inf (frames {a}..{b - 1})")
            yield out


def _fps_beside(path: Path) -> float | None:
    """The frame rate recorded next to a ``.npy``: ``predictions.json`` in its folder, or the ``dataset.json``
    of a dataset root holding it in ``vertices_npy/``."""
    pred = path.parent / "predictions.json"
    candidates = [(pred, ("fps",))]
    if path.parent.name == "vertices_npy":
        candidates.append((path.parent.parent / "dataset.json", ("vertices_fps", "fps")))
    for file, keys in candidates:
        if not file.is_file():
            continue
        try:
            meta = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise L2TError(f"cannot read {file}: {exc}") from None
        for key in keys:
            if isinstance(meta, dict) and isinstance(meta.get(key), int | float) and not isinstance(meta[key], bool):
                return float(meta[key])
    return None


def _check_fps(fps: float, where: str) -> float:
    if not (math.isfinite(fps) and 1 <= fps <= 1000):
        raise L2TError(f"{where}: motion frame rate must be in 1..1000, got {fps:g}")
    return float(fps)


def open_motion(path: str | os.PathLike, fps: float | None = None) -> MotionFile:
    """Open a motion file (see the module docstring); ``fps``: the frame rate when the file records none.
    Unreadable files, wrong shapes, NaN/inf in the first frame and unknown frame rates are one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise L2TError(f"--motion file not found: {p}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
            arrays: dict[str, Any] = {"vertices": arr}
            stored = None
        elif suffix == ".npz":
            z = np.load(p, allow_pickle=False)
            names = set(z.files)
            stored = float(z["fps"]) if "fps" in names else None
            if "vertices" in names:
                arrays = {"vertices": z["vertices"]}
            else:
                arrays = {k: z[k] for k in RIG_KEYS if k in names}
            if not arrays:
                raise L2TError(f"{p}: no 'vertices' and no rig coefficients ({', '.join(RIG_KEYS)})")
        else:
            raise L2TError(f"--motion must be a .npy or .npz file, got {p}")
    except L2TError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise L2TError(f"cannot read motion file {p}: {exc}") from None
    if "vertices" in arrays:
        v = arrays["vertices"]
        ok = v.ndim == 3 and v.shape[2] == 3 or v.ndim == 2 and v.shape[1] % 3 == 0 and v.shape[1] > 0
        if not ok or v.dtype.kind not in "fiu":
            raise L2TError(
                f"{p}: vertices must be numbers [frames, V, 3] or [frames, V*3], got {v.dtype} {list(v.shape)}"
            )
        kind, n_verts, n = "vertices", int(v.shape[1] if v.ndim == 3 else v.shape[1] // 3), int(v.shape[0])
    else:
        lengths = {k: int(a.shape[0]) if a.ndim >= 2 else -1 for k, a in arrays.items()}
        if len(set(lengths.values())) != 1 or -1 in lengths.values():
            raise L2TError(f"{p}: rig coefficients must be [frames, ...] arrays of one length, got {lengths}")
        kind, n_verts, n = "rig", None, next(iter(lengths.values()))
    if n < 1:
        raise L2TError(f"{p}: the motion has no frames")
    first = {k: np.asarray(a[:1], dtype=np.float64) for k, a in arrays.items()}
    if not all(np.isfinite(x).all() for x in first.values()):
        raise L2TError(f"{p}: the motion holds NaN or inf")
    rate = stored if stored is not None else _fps_beside(p) if suffix == ".npy" else None
    rate = fps if rate is None else rate
    if rate is None:
        raise L2TError(f"{p}: the motion's frame rate is not recorded; give it with --motion-fps")
    return MotionFile(p, kind, _check_fps(float(rate), str(p)), n, n_verts, arrays)
