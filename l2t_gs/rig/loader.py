"""Load FLAME-format head models: official FLAME pickles (without chumpy or scipy) and ``.npz`` files.

Official FLAME 2020/2023 pickles are Python 2 era pickles whose arrays are chumpy objects and whose
``J_regressor`` is a scipy sparse matrix. They are read by a restricted unpickler that maps chumpy
classes and scipy sparse classes to small stand-ins keeping the pickled state, then turns that state
into numpy arrays; any other non-numpy class is refused (and named in the error).

The ``.npz`` format uses FLAME's array names (``v_template``, ``shapedirs``, ``posedirs``,
``J_regressor``, ``weights``, ``kintree_table``, ``f``) plus project extensions: ``n_shape`` (number of
identity components at the front of ``shapedirs``; the rest are expression components),
``shape_names``, ``expr_names``, ``name`` and region masks ``mask_<region>`` (vertex indices).
"""

from __future__ import annotations

import builtins
import collections
import copyreg
import importlib
import io
import os
import pickle
import pickletools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2t_gs.assets import asset_path
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path
from l2t_gs.io.npz import MAX_ARRAY_BYTES, check_nbytes, read_npz
from l2t_gs.rig.model import HeadModel

__all__ = [
    "BUILTIN_HEAD",
    "head_model_from_arrays",
    "load_flame_masks",
    "load_head_model",
    "pickled_array",
    "resolve_head_spec",
    "save_head_model",
    "unpickle_restricted",
]

#: File name of the project's built-in head inside ``l2t_gs/assets/head/``.
BUILTIN_HEAD = "l2t_head.npz"

_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
# Accepted alternative names in .npz files (canonical name -> alternatives).
_ALIASES = {"kintree_table": ("parents",), "f": ("faces",), "weights": ("lbs_weights",)}
_FLAME_SHAPE_SPLIT = (400, 300)  # FLAME: 400 shapedirs columns = 300 identity + 100 expression

#: Limits on what a head-model file may declare, checked before anything of that size is allocated.
#: FLAME 2023: a 53 MB pickle, 5023 vertices, 400 shape components, a [5, 5023] sparse J_regressor.
MAX_PICKLE_BYTES = 1 << 30  # file size of a FLAME/masks pickle
MAX_PICKLE_OPS = 10_000_000  # pickle opcodes
MAX_MEMO_INDEX = 1 << 24  # the C unpickler sizes its memo table by the largest index it is given (also <= ops)
MAX_ITEMS = 1 << 26  # elements of a container built by a pickle from a range/size argument


# --------------------------------------------------------------------------- restricted unpickler
class _UnsupportedClass(Exception):
    """A pickle referenced a class the loader does not accept."""


