"""The avatar folder format, and import of GaussianAvatars exports.

An avatar is a folder (``docs/avatar-format.md`` has the full description)::

    <avatar>/
        avatar.json       {"format": "l2t-gs-avatar", "version": 1, "name", "head_model",
                           "sh_degree", "num_splats", "num_vertices", "num_faces", "notes"}
        point_cloud.ply   INRIA 3DGS PLY in *local* triangle coordinates, with ``binding_0``
        flame_param.npz   neutral rig parameters, GaussianAvatars names and shapes:
                          shape [S], expr [1, E], rotation / neck_pose / jaw_pose / translation
                          [1, 3] (axis-angle), eyes_pose [1, 6], static_offset [1, V, 3],
                          dynamic_offset [1, V, 3]
        head_model.npz    (optional) the head model, when ``head_model`` names a file

``head_model`` is ``"builtin"`` (the project's shipped head) or the name of a file inside the
folder (``head_model.npz`` / ``head_model.pkl``, anything :func:`l2t_gs.rig.load_head_model`
reads). When ``flame_param.npz`` holds ``T > 1`` frames (a GaussianAvatars export) the first one is
the neutral frame. Shipped avatars live in the ``l2t_gs.avatars`` package (``avatars/<name>/`` in
the repository) and load by name.

A GaussianAvatars export (``point_cloud.ply`` + ``flame_param.npz`` without ``avatar.json``) is
converted by :func:`import_gaussian_avatars` with a user-supplied FLAME model. GaussianAvatars
always extends FLAME with teeth (120 vertices and 168 triangles appended after FLAME's own, see
``flame_model/flame.py::FlameHead.add_teeth``); the import rebuilds that extension on the user's
FLAME model (:mod:`l2t_gs.rig.flame_teeth`) and keeps every splat, in GaussianAvatars' triangle
order. The avatar folder keeps the FLAME file as is and names the extension in ``avatar.json``
(``head_model_extensions``); ``drop_teeth=True`` imports onto plain FLAME instead, discarding the
splats on teeth triangles.

``dynamic_offset`` follows the meaning of the file it comes from (``dynamic_offset="auto"``):
GaussianAvatars' FLAME never adds it, so it is ignored in GaussianAvatars exports (a
``flame_param.npz`` next to a ``point_cloud.ply``); VHAP, the tracker, adds it to the canonical
vertices, so it is applied from any other motion file. ``"ignore"`` / ``"apply"`` force either.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.gaussians.avatar import (
    DYNAMIC_KEYS,
    NEUTRAL_KEYS,
    GaussianAvatar,
    head_model_sizes,
    head_model_spec_of,
)
from l2t_gs.gaussians.frame_options import DYNAMIC_OFFSET_MODES
from l2t_gs.gaussians.ply import GaussianPly, read_gaussian_ply, write_gaussian_ply
from l2t_gs.io.atomic import output_parent, replace_dir
from l2t_gs.io.npz import read_npz
from l2t_gs.io.tempfiles import make_temp_dir
from l2t_gs.rig import (
    GA_TEETH,
    HEAD_EXTENSIONS,
    add_gaussian_avatars_teeth,
    apply_head_extensions,
    load_head_model,
    save_head_model,
)
from l2t_gs.rig.flame_teeth import TEETH_FACES, TEETH_VERTICES

if TYPE_CHECKING:
    from l2t_gs.rig import HeadModel

FORMAT_NAME = "l2t-gs-avatar"
FORMAT_VERSION = 1
AVATAR_JSON = "avatar.json"
POINT_CLOUD = "point_cloud.ply"
FLAME_PARAM = "flame_param.npz"
#: GaussianAvatars' teeth extension: vertices and triangles appended to FLAME's.
GA_TEETH_VERTICES = TEETH_VERTICES
GA_TEETH_FACES = TEETH_FACES

#: Limits of a flame_param.npz: bytes per array (a 10-minute GaussianAvatars track at 25 fps with
#: per-frame offsets of a 5143-vertex head is 925 MB) and identity/expression components.
MAX_PARAM_BYTES = 1 << 30
MAX_COMPONENTS = 10_000

_POSE_SIZES = {"rotation": 3, "neck_pose": 3, "jaw_pose": 3, "translation": 3, "eyes_pose": 6}
_REQUIRED_PARAMS = ("shape", "expr", "rotation", "neck_pose", "jaw_pose", "eyes_pose", "translation")


# ---------------------------------------------------------------------------- rig parameters
def load_flame_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``flame_param.npz`` (GaussianAvatars names); float arrays only, all keys kept."""
    path = Path(path)
    if not path.is_file():
        raise L2TError(f"rig parameter file not found: {path}")
    arrays = read_npz(path, str(path), max_array_bytes=MAX_PARAM_BYTES, max_total_bytes=4 * MAX_PARAM_BYTES)
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise L2TError(f"{path}: field '{key}' must hold numbers, got {value.dtype} values")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise L2TError(f"{path}: field '{key}' has non-finite (NaN/Inf) values")
    for key in ("shape", "expr"):
        if key in arrays and (arrays[key].ndim not in (1, 2) or arrays[key].shape[-1] > MAX_COMPONENTS):
            raise L2TError(
                f"{path}: field '{key}' must be [N] or [T, N] with N <= {MAX_COMPONENTS}, "
                f"got shape {list(arrays[key].shape)}"
            )
    return arrays


