"""What every numba-compiled module of the package shares: the kernel lock and the cached ``njit``.

* :data:`NUMBA_LOCK`: numba's default "workqueue" threading layer must not be entered from two
  threads at once (it aborts the process); every module that launches ``parallel=True`` kernels holds
  it while it does, so that threads (the viewer's, a render loop's) take turns.
* :func:`cached_njit`: ``numba.njit(cache=True)``, so that compiled kernels are kept on disk and only
  the first process ever compiles. numba stores them next to the module, else under
  ``NUMBA_CACHE_DIR`` or the user cache directory; where none of those is writable (a read-only
  install with a read-only home) it refuses to cache at all, and this falls back to a private
  directory under the system temp dir, then to compiling in memory.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Held while a parallel numba kernel runs (re-entrant: a kernel wrapper may call another).
NUMBA_LOCK = threading.RLock()


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
