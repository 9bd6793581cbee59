"""Atomic file writes: outputs appear complete or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from l2t_gs.errors import L2TError
from l2t_gs.io.tempfiles import make_temp_dir, make_temp_file


def output_parent(path: str | os.PathLike, label: str = "output directory", writable: bool = True) -> Path:
    """The folder ``path`` will be written in; a one-line :class:`L2TError` (``"<label> does not exist: ..."``,
    ``"<label> is not writable: ..."``) when it is missing or, with ``writable``, not writable."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise L2TError(f"{label} does not exist: {parent}")
    if writable and not os.access(parent, os.W_OK):
        raise L2TError(f"{label} is not writable: {parent}")
    return parent


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file (:mod:`l2t_gs.io.tempfiles` names: removed by a later run if this process is
    killed) ends in the target's name, so it keeps its suffix (some writers pick a format from it);
    ``suffix`` adds another one. A full disk (``ENOSPC``/``EDQUOT``) becomes a one-line :class:`L2TError`.
    """
    target = Path(path)
    parent = output_parent(target)
    label = target.name + (suffix if suffix and not target.name.endswith(suffix) else "")
    tmp_path = make_temp_file(parent, label)
    try:
        yield tmp_path
        if tmp_path.is_file():  # created 0600; give the file the usual umask permissions
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if disk_full(exc):
            raise L2TError(f"cannot write {target}: no space left on the device (nothing was written)") from None
        raise


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or quota is full."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Rename the finished folder ``src`` onto ``dst``. An existing ``dst`` is first moved aside (to a
    recognisable temporary name in the same folder), put back if the rename fails, and removed after."""
    src, dst = Path(src), Path(dst)
    backup: Path | None = None
    if dst.is_dir():
        backup = make_temp_dir(dst.parent, f"{dst.name}.old")
        backup.rmdir()
        os.replace(dst, backup)
    try:
        os.replace(src, dst)
    except BaseException:
        if backup is not None and backup.exists() and not dst.exists():
            os.replace(backup, dst)
            backup = None
        raise
    finally:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
