"""Evaluation regions: lip vertices (LVE), upper-face vertices (FDD) and the lip-gap vertex pair.

Sources, by how :func:`resolve_regions` finds them:

1. an explicit file or folder (``l2t-gs eval --regions``):

   - ``.npz``: arrays ``lips`` / ``mask_lips``; ``upper_face`` / ``mask_upper_face`` (or the union of
     ``forehead`` and ``eye_region``, with or without the ``mask_`` prefix); optionally ``lip_pair``
     [2] or ``landmark_upper_lip_mid`` + ``landmark_lower_lip_mid``. The built-in head's own file
     (``l2t_gs/assets/head/l2t_head.npz``) is such a file.
   - ``.pkl``: FLAME's ``FLAME_masks.pkl`` (VOCASET/FLAME: lips = ``lips``, upper face = ``forehead``
     + ``eye_region``, as CodeTalker-style evaluations on FLAME use) or any pickled dict with the keys
     above; read with the project's restricted unpickler.
   - ``.json``: an object with the same keys holding index lists.
   - a folder holding CodeTalker's BIWI region files ``lve.txt`` (lip vertices) and ``fdd.txt``
     (upper-face vertices), comma- or whitespace-separated indices.

   Boolean per-vertex masks are accepted wherever index lists are.
2. the same names inside the data root: ``regions.npz``, ``regions.json``, ``FLAME_masks.pkl`` or a
   ``regions/`` folder with ``lve.txt`` + ``fdd.txt``;
3. the built-in head's regions (``mask_lips``, ``mask_upper_face``, the lip midline landmarks) when
   the meshes have the built-in head's vertex count.

Otherwise :class:`L2TError` says what to pass. The lip pair (needed only by the lip-gap metrics)
can also be given on its own (``--lip-pair U,L``); FLAME's masks and BIWI's files have none.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from l2t_gs.errors import L2TError
from l2t_gs.rig.loader import load_flame_masks, resolve_head_spec

__all__ = ["Regions", "builtin_regions", "load_regions", "resolve_regions"]

#: Files looked for inside a data root when no regions are given (in this order).
DATA_ROOT_CANDIDATES = ("regions.npz", "regions.json", "FLAME_masks.pkl", "regions")
_REGION_NAMES = ("lips", "upper_face", "forehead", "eye_region")
_NPZ_KEYS = frozenset(
    [*_REGION_NAMES, *(f"mask_{n}" for n in _REGION_NAMES)]
    + ["lip_pair", "landmark_upper_lip_mid", "landmark_lower_lip_mid", "n_verts", "v_template"]
)
_FLAME_VERTS = 5023
_BIWI_VERTS = 23370


@dataclass(frozen=True)
class Regions:
    """Vertex index sets of the evaluation regions (int64, sorted, unique).

    ``n_verts`` is the vertex count of the mesh the regions came with, when the source says
    (``None`` otherwise); :meth:`check` validates indices against the evaluated meshes.
    """

    lips: np.ndarray
    upper_face: np.ndarray
    lip_pair: tuple[int, int] | None = None
    source: str = ""
    n_verts: int | None = None

    def check(self, n_verts: int) -> Regions:
        """Raise :class:`L2TError` unless every index addresses a vertex of an ``n_verts`` mesh."""
        if self.n_verts is not None and self.n_verts != n_verts:
            raise L2TError(
                f"regions {self.source} are for {self.n_verts}-vertex meshes, the data has {n_verts} vertices"
            )
        for name, idx in (("lips", self.lips), ("upper_face", self.upper_face), ("lip_pair", self.lip_pair)):
            arr = np.asarray(idx if idx is not None else [], dtype=np.int64)
            bad = arr[(arr < 0) | (arr >= n_verts)]
            if bad.size:
                raise L2TError(
                    f"regions {self.source}: {name} indexes vertex {int(bad[0])}, outside the "
                    f"{n_verts}-vertex meshes of the data"
                )
        return self

    def with_lip_pair(self, pair: tuple[int, int] | None) -> Regions:
        """A copy whose lip pair is ``pair`` (``None`` keeps the current one)."""
        return self if pair is None else replace(self, lip_pair=_pair(pair, "lip pair"))

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (source, region sizes, lip pair)."""
        return {
            "source": self.source,
            "lips": int(self.lips.size),
            "upper_face": int(self.upper_face.size),
            "lip_pair": list(self.lip_pair) if self.lip_pair else None,
        }


