"""Reading ``.npz`` archives of untrusted origin with sizes checked before anything is allocated.

``numpy.load`` allocates each array at the size its ``.npy`` header declares before it reads the data,
so a 300-byte file can ask for terabytes. :func:`read_npz` instead checks every member's declared
(uncompressed) size and array header against stated limits, reads the member's bytes (as many as
really exist) and only then wraps them as an array. Object arrays (pickles) are refused.
"""

from __future__ import annotations

import io
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from l2t_gs.errors import L2TError

__all__ = ["MAX_ARRAY_BYTES", "MAX_ARRAYS", "MAX_TOTAL_BYTES", "check_nbytes", "read_npz"]

#: Largest array accepted in an archive (FLAME 2023's largest, ``shapedirs``, is 48 MB).
MAX_ARRAY_BYTES = 1 << 31
#: Largest total of all arrays of one archive.
MAX_TOTAL_BYTES = 1 << 32
#: Most arrays in one archive.
MAX_ARRAYS = 4096
#: Deflate cannot expand data by more than about 1032:1; a larger declared ratio is a forged size.
_MAX_DEFLATE_RATIO = 1100


def check_nbytes(shape: tuple[int, ...], itemsize: int, what: str, limit: int = MAX_ARRAY_BYTES) -> int:
    """Bytes of an array of ``shape`` and ``itemsize``; a negative dimension or more than ``limit``
    bytes raises :class:`L2TError` naming ``what`` (computed in Python integers: no overflow)."""
    if any(int(n) < 0 for n in shape):
        raise L2TError(f"{what}: negative dimension in shape {list(shape)}")
    nbytes = math.prod(int(n) for n in shape) * int(itemsize)
    if nbytes > limit:
        raise L2TError(f"{what}: shape {list(shape)} needs {nbytes} bytes, more than the limit of {limit}")
    return nbytes


def _parse_npy(data: bytes, what: str, limit: int) -> np.ndarray:
    fh = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=10000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=10000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise L2TError(f"{what}: not a valid .npy array ({first})") from None
    if dtype.hasobject:
        raise L2TError(f"{what}: holds Python objects (a pickle), which are not read")
    nbytes = check_nbytes(shape, dtype.itemsize, what, limit)
    start = fh.tell()
    if len(data) - start != nbytes:
        raise L2TError(
            f"{what}: truncated or damaged: shape {list(shape)} of {dtype} needs {nbytes} bytes, "
            f"found {len(data) - start}"
        )
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=start)
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")  # writable


def read_npz(
    path: str | os.PathLike[str],
    who: str,
    *,
    max_array_bytes: int = MAX_ARRAY_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_arrays: int = MAX_ARRAYS,
) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (keys without ``.npy``).

    Every failure is a one-line :class:`L2TError` that starts with ``who``: not a zip, a member that
    is not a ``.npy`` array, an object (pickled) array, a declared size over the limits (checked from
    the zip directory and the ``.npy`` header before the data are read), truncated data, a bad CRC.
    """
    p = Path(path)
    try:
        zf = zipfile.ZipFile(p)
    except FileNotFoundError:
        raise L2TError(f"{who}: file not found") from None
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise L2TError(f"{who} is truncated or not a valid .npz archive") from None
    except OSError as exc:
        raise L2TError(f"{who}: cannot read ({exc.strerror or exc})") from None
    out: dict[str, np.ndarray] = {}
    archive_bytes = p.stat().st_size
    with zf:
        infos = zf.infolist()
        if len(infos) > max_arrays:
            raise L2TError(f"{who} holds {len(infos)} members, more than the limit of {max_arrays}")
        total = 0
        for info in infos:
            if info.is_dir():
                continue
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            what = f"{who}: array {key!r}"
            if not info.filename.endswith(".npy"):
                raise L2TError(f"{who}: member {info.filename!r} is not a .npy array")
            if info.file_size > max_array_bytes + 65536:
                raise L2TError(f"{what} declares {info.file_size} bytes, more than the limit of {max_array_bytes}")
            if info.compress_size > archive_bytes:
                raise L2TError(
                    f"{what} is truncated ({info.compress_size} bytes declared, the file has {archive_bytes})"
                )
            if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_DEFLATE_RATIO * max(
                info.compress_size, 1
            ):
                raise L2TError(f"{what} declares an impossible size ({info.file_size} bytes from {info.compress_size})")
            total += info.file_size
            if total > max_total_bytes + 65536 * len(infos):
                raise L2TError(f"{who} declares more than {max_total_bytes} bytes of arrays in all")
            try:
                data = zf.read(info)
            except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, OSError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
                raise L2TError(f"{what} is truncated or damaged ({first})") from None
            except Exception as exc:  # zlib.error and other decoder failures
                raise L2TError(f"{what} is damaged ({type(exc).__name__})") from None
            out[key] = _parse_npy(data, what, max_array_bytes)
    return out