def num_frames(params: dict[str, np.ndarray]) -> int:
    """Frames ``T`` in a parameter file (``expr`` is ``[T, E]``; an unbatched ``[E]`` counts as 1)."""
    expr = params.get("expr")
    return int(expr.shape[0]) if expr is not None and expr.ndim == 2 else 1


def _fit_vertex_rows(value: np.ndarray, n_verts: int, key: str, where: str) -> np.ndarray:
    """``[.., V', 3]`` per-vertex array -> ``[.., V, 3]``.

    Rows of GaussianAvatars' teeth are dropped for a model without them; a FLAME-sized array on a
    model with the teeth gets zero rows for them (as GaussianAvatars pads a tracker's offsets).
    """
    rows = value.shape[-2] if value.ndim >= 2 else -1
    if value.ndim < 2 or value.shape[-1] != 3:
        raise L2TError(f"{where}: {key} has shape {list(value.shape)}, expected [..., {n_verts}, 3]")
    if rows == n_verts + GA_TEETH_VERTICES:
        return value[..., :n_verts, :]
    if rows + GA_TEETH_VERTICES == n_verts:
        pad = [(0, 0)] * value.ndim
        pad[-2] = (0, GA_TEETH_VERTICES)
        return np.pad(value, pad)
    if rows != n_verts:
        raise L2TError(f"{where}: {key} has {rows} vertices, the head model has {n_verts} (topology mismatch)")
    return value


def select_frame(
    params: dict[str, np.ndarray],
    frame: int,
    n_verts: int,
    *,
    keys: tuple[str, ...] = (*NEUTRAL_KEYS, "dynamic_offset"),
    where: str = FLAME_PARAM,
) -> dict[str, Tensor]:
    """Unbatched float32 rig parameters of one frame.

    Per-frame arrays are ``[T, ...]`` (or already unbatched); ``shape`` may be ``[S]`` or ``[1, S]``
    and ``static_offset`` ``[V, 3]`` or ``[1, V, 3]``. Keys in ``keys`` absent from ``params`` are
    left out, except that a missing required key (``shape``, ``expr`` and the poses, when asked for)
    raises :class:`L2TError`.
    """
    missing = [k for k in _REQUIRED_PARAMS if k in keys and k not in params]
    if missing:
        raise L2TError(f"{where}: missing rig parameter(s) {', '.join(missing)}")
    t = num_frames(params)
    if not -t <= frame < t:
        raise L2TError(f"{where}: frame {frame} out of range (it holds {t} frame(s))")
    out: dict[str, Tensor] = {}
    unbatched_dims = {"shape": 1, "expr": 1, "static_offset": 2, "dynamic_offset": 2}
    for key in keys:
        if key not in params:
            continue
        value = np.asarray(params[key], dtype=np.float32)
        if key in ("static_offset", "dynamic_offset"):
            value = _fit_vertex_rows(value, n_verts, key, where)
        ndim = unbatched_dims.get(key, 1)
        if value.ndim == ndim + 1:
            if key in ("shape", "static_offset"):  # identity: [1, ...] (or per frame; take the first)
                value = value[0]
            else:
                if value.shape[0] != t:
                    raise L2TError(f"{where}: {key} has {value.shape[0]} frames, expr has {t}")
                value = value[frame]
        if value.ndim != ndim:
            raise L2TError(f"{where}: {key} has shape {list(params[key].shape)}, unexpected")
        if key in _POSE_SIZES and value.shape[-1] != _POSE_SIZES[key]:
            raise L2TError(
                f"{where}: field '{key}' has shape {list(params[key].shape)}, expected [T, {_POSE_SIZES[key]}]"
            )
        out[key] = torch.from_numpy(np.ascontiguousarray(value))
    return out


