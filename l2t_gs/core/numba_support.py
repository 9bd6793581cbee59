"""What every numba-compiled module of the package shares: the cached ``njit``.

Kernels are compiled without numba's parallel layer (its default "workqueue" layer aborts the
process when two threads enter it at once); :mod:`l2t_gs.core.workers` runs their chunks instead.

* :func:`cached_njit`: ``numba.njit(cache=True)``, so that compiled kernels are kept on disk and only
  the first process ever compiles. numba stores them next to the module, else under
  ``NUMBA_CACHE_DIR`` or the user cache directory; where none of those is writable (a read-only
  install with a read-only home) it refuses to cache at all, and this falls back to a private
  directory under the system temp dir, then to compiling in memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fallback_cache_dir() -> Path:
    """The private cache directory used when numba finds no writable place of its own."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"l2t-gs-numba-{uid}"


def _njit(**options: Any) -> Callable[[Callable], Callable]:
    import numba

    return numba.njit(**options)


def cached_njit(**options: Any) -> Callable[[Callable], Callable]:
    """Decorator: ``numba.njit(cache=True, **options)``, still working where numba cannot cache."""
    import numba

    def wrap(fn: Callable) -> Callable:
        try:
            return _njit(cache=True, **options)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if "cannot cache" not in str(exc):
                raise
        try:
            path = fallback_cache_dir()
            path.mkdir(mode=0o700, exist_ok=True)
            numba.config.CACHE_DIR = str(path)
            return _njit(cache=True, **options)(fn)
        except (OSError, RuntimeError):
            return _njit(cache=False, **options)(fn)

    return wrap