class _Stub:
    """Stand-in for a pickled foreign object: keeps constructor args and the ``__setstate__`` state."""

    _qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        self = object.__new__(cls)
        self._args = args
        self._state = {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            merged: dict[str, Any] = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            state = merged
        if not isinstance(state, dict):
            raise ValueError(f"unexpected pickled state for {self._qualname}")
        self._state = {str(k): v for k, v in state.items()}

    def __repr__(self) -> str:
        return f"<{self._qualname} stand-in>"


class _ChumpyStub(_Stub):
    """A chumpy object (``chumpy.ch.Ch`` and derived operations)."""


class _SparseStub(_Stub):
    """A scipy.sparse matrix/array (csc, csr or coo)."""


_STUB_CACHE: dict[tuple[type, str], type] = {}


def _stub_class(base: type[_Stub], module: str, name: str) -> type:
    key = (base, f"{module}.{name}")
    if key not in _STUB_CACHE:
        _STUB_CACHE[key] = type(name, (base,), {"_qualname": f"{module}.{name}"})
    return _STUB_CACHE[key]


_SAFE_BUILTINS = frozenset(
    "set frozenset slice complex object list dict tuple bytearray bytes str int float bool range".split()
)
_PY2_NAMES = {"unicode": "str", "long": "int", "xrange": "range"}
_NUMPY_NAMES = frozenset({"_reconstruct", "scalar", "ndarray", "dtype", "_frombuffer"})


def _check_item_args(name: str, args: tuple[Any, ...]) -> None:
    """Refuse constructor arguments that would make a builtin allocate more than :data:`MAX_ITEMS`."""
    for a in args:
        if isinstance(a, range) and len(a) > MAX_ITEMS:
            raise _TooLarge(f"{name}() of a range of {len(a)} items")
        if name in ("bytes", "bytearray") and isinstance(a, int) and a > MAX_ITEMS:
            raise _TooLarge(f"{name}({a})")


class _TooLarge(Exception):
    """A pickle asked for an allocation above the loader's limits."""


def _guarded(name: str, factory: Any, check: Any) -> type:
    """A class standing for ``factory`` (callable by REDUCE, and by NEWOBJ through ``__new__``) that runs
    ``check(args, kwargs)`` first and returns ``factory(*args, **kwargs)`` (not an instance of itself)."""

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        check(args, kwargs)
        return factory(*args, **kwargs)

    return type(name, (), {"__new__": __new__, "__qualname__": name})


def _check_array(shape: Any, dtype: Any) -> None:
    """A pickled array's declared shape and dtype: numeric, at most :data:`MAX_ARRAY_BYTES`."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in dims):
        raise _TooLarge(f"array shape {dims!r}")
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise _UnsupportedClass("numpy object array")
    try:
        check_nbytes(dims, dt.itemsize, "pickled array", MAX_ARRAY_BYTES)
    except L2TError as exc:
        raise _TooLarge(str(exc)) from None


def _new_ndarray(shape: Any, dtype: Any = float, *args: Any, **kwargs: Any) -> np.ndarray:
    _check_array(shape, dtype)
    return np.ndarray(shape, dtype, *args, **kwargs)


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` (the first step of unpickling an array) for plain ndarrays, size-checked."""
    if subtype is not np.ndarray and subtype is not _NDARRAY:
        raise _UnsupportedClass(f"numpy array subclass {getattr(subtype, '__name__', subtype)!r}")
    _check_array(shape, dtype)
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _make_dtype(*args: Any, **kwargs: Any) -> np.dtype:
    dt = np.dtype(*args, **kwargs)
    if dt.hasobject:
        raise _UnsupportedClass("numpy object dtype")
    if dt.itemsize > MAX_ARRAY_BYTES:
        raise _TooLarge(f"dtype of {dt.itemsize} bytes per item")
    return dt


def _checked_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` for the classes this loader resolves, with their arguments checked."""
    if base is object:
        return copyreg._reconstructor(cls, base, state)
    real = getattr(base, "_l2t_real", base)
    if real not in _SAFE_BUILTIN_TYPES:
        raise _UnsupportedClass(f"copy_reg._reconstructor of {getattr(base, '__name__', base)!r}")
    _check_item_args(real.__name__, (state,))
    return real(state)


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 2 pickles of numpy arrays use it (text codecs only)."""
    import codecs

    if str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1", "utf-8", "utf8", "ascii"):
        raise _UnsupportedClass(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(obj, encoding, errors)


_SAFE_BUILTIN_TYPES = tuple(getattr(builtins, n) for n in sorted(_SAFE_BUILTINS))
_GUARDED_BUILTINS = {
    n: _guarded(n, getattr(builtins, n), lambda a, k, n=n: _check_item_args(n, a))
    for n in ("list", "tuple", "set", "frozenset", "dict", "bytes", "bytearray", "str")
}
for _n, _cls in _GUARDED_BUILTINS.items():
    _cls._l2t_real = getattr(builtins, _n)  # type: ignore[attr-defined]


def _prescan(data: bytes) -> None:
    """Walk the opcodes without building anything: malformed streams, too many opcodes, reads of memo
    entries never stored, and memo indices that would make the C unpickler allocate a huge memo table
    are refused."""
    n = 0
    stored: set[int] = set()
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        n += 1
        if n > MAX_PICKLE_OPS:
            raise _TooLarge(f"more than {MAX_PICKLE_OPS} pickle operations")
        if op.name == "MEMOIZE":
            stored.add(len(stored))
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT", "BINGET", "LONG_BINGET", "GET"):
            try:
                index = int(arg)
            except (TypeError, ValueError):
                raise ValueError(f"bad memo index {arg!r}") from None
            if "GET" in op.name:
                if index not in stored:
                    raise ValueError(f"memo entry {index} is read but never stored")
            elif not 0 <= index <= min(n, MAX_MEMO_INDEX):  # a pickler numbers memo entries as it goes
                raise _TooLarge(f"memo index {index}")
            else:
                stored.add(index)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only resolves builtins, numpy arrays/dtypes, chumpy and scipy.sparse classes."""

    def find_class(self, module: str, name: str) -> Any:
        if module in ("__builtin__", "builtins"):
            name = _PY2_NAMES.get(name, name)
            if name in _GUARDED_BUILTINS:
                return _GUARDED_BUILTINS[name]
            if name in _SAFE_BUILTINS:
                return getattr(builtins, name)
        elif module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _checked_reconstructor
        elif module == "collections" and name == "OrderedDict":
            return _ORDERED_DICT
        elif module == "_codecs" and name == "encode":
            return _latin1_encode
        elif module == "chumpy" or module.startswith("chumpy."):
            return _stub_class(_ChumpyStub, module, name)
        elif module == "scipy.sparse" or module.startswith("scipy.sparse."):
            return _stub_class(_SparseStub, module, name)
        elif module == "numpy.dtypes":  # numpy 2 pickles dtypes as their DType classes: only those
            obj = None if name.startswith("_") else getattr(_import_numpy_module(module), name, None)
            if isinstance(obj, type) and issubclass(obj, np.dtype) and name != "ObjectDType":
                return obj
        elif (module == "numpy" or module.startswith("numpy.")) and name in _NUMPY_NAMES:
            obj = getattr(_import_numpy_module(module), name)
            if name == "_reconstruct":
                return _reconstruct
            if name == "ndarray":
                return _NDARRAY
            if name == "dtype":
                return _DTYPE
            return obj
        raise _UnsupportedClass(f"{module}.{name}")


_ORDERED_DICT = _guarded("OrderedDict", collections.OrderedDict, lambda a, k: _check_item_args("OrderedDict", a))
_DTYPE = _guarded("dtype", _make_dtype, lambda a, k: None)
_NDARRAY = _guarded("ndarray", _new_ndarray, lambda a, k: None)


def _import_numpy_module(module: str) -> Any:
    # numpy 2 renamed numpy.core to numpy._core (the old name still works but warns); numpy 1 lacks
    # numpy._core, which pickles written by numpy 2 name.
    for old, new in (("numpy.core", "numpy._core"), ("numpy._core", "numpy.core")):
        if module == old or module.startswith(old + "."):
            try:
                return importlib.import_module(new + module[len(old) :])
            except ImportError:
                break
    return importlib.import_module(module)


def unpickle_restricted(path: Path, what: str) -> Any:
    """Unpickle ``path`` (latin1 for Python 2 pickles) with the restricted unpickler."""
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise L2TError(f"{what} {path} is {size} bytes, more than the limit of {MAX_PICKLE_BYTES}")
        data = path.read_bytes()
    except OSError as exc:
        raise L2TError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not data:
        raise L2TError(f"{what} {path} is empty")
    try:
        _prescan(data)
        return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _TooLarge as exc:
        raise L2TError(f"{what} {path} declares more than this loader accepts ({exc})") from None
    except _UnsupportedClass as exc:
        raise L2TError(
            f"{what} {path} contains an unsupported object of class {exc} "
            "(only numpy, chumpy and scipy.sparse arrays are understood)"
        ) from None
    except EOFError:
        raise L2TError(f"{what} {path} is truncated (unexpected end of file)") from None
    except Exception as exc:  # any other failure means the bytes are not a usable pickle
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if any(w in msg.lower() for w in ("truncated", "remain", "exhausted")):
            raise L2TError(f"{what} {path} is truncated ({msg})") from None
        raise L2TError(f"{what} {path} is not a readable pickle ({type(exc).__name__}: {msg})") from None


# --------------------------------------------------------------------------- stand-ins -> numpy
def pickled_array(obj: Any, key: str, who: str, depth: int = 0) -> np.ndarray:
    """Turn an unpickled value (ndarray, chumpy/sparse stand-in, list, scalar) into a numpy array."""
    if depth > 50:
        raise L2TError(f"{who}: {key!r} is a chumpy expression nested too deeply")
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, _ChumpyStub):
        return _chumpy_value(obj, key, who, depth)
    if isinstance(obj, _SparseStub):
        return _sparse_dense(obj, key, who)
    if isinstance(obj, (np.generic, int, float, bool, list, tuple)):
        try:
            return np.asarray(obj)
        except Exception:
            pass
    raise L2TError(f"{who}: {key!r} holds a {type(obj).__name__}, not an array")


def _chumpy_value(obj: _ChumpyStub, key: str, who: str, depth: int) -> np.ndarray:
    """Evaluate a chumpy object from its pickled state (plain ``Ch`` and a few simple operations)."""
    st = obj._state
    cls = obj._qualname.rsplit(".", 1)[-1]

    def get(name: str) -> np.ndarray:
        if name not in st:
            raise L2TError(f"{who}: {key!r} is a {obj._qualname} without its {name!r} term")
        return pickled_array(st[name], key, who, depth + 1)

    def binary(a: str, b: str, op: Any) -> np.ndarray:
        x, y = get(a), get(b)
        check_nbytes(np.broadcast_shapes(x.shape, y.shape), 8, f"{who}: {key!r}", MAX_ARRAY_BYTES)
        return op(x, y)

    def dot() -> np.ndarray:
        x, y = get("a"), get("b")
        if x.ndim == 0 or y.ndim == 0:
            out_shape = x.shape or y.shape
        elif y.ndim == 1:
            out_shape = x.shape[:-1]
        else:
            out_shape = x.shape[:-1] + y.shape[:-2] + y.shape[-1:]
        check_nbytes(out_shape, 8, f"{who}: {key!r}", MAX_ARRAY_BYTES)
        return np.dot(x, y)

    ops: dict[str, Any] = {
        "Ch": lambda: get("x"),
        "ChHandle": lambda: get("x"),
        "add": lambda: binary("a", "b", np.add),
        "subtract": lambda: binary("a", "b", np.subtract),
        "multiply": lambda: binary("a", "b", np.multiply),
        "divide": lambda: binary("x1", "x2", np.divide),
        "negative": lambda: -get("x"),
        "dot": dot,
        "transpose": lambda: np.transpose(get("a"), axes=st.get("axes")),
        "Reshape": lambda: get("a").reshape(st["newshape"]),
        "Select": lambda: _select(get("a"), np.asarray(st["idxs"]), st.get("preferred_shape")),
    }
    if cls not in ops:
        raise L2TError(
            f"{who}: {key!r} is a chumpy {obj._qualname} expression, which cannot be evaluated without chumpy"
        )
    try:
        return np.asarray(ops[cls](), dtype=np.float64)
    except L2TError:
        raise
    except Exception as exc:
        raise L2TError(f"{who}: cannot evaluate chumpy {obj._qualname} for {key!r} ({exc})") from None


def _select(a: np.ndarray, idxs: np.ndarray, shape: Any) -> np.ndarray:
    check_nbytes(idxs.shape, 8, "chumpy Select", MAX_ARRAY_BYTES)
    out = a.ravel()[idxs.ravel()]
    return out.reshape(shape) if shape is not None else out


def _sparse_dense(obj: _SparseStub, key: str, who: str) -> np.ndarray:
    """Dense array from a pickled scipy.sparse csc/csr/coo matrix state.

    The declared shape, the number of stored values and the index arrays are checked against each
    other and against :data:`MAX_ARRAY_BYTES` before the dense array is allocated.
    """
    st = obj._state
    cls = obj._qualname.rsplit(".", 1)[-1]
    fmt = cls[:3]
    where = f"{who}: {key!r} ({obj._qualname})"
    try:
        raw_shape = st.get("_shape", st.get("shape"))
        if not isinstance(raw_shape, tuple | list) or len(raw_shape) != 2:
            raise L2TError(f"{where}: shape must be two integers, got {raw_shape!r}")
        if not all(isinstance(n, int | np.integer) and not isinstance(n, bool) for n in raw_shape):
            raise L2TError(f"{where}: shape must be two integers, got {raw_shape!r}")
        shape = (int(raw_shape[0]), int(raw_shape[1]))
        data = pickled_array(st["data"], key, who).reshape(-1)
        if data.dtype.kind not in "biufc":
            raise L2TError(f"{where}: values must be numbers, got {data.dtype}")
        out_dtype = data.dtype if data.dtype.kind in "fc" else np.float64
        check_nbytes(shape, np.dtype(out_dtype).itemsize, where, MAX_ARRAY_BYTES)
        nnz = data.size
        if fmt in ("csc", "csr"):
            indices = pickled_array(st["indices"], key, who).reshape(-1)
            indptr = pickled_array(st["indptr"], key, who).reshape(-1)
            n_major = shape[1] if fmt == "csc" else shape[0]
            if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
                raise L2TError(f"{where}: indices and indptr must be integers")
            if indices.size != nnz or indptr.size != n_major + 1:
                raise L2TError(
                    f"{where}: {nnz} values, {indices.size} indices and {indptr.size} index pointers do not "
                    f"fit a {shape[0]}x{shape[1]} matrix"
                )
            indptr = indptr.astype(np.int64)
            if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
                raise L2TError(f"{where}: index pointers must rise from 0 to the number of values ({nnz})")
            major = np.repeat(np.arange(n_major), np.diff(indptr))
            indices = indices.astype(np.int64)
            rows, cols = (indices, major) if fmt == "csc" else (major, indices)
        elif fmt == "coo":
            coords = st.get("coords") or (st["row"], st["col"])
            if len(coords) != 2:
                raise L2TError(f"{where}: expected row and column indices")
            rows, cols = (pickled_array(c, key, who).reshape(-1) for c in coords)
            if rows.dtype.kind not in "iu" or cols.dtype.kind not in "iu" or rows.size != nnz or cols.size != nnz:
                raise L2TError(f"{where}: {nnz} values need {nnz} integer row and column indices")
            rows, cols = rows.astype(np.int64), cols.astype(np.int64)
        else:
            raise L2TError(f"{who}: {key!r} is a sparse {obj._qualname}, which is not supported")
        if nnz and (rows.min() < 0 or cols.min() < 0 or rows.max() >= shape[0] or cols.max() >= shape[1]):
            raise L2TError(f"{where}: an index lies outside the {shape[0]}x{shape[1]} matrix")
        out = np.zeros(shape, dtype=out_dtype)
        np.add.at(out, (rows, cols), data)  # duplicates sum, as in scipy
        return out
    except L2TError:
        raise
    except Exception as exc:
        raise L2TError(f"{who}: {key!r} is a damaged {obj._qualname} ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- arrays -> HeadModel
def _as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _str_list(arr: Any) -> list[str]:
    return [_as_str(s) for s in np.asarray(arr).reshape(-1).tolist()]


def _scalar_str(arr: Any) -> str:
    flat = np.asarray(arr).reshape(-1)
    return _as_str(flat[0].item()) if flat.size == 1 else " ".join(_str_list(flat))


def _vertex_indices(arr: np.ndarray, n_verts: int, what: str) -> np.ndarray:
    """Vertex index list from an index array or a boolean per-vertex mask."""
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise L2TError(f"{what}: expected vertex indices, got {a.dtype} values")
    if a.dtype == bool:
        if a.size != n_verts:
            raise L2TError(f"{what}: boolean mask has {a.size} entries for {n_verts} vertices")
        return np.flatnonzero(a.reshape(-1)).astype(np.int64)
    if a.size and a.dtype.kind not in "iu" and not np.array_equal(a, np.round(a)):
        raise L2TError(f"{what}: vertex indices must be integers")
    return a.reshape(-1).astype(np.int64)


def head_model_from_arrays(
    arrays: Mapping[str, Any],
    *,
    name: str | None = None,
    source: str = "",
    n_shape: int | None = None,
    n_expr: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> HeadModel:
    """Build and validate a :class:`HeadModel` from FLAME-named arrays (the ``.npz`` layout).

    Required: ``v_template`` [V,3], ``shapedirs`` [V,3,K], ``posedirs`` ([V,3,P], [P,V*3] or
    [V*3,P]), ``J_regressor`` [J,V], ``weights`` [V,J], ``kintree_table`` [2,J] (or ``parents`` [J]),
    ``f`` [F,3]. Optional: ``n_shape`` (identity components at the front of ``shapedirs``; defaults to
    300 when K == 400 as in FLAME), ``exprdirs`` [V,3,E] (then ``shapedirs`` is identity only),
    ``shape_names``, ``expr_names``, ``name``, ``mask_<region>``. ``n_shape``/``n_expr`` arguments
    keep only the leading components. Values may be numpy arrays or chumpy/sparse stand-ins.
    """
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating type, got {dtype}")
    who = f"FLAME model {source or name or 'arrays'}"

    def has(k: str) -> bool:
        return k in arrays or any(a in arrays for a in _ALIASES.get(k, ()))

    missing = [k for k in _REQUIRED if not has(k)]
    if missing:
        raise L2TError(f"{who} lacks: {', '.join(missing)}")

    def get(k: str) -> np.ndarray:
        for cand in (k, *_ALIASES.get(k, ())):
            if cand in arrays:
                return pickled_array(arrays[cand], cand, who)
        raise AssertionError(k)

    def float_arr(k: str, ndim: int) -> np.ndarray:
        a = get(k)
        if a.dtype.kind not in "fiu" or a.ndim != ndim:
            raise L2TError(f"{who}: {k} must be a {ndim}-D numeric array, got {a.dtype} {list(a.shape)}")
        return a.astype(np.float64, copy=False)

    v_template = float_arr("v_template", 2)
    n_verts = v_template.shape[0]
    shapedirs_all = float_arr("shapedirs", 3)
    k_all = shapedirs_all.shape[-1]

    # Identity / expression split.
    file_n_shape: int | None = None
    if "n_shape" in arrays:
        try:
            file_n_shape = int(np.asarray(arrays["n_shape"]).reshape(()))
        except Exception:
            raise L2TError(f"{who}: n_shape must be an integer scalar") from None
    if "exprdirs" in arrays:
        exprdirs = float_arr("exprdirs", 3)
        ident_total = k_all
        if file_n_shape is not None and file_n_shape != k_all:
            raise L2TError(
                f"{who}: n_shape = {file_n_shape} but shapedirs has {k_all} components and exprdirs is separate"
            )
    else:
        if file_n_shape is not None:
            ident_total = file_n_shape
        elif k_all == _FLAME_SHAPE_SPLIT[0]:
            ident_total = _FLAME_SHAPE_SPLIT[1]
        else:
            raise L2TError(
                f"{who}: shapedirs has {k_all} components but no n_shape says how many are "
                "identity components (the rest being expression)"
            )
        if not 0 <= ident_total <= k_all:
            raise L2TError(f"{who}: n_shape = {ident_total} is outside 0..{k_all} (shapedirs components)")
        exprdirs = shapedirs_all[..., ident_total:]
    shapedirs = shapedirs_all[..., :ident_total]

    shape_names = _str_list(arrays["shape_names"]) if "shape_names" in arrays else []
    expr_names = _str_list(arrays["expr_names"]) if "expr_names" in arrays else []
    for label, names, count in (
        ("shape_names", shape_names, shapedirs.shape[-1]),
        ("expr_names", expr_names, exprdirs.shape[-1]),
    ):
        if names and len(names) != count:
            raise L2TError(f"{who}: {len(names)} {label} for {count} components")

    for label, req, avail in (
        ("n_shape", n_shape, shapedirs.shape[-1]),
        ("n_expr", n_expr, exprdirs.shape[-1]),
    ):
        if req is not None and not 0 <= req <= avail:
            kind = "identity" if label == "n_shape" else "expression"
            raise L2TError(f"{who} has {avail} {kind} components; {label} = {req} was requested")
    if n_shape is not None:
        shapedirs, shape_names = shapedirs[..., :n_shape], shape_names[:n_shape]
    if n_expr is not None:
        exprdirs, expr_names = exprdirs[..., :n_expr], expr_names[:n_expr]

    # Kinematic tree.
    if "kintree_table" in arrays:
        kt = get("kintree_table")
        if kt.ndim != 2 or kt.shape[0] != 2:
            raise L2TError(f"{who}: kintree_table must be [2, J], got {list(kt.shape)}")
        parents = kt[0].astype(np.int64)
    else:
        parents = get("kintree_table").reshape(-1).astype(np.int64)
    if parents.size:
        parents[0] = -1  # FLAME stores 2**32 - 1 for the root
    n_joints = parents.size

    posedirs = get("posedirs")
    if posedirs.dtype.kind not in "fiu" or posedirs.ndim not in (2, 3):
        raise L2TError(f"{who}: posedirs must be [V, 3, P] or [P, V*3], got {posedirs.dtype} {list(posedirs.shape)}")
    posedirs = posedirs.astype(np.float64, copy=False)
    n_pose = 9 * (n_joints - 1)
    if posedirs.ndim == 3:
        if tuple(posedirs.shape[:2]) != (n_verts, 3):
            raise L2TError(f"{who}: posedirs must be [{n_verts}, 3, {n_pose}], got {list(posedirs.shape)}")
        posedirs = posedirs.reshape(n_verts * 3, -1).T
    elif posedirs.shape[0] == n_verts * 3 and posedirs.shape[1] != n_verts * 3:
        posedirs = posedirs.T

    faces = get("f")
    if faces.dtype.kind not in "iu" and not (faces.dtype.kind == "f" and np.array_equal(faces, np.round(faces))):
        raise L2TError(f"{who}: f (faces) must hold integer vertex indices, got {faces.dtype}")

    masks = {
        k[len("mask_") :]: torch.from_numpy(_vertex_indices(get(k), n_verts, f"{who}: {k}"))
        for k in arrays
        if k.startswith("mask_")
    }
    model_name = name
    if model_name is None:
        model_name = _scalar_str(arrays["name"]) if "name" in arrays else "head"

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(dtype)

    model = HeadModel(
        v_template=t(v_template),
        shapedirs=t(shapedirs),
        exprdirs=t(exprdirs),
        posedirs=t(posedirs),
        J_regressor=t(float_arr("J_regressor", 2)),
        lbs_weights=t(float_arr("weights", 2)),
        parents=torch.from_numpy(parents),
        faces=torch.from_numpy(np.ascontiguousarray(faces.astype(np.int64))),
        masks=masks,
        shape_names=shape_names,
        expr_names=expr_names,
        name=model_name,
        source=source,
    )
    return model.validate()


# --------------------------------------------------------------------------- files
def resolve_head_spec(spec: str | os.PathLike[str]) -> Path:
    """Path of a head model spec: ``"builtin"`` or a ``.pkl``/``.npz`` path (must exist)."""
    if isinstance(spec, str) and spec == "builtin":
        path = asset_path("head", BUILTIN_HEAD)
        if not path.is_file():
            raise L2TError(f"the built-in head model is missing ({path}); create it with `l2t-gs head build`")
        return path
    path = Path(spec).expanduser()
    if not path.exists():
        raise L2TError(f"head model file not found: {path} (expected a FLAME .pkl, an .npz, or 'builtin')")
    if not path.is_file():
        raise L2TError(f"head model path is not a file: {path}")
    return path


def _sniff(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(8)
    except OSError as exc:
        raise L2TError(f"cannot read head model {path}: {exc.strerror or exc}") from None


def _load_npz_arrays(path: Path, who: str) -> dict[str, np.ndarray]:
    return read_npz(path, who)


def load_head_model(
    spec: str | os.PathLike[str] = "builtin",
    *,
    n_shape: int | None = None,
    n_expr: int | None = None,
    dtype: torch.dtype = torch.float32,
    masks: str | os.PathLike[str] | None = None,
) -> HeadModel:
    """Load a head model: ``"builtin"``, an official FLAME ``.pkl`` (2020/2023), or an ``.npz``.

    ``n_shape``/``n_expr`` keep only the leading identity/expression components. ``masks`` optionally
    names a ``FLAME_masks.pkl`` whose regions are added to the model's masks. Bad files raise
    :class:`L2TError` with a one-line reason.
    """
    path = resolve_head_spec(spec)
    who = f"FLAME model {path}"
    head = _sniff(path)
    if not head:
        raise L2TError(f"{who} is empty")
    if head.startswith(b"\x93NUMPY"):
        raise L2TError(f"{who} is a single .npy array, not a head model (.pkl or .npz)")
    if head.startswith(b"PK"):
        arrays: Mapping[str, Any] = _load_npz_arrays(path, who)
        name = _scalar_str(arrays["name"]) if "name" in arrays else path.stem
    elif path.suffix.lower() == ".npz":
        raise L2TError(f"{who} is not a valid .npz archive")
    else:
        raw = unpickle_restricted(path, "FLAME model")
        if not isinstance(raw, dict):
            raise L2TError(f"{who} does not hold a FLAME model dictionary (found {type(raw).__name__})")
        keys = {str(k): v for k, v in raw.items()}
        known = set(_REQUIRED) | {a for al in _ALIASES.values() for a in al}
        known |= {"n_shape", "exprdirs", "shape_names", "expr_names"}
        arrays = {k: v for k, v in keys.items() if k in known or k.startswith("mask_")}
        name = str(keys["name"]) if isinstance(keys.get("name"), str) else path.stem
    model = head_model_from_arrays(arrays, name=name, source=str(path), n_shape=n_shape, n_expr=n_expr, dtype=dtype)
    if masks is not None:
        extra = load_flame_masks(masks)
        for region, idx in extra.items():
            if idx.size and (idx.min() < 0 or idx.max() >= model.n_verts):
                raise L2TError(
                    f"FLAME masks {masks}: region {region!r} indexes vertices outside the "
                    f"{model.n_verts}-vertex model {path}"
                )
            model.masks[region] = torch.from_numpy(idx)
    return model


def load_flame_masks(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read FLAME's ``FLAME_masks.pkl``: region name -> int64 vertex indices.

    Boolean per-vertex masks are converted to indices.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise L2TError(f"FLAME masks file not found: {p}")
    raw = unpickle_restricted(p, "FLAME masks file")
    if not isinstance(raw, dict):
        raise L2TError(f"FLAME masks file {p} does not hold a dictionary of regions (found {type(raw).__name__})")
    out: dict[str, np.ndarray] = {}
    for k, v in raw.items():
        arr = pickled_array(v, str(k), f"FLAME masks file {p}")
        if arr.dtype == bool:
            out[str(k)] = np.flatnonzero(arr.reshape(-1)).astype(np.int64)
        else:
            out[str(k)] = _vertex_indices(arr, arr.size, f"FLAME masks file {p}: region {k!r}")
    return out


def save_head_model(model: HeadModel, path: str | os.PathLike[str], *, compress: bool = False) -> Path:
    """Write ``model`` as an ``.npz`` that :func:`load_head_model` reads back (atomically).

    Layout: FLAME names, ``shapedirs`` = identity then expression components with ``n_shape``,
    ``posedirs`` in FLAME's [V, 3, P] layout, ``kintree_table`` [2, J], float64 arrays.
    """

    m = model.to(device="cpu", dtype=torch.float64)
    v = m.n_verts
    parents = m.parents.numpy().astype(np.int64)
    arrays: dict[str, np.ndarray] = {
        "v_template": m.v_template.numpy(),
        "shapedirs": torch.cat([m.shapedirs, m.exprdirs], dim=-1).numpy(),
        "n_shape": np.asarray(m.n_shape, dtype=np.int64),
        "posedirs": m.posedirs.numpy().T.reshape(v, 3, -1),
        "J_regressor": m.J_regressor.numpy(),
        "weights": m.lbs_weights.numpy(),
        "kintree_table": np.stack([parents, np.arange(len(parents), dtype=np.int64)]),
        "f": m.faces.numpy().astype(np.int64),
        "name": np.asarray(m.name),
    }
    if m.shape_names:
        arrays["shape_names"] = np.asarray(m.shape_names, dtype=str)
    if m.expr_names:
        arrays["expr_names"] = np.asarray(m.expr_names, dtype=str)
    for region, idx in m.masks.items():
        arrays[f"mask_{region}"] = idx.numpy().astype(np.int64)
    target = Path(path)
    with atomic_path(target) as tmp, tmp.open("wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)
    return target
