"""Temporary files and folders that a later run can recognise and remove.

Every temporary l2t-gs creates (atomic-write files beside an output, the mesh-export and per-frame
PLY folders, the viewer's working folder, scratch folders) is named::

    .l2t-tmp-<pid>-<host><random>-<label>

``<pid>`` is the creating process, ``<host>`` 4 characters identifying the machine and PID namespace
(a folder shared with another machine or container holds PIDs that mean nothing here: those entries
are never swept), ``<random>`` 10 lowercase letters/digits, ``<label>`` says what it is (an atomic
write keeps the target's name, hence its suffix, which some writers read). Normal exits,
errors and the signals the CLI handles (SIGINT, SIGTERM, SIGHUP) remove their temporaries themselves;
after a SIGKILL or a power cut they stay, and :func:`sweep_stale` (run by :func:`make_temp_file` and
:func:`make_temp_dir` once per directory and process) deletes those of the directory whose process is
gone. Only names of exactly this shape are touched, so user files are never deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import string
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "HOST",
    "TAG",
    "is_temp_name",
    "make_temp_dir",
    "make_temp_file",
    "sweep_stale",
    "temp_dir",
    "temp_name",
    "temp_owner",
]

#: The fixed tag every temporary name starts with.
TAG = ".l2t-tmp-"
_ALPHABET = string.ascii_lowercase + string.digits
_RANDOM_LEN = 10
_MAX_LABEL = 180
_HOST_LEN = 4
_NAME = re.compile(
    rf"^{re.escape(TAG)}(?P<pid>[1-9][0-9]{{0,9}})-(?P<host>[a-z0-9]{{{_HOST_LEN}}})[a-z0-9]{{{_RANDOM_LEN}}}(?:-.*)?$",
    re.S,
)
_swept: set[str] = set()
_lock = threading.Lock()


def _host_tag() -> str:
    """4 characters naming this machine and PID namespace (hostname + the namespace's inode)."""
    try:
        ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        ns = ""
    digest = hashlib.sha256(f"{os.uname().nodename}/{ns}".encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:_HOST_LEN])


HOST = _host_tag()


def temp_name(label: str = "", *, pid: int | None = None) -> str:
    """A fresh temporary name: ``.l2t-tmp-<pid>-<host><random>[-<label>]`` (``pid``: this process's
    unless given, e.g. by a test that fakes a dead process)."""
    rand = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
    label = label[-_MAX_LABEL:]  # file names are at most 255 bytes; the end (the suffix) is what counts
    return f"{TAG}{os.getpid() if pid is None else pid}-{HOST}{rand}" + (f"-{label}" if label else "")


def temp_owner(name: str) -> int | None:
    """The PID embedded in a temporary name, or ``None`` if ``name`` is not one of ours."""
    m = _NAME.match(name)
    return int(m.group("pid")) if m else None


def is_temp_name(name: str) -> bool:
    """Whether ``name`` has the shape of an l2t-gs temporary name."""
    return temp_owner(name) is not None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, OSError):  # no such PID can exist
        return False
    return True


def sweep_stale(directory: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
    """Delete the temporaries in ``directory`` left by processes that no longer run; returns them.

    Runs once per directory and process unless ``force``. Never raises: a directory that cannot be
    listed, or an entry that cannot be removed, is skipped.
    """
    folder = Path(directory) if str(directory) else Path(".")
    key = os.path.abspath(folder)
    with _lock:
        if key in _swept and not force:
            return []
        _swept.add(key)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _NAME.match(entry.name)
        if m is None or m.group("host") != HOST or _pid_alive(int(m.group("pid"))):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def _dir_of(parent: str | os.PathLike[str] | None) -> Path:
    if parent is None:
        return Path(tempfile.gettempdir())
    return Path(parent) if str(parent) else Path(".")


def make_temp_file(parent: str | os.PathLike[str] | None = None, label: str = "") -> Path:
    """Create an empty temporary file (mode 0600) in ``parent`` (default: the system temp folder)."""
    folder = _dir_of(parent)
    sweep_stale(folder)
    for _ in range(100):
        path = folder / temp_name(label)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(f"no free temporary name in {folder}")  # pragma: no cover - 36**10 names


def make_temp_dir(parent: str | os.PathLike[str] | None = None, label: str = "", mode: int = 0o700) -> Path:
    """Create a temporary folder in ``parent`` (default: the system temp folder).

    ``mode`` 0o700 (private) suits scratch space; folders that become user outputs pass 0o777 (the
    umask then applies, as for any folder the user creates).
    """
    folder = _dir_of(parent)
    sweep_stale(folder)
    for _ in range(100):
        path = folder / temp_name(label)
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary name in {folder}")  # pragma: no cover - 36**10 names


@contextlib.contextmanager
def temp_dir(parent: str | os.PathLike[str] | None = None, label: str = "") -> Iterator[Path]:
    """A private temporary folder removed (with its contents) when the block ends, however it ends."""
    path = make_temp_dir(parent, label)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