# --------------------------------------------------------------------------- helpers
def _indices(value: Any, what: str) -> np.ndarray:
    """Sorted unique int64 vertex indices from an index list/array or a boolean per-vertex mask."""
    try:
        a = np.asarray(value)
    except Exception:
        raise L2TError(f"{what}: not an array of vertex indices") from None
    if a.dtype == bool:
        return np.flatnonzero(a.reshape(-1)).astype(np.int64)
    if a.dtype.kind not in "iuf" or (a.dtype.kind == "f" and not np.array_equal(a, np.round(a))):
        raise L2TError(f"{what}: expected integer vertex indices, got {a.dtype} values")
    return np.unique(a.reshape(-1).astype(np.int64))


def _pair(value: Any, what: str) -> tuple[int, int]:
    a = np.asarray(value).reshape(-1)
    if a.size != 2 or a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.array_equal(a, np.round(a))):
        raise L2TError(f"{what}: expected two vertex indices (upper lip, lower lip), got {a.tolist()}")
    u, low = int(a[0]), int(a[1])
    if u == low:
        raise L2TError(f"{what}: the upper and lower lip vertex must differ, got {u} twice")
    return u, low


def _get(arrays: Mapping[str, Any], name: str) -> Any:
    for key in (name, f"mask_{name}"):
        if key in arrays:
            return arrays[key]
    return None


def regions_from_mapping(arrays: Mapping[str, Any], source: str) -> Regions:
    """Build :class:`Regions` from a name -> indices mapping (the layouts of the module docstring)."""
    lips = _get(arrays, "lips")
    if lips is None:
        raise L2TError(f"regions {source} have no 'lips' region (keys: {', '.join(sorted(arrays)) or 'none'})")
    upper = _get(arrays, "upper_face")
    if upper is not None:
        upper_idx = _indices(upper, f"regions {source}: upper_face")
    else:
        parts = [_get(arrays, k) for k in ("forehead", "eye_region")]
        if any(p is None for p in parts):
            raise L2TError(f"regions {source} have no 'upper_face' region (nor 'forehead' + 'eye_region' to make one)")
        upper_idx = np.union1d(
            _indices(parts[0], f"regions {source}: forehead"), _indices(parts[1], f"regions {source}: eye_region")
        )
    lips_idx = _indices(lips, f"regions {source}: lips")
    for name, idx in (("lips", lips_idx), ("upper_face", upper_idx)):
        if idx.size == 0:
            raise L2TError(f"regions {source}: the {name} region is empty")
    pair = None
    if "lip_pair" in arrays:
        pair = _pair(arrays["lip_pair"], f"regions {source}: lip_pair")
    elif "landmark_upper_lip_mid" in arrays and "landmark_lower_lip_mid" in arrays:
        pair = _pair(
            np.concatenate(
                [
                    np.asarray(arrays["landmark_upper_lip_mid"]).reshape(-1)[:1],
                    np.asarray(arrays["landmark_lower_lip_mid"]).reshape(-1)[:1],
                ]
            ),
            f"regions {source}: landmark_upper/lower_lip_mid",
        )
    n_verts = None
    if "v_template" in arrays:
        n_verts = int(np.asarray(arrays["v_template"]).shape[0])
    elif "n_verts" in arrays:
        n_verts = int(np.asarray(arrays["n_verts"]).reshape(-1)[0])
    return Regions(lips=lips_idx, upper_face=upper_idx, lip_pair=pair, source=source, n_verts=n_verts)