def is_gaussian_avatars_export(path: str | os.PathLike) -> bool:
    """Whether a parameter file is a GaussianAvatars export: ``flame_param.npz`` beside ``point_cloud.ply``."""
    p = Path(path)
    return p.name == FLAME_PARAM and (p.parent / POINT_CLOUD).is_file()


def use_dynamic_offset(
    mode: str,
    params: dict[str, np.ndarray],
    path: str | os.PathLike,
    note: Callable[[str], None] | None = None,
) -> bool:
    """Whether ``dynamic_offset`` of the parameter file ``path`` is added to the canonical vertices.

    ``mode`` is one of :data:`DYNAMIC_OFFSET_MODES`: ``"auto"`` ignores it in a GaussianAvatars
    export (its FLAME never adds it) and applies it otherwise (VHAP-style motion files). An ignored
    non-zero offset is reported through ``note`` (one line).
    """
    if mode not in DYNAMIC_OFFSET_MODES:
        raise L2TError(f"dynamic_offset mode must be one of {', '.join(DYNAMIC_OFFSET_MODES)}, got {mode!r}")
    ga = is_gaussian_avatars_export(path)
    apply = mode == "apply" or (mode == "auto" and not ga)
    value = params.get("dynamic_offset")
    if not apply and note is not None and value is not None and value.size and bool(np.any(value != 0)):
        why = "GaussianAvatars' FLAME ignores it in its exports" if ga else "--dynamic-offset ignore"
        note(
            f"{path}: dynamic_offset is non-zero (max |offset| {float(np.abs(value).max()):.3g} m) and is "
            f"ignored ({why}); --dynamic-offset apply adds it to the canonical vertices"
        )
    return apply


def load_frame_params(
    path: str | os.PathLike,
    frame: int,
    avatar: GaussianAvatar,
    *,
    dynamic_offset: str = "auto",
    note: Callable[[str], None] | None = None,
) -> dict[str, Tensor]:
    """The per-frame rig parameters (:data:`DYNAMIC_KEYS`) of frame ``frame`` of a motion file.

    Identity parameters (``shape``, ``static_offset``) stay the avatar's, as GaussianAvatars does
    when it renders a target motion. ``dynamic_offset`` is taken or left out per
    :func:`use_dynamic_offset` (``dynamic_offset`` mode, ``note`` for an ignored non-zero one).
    """
    params = load_flame_params(path)
    if "expr" not in params:
        raise L2TError(f"{path}: missing rig parameter expr")
    keys = DYNAMIC_KEYS
    if not use_dynamic_offset(dynamic_offset, params, path, note):
        keys = tuple(k for k in DYNAMIC_KEYS if k != "dynamic_offset")
    out = select_frame(params, frame, avatar.n_verts, keys=keys, where=str(path))
    out.setdefault("dynamic_offset", torch.zeros(avatar.n_verts, 3))  # per frame: absent means zero
    expr, n_expr = out["expr"], int(avatar.neutral_params["expr"].shape[0])
    if expr.shape[0] < n_expr:  # fewer expression components: zero-pad, as the rig does
        out["expr"] = torch.nn.functional.pad(expr, (0, n_expr - expr.shape[0]))
    for key, value in out.items():
        expected = tuple(avatar.neutral_params[key].shape) if key in avatar.neutral_params else None
        if expected is not None and tuple(value.shape) != expected:
            raise L2TError(
                f"{path}: {key} has shape {list(value.shape)}, avatar '{avatar.name}' needs {list(expected)}"
            )
    return out


def _save_flame_params(path: Path, params: dict[str, Tensor], n_verts: int) -> None:
    arrays: dict[str, np.ndarray] = {}
    for key in (*NEUTRAL_KEYS, "dynamic_offset"):
        value = params.get(key)
        if value is None:
            value = torch.zeros(n_verts, 3)
        value = value.detach().cpu().to(torch.float32).numpy()
        arrays[key] = value if key == "shape" else value[None]
    with open(path, "wb") as f:
        np.savez(f, **arrays)