def _read_index_txt(path: Path) -> np.ndarray:
    try:
        text = path.read_text()
    except OSError as exc:
        raise L2TError(f"cannot read region file {path}: {exc.strerror or exc}") from None
    tokens = [t for t in re.split(r"[,\s]+", text.strip()) if t]
    try:
        return _indices([int(t) for t in tokens], f"region file {path}")
    except ValueError:
        raise L2TError(f"region file {path} must hold comma-separated integer vertex indices") from None


def load_regions(path: str | os.PathLike[str]) -> Regions:
    """Read regions from an ``.npz``/``.pkl``/``.json`` file or a folder with ``lve.txt`` + ``fdd.txt``."""
    p = Path(path).expanduser()
    if p.is_dir():
        files = [p / "lve.txt", p / "fdd.txt"]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise L2TError(f"regions folder {p} lacks {', '.join(missing)} (CodeTalker's lve.txt and fdd.txt)")
        lips, upper = (_read_index_txt(f) for f in files)
        for f, idx in zip(files, (lips, upper), strict=True):
            if idx.size == 0:
                raise L2TError(f"region file {f} holds no vertex indices")
        return Regions(lips=lips, upper_face=upper, source=str(p))
    if not p.is_file():
        raise L2TError(f"regions file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays: dict[str, Any] = {k: z[k] for k in z.files if k in _NPZ_KEYS}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raise L2TError(f"regions file {p} is not a readable .npz ({type(exc).__name__}: {exc})") from None
        return regions_from_mapping(arrays, str(p))
    if suffix == ".pkl":
        return regions_from_mapping(load_flame_masks(p), str(p))
    if suffix == ".json":
        try:
            data = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise L2TError(f"regions file {p} is not readable JSON ({exc})") from None
        if not isinstance(data, dict):
            raise L2TError(f"regions file {p} must hold a JSON object of region name -> vertex indices")
        return regions_from_mapping(data, str(p))
    raise L2TError(
        f"regions file {p}: unknown type {p.suffix or '(none)'} (use .npz, .pkl, .json or a folder "
        "with lve.txt and fdd.txt)"
    )


def builtin_regions() -> Regions:
    """The built-in head's lips, upper face and lip midline pair (from its shipped ``.npz``)."""

    regions = load_regions(resolve_head_spec("builtin"))
    return replace(regions, source="builtin head")


def _builtin_n_verts() -> int | None:

    try:
        with np.load(resolve_head_spec("builtin"), allow_pickle=False) as z:
            return int(z["v_template"].shape[0])
    except (L2TError, OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def resolve_regions(
    spec: str | os.PathLike[str] | Regions | None,
    n_verts: int,
    *,
    data_root: str | os.PathLike[str] | None = None,
    lip_pair: tuple[int, int] | None = None,
) -> Regions:
    """Regions for ``n_verts``-vertex meshes: ``spec``, else the data root's, else the built-in head's.

    ``lip_pair`` overrides the pair. The result is checked against ``n_verts``.
    """
    if isinstance(spec, Regions):
        regions = spec
    elif spec is not None:
        regions = load_regions(spec)
    else:
        regions = None
        if data_root is not None and Path(data_root).is_dir():
            for name in DATA_ROOT_CANDIDATES:
                cand = Path(data_root) / name
                if cand.is_file() or (cand.is_dir() and (cand / "lve.txt").is_file()):
                    regions = load_regions(cand)
                    break
        if regions is None:
            if n_verts == _builtin_n_verts():
                regions = builtin_regions()
            else:
                hint = {
                    _FLAME_VERTS: " (FLAME/VOCASET topology: pass FLAME's FLAME_masks.pkl)",
                    _BIWI_VERTS: " (BIWI topology: pass a folder with CodeTalker's lve.txt and fdd.txt)",
                }.get(n_verts, "")
                raise L2TError(
                    f"no lip/upper-face regions for {n_verts}-vertex meshes{hint}: pass --regions FILE "
                    "(.npz/.json with 'lips' and 'upper_face', FLAME_masks.pkl, or a folder with lve.txt + fdd.txt)"
                )
    return regions.with_lip_pair(lip_pair).check(n_verts)