# ---------------------------------------------------------------------------- loading
def shipped_avatars_dir() -> Path | None:
    """The folder of the ``l2t_gs.avatars`` package, or ``None`` if it is not installed."""
    try:
        return Path(str(resources.files("l2t_gs.avatars")))
    except ModuleNotFoundError:
        return None


def resolve_avatar_dir(name_or_dir: str | os.PathLike) -> Path:
    """A directory path as given, or the shipped avatar folder of that name."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    text = str(name_or_dir)
    if os.sep in text or (os.altsep and os.altsep in text) or text in ("", ".", ".."):
        raise L2TError(f"avatar directory not found: {path}")
    root = shipped_avatars_dir()
    if root is not None and (root / text / AVATAR_JSON).is_file():
        return root / text
    shipped = sorted(p.name for p in root.iterdir() if (p / AVATAR_JSON).is_file()) if root else []
    available = ", ".join(shipped) if shipped else "none shipped"
    raise L2TError(f"unknown avatar '{text}' (not a directory; shipped avatars: {available})")


def _read_avatar_json(folder: Path) -> dict[str, Any]:
    meta_path = folder / AVATAR_JSON
    if not meta_path.is_file():
        if (folder / POINT_CLOUD).is_file() and (folder / FLAME_PARAM).is_file():
            raise L2TError(
                f"{folder} has no {AVATAR_JSON}; it looks like a GaussianAvatars export: convert it with "
                f"'l2t-gs avatar import-ga {folder} --flame-model FLAME.pkl --out DIR'"
            )
        raise L2TError(f"{folder} is not an avatar folder (no {AVATAR_JSON})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise L2TError(f"{meta_path}: invalid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise L2TError(f"{meta_path}: not an l2t-gs avatar description (format must be '{FORMAT_NAME}')")
    _check_meta(meta, meta_path)
    return meta


#: avatar.json fields: (JSON type, optional, allowed range for integers).
_META_INT_FIELDS = {
    "version": (1, 1 << 30),
    "sh_degree": (0, 3),
    "num_splats": (1, 1 << 31),
    "num_vertices": (3, 1 << 31),
    "num_faces": (1, 1 << 31),
}
_META_STR_FIELDS = ("name", "head_model", "notes")


def _check_meta(meta: dict[str, Any], meta_path: Path) -> None:
    """Type and range of every known ``avatar.json`` field (one line naming the file and the field)."""
    for key, (low, high) in _META_INT_FIELDS.items():
        if key not in meta:
            continue
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise L2TError(f"{meta_path}: field '{key}' must be an integer, got {json.dumps(value)[:60]}")
        if not low <= value <= high:
            raise L2TError(f"{meta_path}: field '{key}' must be in {low}..{high}, got {value}")
    if meta.get("version", FORMAT_VERSION) > FORMAT_VERSION:
        raise L2TError(f"{meta_path}: avatar format version {meta['version']} is newer than this l2t-gs reads")
    for key in _META_STR_FIELDS:
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            raise L2TError(f"{meta_path}: field '{key}' must be a string, got {json.dumps(value)[:60]}")


def _head_model_path(folder: Path, spec: Any) -> str:
    """``"builtin"`` or the absolute path of the head model file named in ``avatar.json``."""
    if spec == "builtin":
        return "builtin"
    if not isinstance(spec, str) or not spec or Path(spec).is_absolute() or ".." in Path(spec).parts:
        raise L2TError(
            f"{folder / AVATAR_JSON}: head_model must be 'builtin' or a file name inside the folder, got {spec!r}"
        )
    path = folder / spec
    if not path.is_file():
        raise L2TError(f"{folder}: head model file {spec} named in {AVATAR_JSON} is missing")
    return str(path.resolve())


def _head_model_extensions(folder: Path, meta: dict[str, Any]) -> tuple[str, ...]:
    """``head_model_extensions`` of ``avatar.json`` (names of ``HEAD_EXTENSIONS``), checked."""
    names = meta.get("head_model_extensions") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise L2TError(f"{folder / AVATAR_JSON}: head_model_extensions must be a list of names, got {names!r}")
    unknown = [n for n in names if n not in HEAD_EXTENSIONS]
    if unknown:
        raise L2TError(
            f"{folder / AVATAR_JSON}: unknown head model extension {unknown[0]!r} "
            f"(known: {', '.join(HEAD_EXTENSIONS.choices())})"
        )
    return tuple(names)


def _load_head_model(spec: str, n_shape: int | None, n_expr: int | None) -> HeadModel:

    return load_head_model(spec, n_shape=n_shape, n_expr=n_expr)


def avatar_from_ply(
    ply: GaussianPly,
    head_model: HeadModel,
    neutral_params: dict[str, Tensor],
    **kwargs: Any,
) -> GaussianAvatar:
    """A :class:`GaussianAvatar` from a bound PLY's arrays (validated)."""
    if ply.binding is None:
        raise L2TError("the point cloud has no binding_0 attribute: not a mesh-bound avatar")
    return GaussianAvatar(
        means=torch.from_numpy(ply.means),
        log_scales=torch.from_numpy(ply.log_scales),
        quats=torch.from_numpy(ply.quats),
        opacity_logits=torch.from_numpy(ply.opacity_logits),
        sh=torch.from_numpy(ply.sh),
        binding=torch.from_numpy(ply.binding),
        head_model=head_model,
        neutral_params=neutral_params,
        **kwargs,
    )


def load_avatar(
    name_or_dir: str | os.PathLike, *, head_model: HeadModel | str | os.PathLike | None = None
) -> GaussianAvatar:
    """Load an avatar folder, or a shipped avatar by name.

    Args:
        name_or_dir: a directory, or the name of a shipped avatar (``avatars/<name>``).
        head_model: overrides the head model named in ``avatar.json``: a loaded ``HeadModel`` or a
            spec for ``load_head_model`` (``"builtin"`` or a file path).
    """
    folder = resolve_avatar_dir(name_or_dir)
    meta = _read_avatar_json(folder)
    where = str(folder)
    raw = load_flame_params(folder / FLAME_PARAM)
    missing = [k for k in _REQUIRED_PARAMS if k not in raw]
    if missing:
        raise L2TError(f"{folder / FLAME_PARAM}: missing rig parameter(s) {', '.join(missing)}")
    n_shape, n_expr = int(raw["shape"].shape[-1]), int(raw["expr"].shape[-1])
    extensions = _head_model_extensions(folder, meta)
    if head_model is None or isinstance(head_model, (str, os.PathLike)):
        spec = _head_model_path(folder, meta.get("head_model")) if head_model is None else str(head_model)
        model = apply_head_extensions(_load_head_model(spec, n_shape, n_expr), extensions)
    else:
        model = head_model
        spec = head_model_spec_of(model)
        json_spec = meta.get("head_model")
        if not spec and (json_spec == "builtin" or (isinstance(json_spec, str) and (folder / json_spec).is_file())):
            spec = _head_model_path(folder, json_spec)
    v, f, _, _ = head_model_sizes(model)
    for key, have in (("num_vertices", v), ("num_faces", f)):
        want = meta.get(key)
        if want is not None and int(want) != have:
            raise L2TError(
                f"{where}: topology mismatch: the avatar was built for {want} {key[4:]}, the head model has {have}"
            )
    ply = read_gaussian_ply(folder / POINT_CLOUD, require_binding=True)
    if ply.num_splats == 0:
        raise L2TError(f"{folder / POINT_CLOUD}: the point cloud has no splats (it would render blank frames)")
    if "num_splats" in meta and meta["num_splats"] != ply.num_splats:
        raise L2TError(
            f"{folder / AVATAR_JSON}: field 'num_splats' says {meta['num_splats']}, {POINT_CLOUD} has {ply.num_splats}"
        )
    if "sh_degree" in meta and int(meta["sh_degree"]) != ply.sh_degree:
        raise L2TError(f"{where}: {AVATAR_JSON} says sh_degree {meta['sh_degree']}, the PLY has {ply.sh_degree}")
    neutral = select_frame(raw, 0, v, where=str(folder / FLAME_PARAM))
    neutral.setdefault("static_offset", torch.zeros(v, 3))
    return avatar_from_ply(
        ply,
        model,
        neutral,
        head_model_spec=spec,
        name=str(meta.get("name") or folder.name),
        notes=str(meta.get("notes") or ""),
    )


# ---------------------------------------------------------------------------- saving
def check_avatar_out_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a Path if an avatar folder may be written there (its parent exists; it is absent,
    empty or an avatar folder, which is then replaced); else a one-line L2TError."""
    out = Path(out_dir)
    output_parent(out, writable=False)
    if out.exists() and not out.is_dir():
        raise L2TError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / AVATAR_JSON).is_file():
        raise L2TError(f"refusing to replace {out}: it is not empty and not an avatar folder")
    return out


def save_avatar(avatar: GaussianAvatar, out_dir: str | os.PathLike) -> Path:
    """Write ``avatar`` as an avatar folder, atomically (built in a temporary sibling, then renamed).

    An existing ``out_dir`` is replaced only if it is empty or an avatar folder. A file-based head
    model is copied into the folder as ``head_model<suffix>``; one without a file is written as
    ``head_model.npz``.
    """
    avatar.validate()
    out = check_avatar_out_dir(out_dir)
    parent = out.parent
    spec = avatar.head_model_spec or ""
    if spec not in ("", "builtin") and not Path(spec).is_file():
        raise L2TError(f"avatar '{avatar.name}': head model file {spec} not found (needed to save the avatar)")

    tmp = make_temp_dir(parent, out.name)
    try:
        head_entry = "builtin"
        extensions = list(avatar.head_model.extensions)
        if spec == "":  # an in-memory head model: write it out (extensions included in its arrays)
            head_entry = "head_model.npz"
            save_head_model(avatar.head_model, tmp / head_entry)
            extensions = []
        elif spec != "builtin":
            head_entry = "head_model" + "".join(Path(spec).suffixes[-1:])
            shutil.copyfile(spec, tmp / head_entry)
        write_gaussian_ply(
            tmp / POINT_CLOUD,
            GaussianPly(
                means=avatar.means.detach().cpu().float().numpy(),
                log_scales=avatar.log_scales.detach().cpu().float().numpy(),
                quats=avatar.quats.detach().cpu().float().numpy(),
                opacity_logits=avatar.opacity_logits.detach().cpu().float().numpy(),
                sh=avatar.sh.detach().cpu().float().numpy(),
                binding=avatar.binding.detach().cpu().numpy(),
            ),
        )
        _save_flame_params(tmp / FLAME_PARAM, avatar.neutral_params, avatar.n_verts)
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "name": avatar.name,
            "head_model": head_entry,
            **({"head_model_extensions": extensions} if extensions else {}),
            "sh_degree": avatar.sh_degree,
            "num_splats": avatar.num_splats,
            "num_vertices": avatar.n_verts,
            "num_faces": avatar.num_faces,
            "notes": avatar.notes,
        }
        (tmp / AVATAR_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------- GaussianAvatars import
def find_gaussian_avatars_export(export_dir: str | os.PathLike) -> Path:
    """The folder holding ``point_cloud.ply`` + ``flame_param.npz``.

    Accepts that folder itself or a GaussianAvatars output folder (``point_cloud/iteration_<n>/``,
    the highest ``n`` wins).
    """
    root = Path(export_dir)
    if not root.is_dir():
        raise L2TError(f"GaussianAvatars export folder not found: {root}")
    candidates = [root]
    iterations = []
    for p in (root / "point_cloud").glob("iteration_*") if (root / "point_cloud").is_dir() else []:
        with contextlib.suppress(ValueError):
            iterations.append((int(p.name.split("_", 1)[1]), p))
    candidates += [p for _, p in sorted(iterations, reverse=True)]
    for folder in candidates:
        if (folder / POINT_CLOUD).is_file() and (folder / FLAME_PARAM).is_file():
            return folder
    raise L2TError(f"{root}: not a GaussianAvatars export (needs {POINT_CLOUD} and {FLAME_PARAM})")


def import_gaussian_avatars(
    export_dir: str | os.PathLike,
    flame_model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    frame: int = 0,
    drop_teeth: bool = False,
    dynamic_offset: str = "auto",
    name: str | None = None,
    note: Callable[[str], None] | None = None,
) -> GaussianAvatar:
    """Convert a GaussianAvatars export into an avatar folder at ``out_dir``.

    Args:
        export_dir: folder with ``point_cloud.ply`` (local coordinates, ``binding_0``) and
            ``flame_param.npz`` (``T`` tracked frames), or its GaussianAvatars output folder.
        flame_model_path: the FLAME model the export was trained with (e.g. ``flame2023.pkl``);
            copied into the avatar folder as its head model (mind FLAME's license when sharing).
        out_dir: the avatar folder to write.
        frame: which of the ``T`` frames becomes the neutral frame.
        drop_teeth: import onto plain FLAME, discarding splats bound to GaussianAvatars' teeth
            triangles. By default the teeth extension is rebuilt and every splat kept.
        dynamic_offset: ``"auto"`` / ``"ignore"`` leave the export's ``dynamic_offset`` out of the
            neutral frame (GaussianAvatars' FLAME never adds it); ``"apply"`` adds it.
        name: avatar name (default: ``out_dir``'s name).
        note: receives one-line notes (an ignored non-zero ``dynamic_offset``).

    Returns:
        The imported avatar (its head model spec points at the copy inside ``out_dir``).
    """
    folder = find_gaussian_avatars_export(export_dir)
    flame_path = Path(flame_model_path)
    if not flame_path.is_file():
        raise L2TError(f"FLAME model not found: {flame_path}")
    ply = read_gaussian_ply(folder / POINT_CLOUD, require_binding=True)
    if ply.num_splats == 0:
        raise L2TError(f"{folder / POINT_CLOUD}: the point cloud has no splats")
    raw = load_flame_params(folder / FLAME_PARAM)
    missing = [k for k in _REQUIRED_PARAMS if k not in raw]
    if missing:
        raise L2TError(f"{folder / FLAME_PARAM}: missing rig parameter(s) {', '.join(missing)}")
    apply_dynamic = use_dynamic_offset(dynamic_offset, raw, folder / FLAME_PARAM, note)
    model = _load_head_model(str(flame_path), int(raw["shape"].shape[-1]), int(raw["expr"].shape[-1]))
    _, f, _, _ = head_model_sizes(model)

    assert ply.binding is not None
    on_teeth = ply.binding >= f
    n_teeth = int(on_teeth.sum())
    if n_teeth and int(ply.binding.max()) >= f + GA_TEETH_FACES:
        raise L2TError(
            f"{folder / POINT_CLOUD}: splats bind to triangles up to {int(ply.binding.max())}, but the FLAME model "
            f"has {f} (+{GA_TEETH_FACES} GaussianAvatars teeth triangles): wrong FLAME model?"
        )
    dropped = 0
    if drop_teeth:
        if n_teeth:
            keep = ~on_teeth
            ply = GaussianPly(
                means=ply.means[keep],
                log_scales=ply.log_scales[keep],
                quats=ply.quats[keep],
                opacity_logits=ply.opacity_logits[keep],
                sh=ply.sh[keep],
                binding=ply.binding[keep],
            )
            dropped = n_teeth
    else:
        try:
            model = add_gaussian_avatars_teeth(model)
        except L2TError as exc:  # not FLAME's topology: only an export without teeth splats imports
            if n_teeth:
                raise L2TError(
                    f"{folder}: {n_teeth} of {ply.num_splats} splats are bound to GaussianAvatars' teeth triangles "
                    f"(indices >= {f}), and {exc}; re-run with --drop-teeth to import without them"
                ) from None
    v = model.n_verts
    t = num_frames(raw)
    keys = (*NEUTRAL_KEYS, "dynamic_offset") if apply_dynamic else NEUTRAL_KEYS
    neutral = select_frame(raw, frame, v, keys=keys, where=str(folder / FLAME_PARAM))
    neutral.setdefault("static_offset", torch.zeros(v, 3))
    frame_index = frame % t
    notes = f"imported from GaussianAvatars export {folder.resolve()} (neutral = frame {frame_index} of {t})"
    if GA_TEETH in model.extensions:
        notes += f"; FLAME with GaussianAvatars' teeth ({n_teeth} splats on them)"
    if dropped:
        notes += f"; dropped {dropped} splats bound to the teeth extension"
    if apply_dynamic and "dynamic_offset" in neutral:
        notes += "; dynamic_offset applied"
    avatar = avatar_from_ply(
        ply,
        model,
        neutral,
        head_model_spec=str(flame_path.resolve()),
        name=name or Path(out_dir).name,
        notes=notes,
    )
    out = save_avatar(avatar, out_dir)
    avatar.head_model_spec = str((out / ("head_model" + "".join(flame_path.suffixes[-1:]))).resolve())
    return avatar
