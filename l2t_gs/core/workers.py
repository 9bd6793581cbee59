"""CPU threads for the compiled (numba, ``nogil``) kernels: how many one call may use, and running a
kernel's chunks on them.

The kernels are compiled without numba's own parallel layer: a kernel takes a chunk (``worker``,
``n_workers``) and :func:`run_chunks` runs the chunks on a small shared pool of Python threads,
which numba's ``nogil`` kernels leave free to run at once. So two callers (a render loop's frame
workers, the viewer's server thread) can run kernels at the same time, each on as many threads as
it was given: one frame on every core, or one frame per core (:func:`cpu_threads` as a context).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from l2t_gs.core.probe import usable_cpus

_local = threading.local()
_default: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_pid = 0
_pool_lock = threading.Lock()


def set_cpu_threads(n: int | None) -> None:
    """Process-wide default thread count of one kernel call (``None``: every available core)."""
    global _default
    if n is not None and n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    _default = n


def get_cpu_threads() -> int:
    """Threads one kernel call may use in this thread: :func:`cpu_threads`' value, else the default."""
    n = getattr(_local, "n", None)
    if n is None:
        n = _default if _default is not None else usable_cpus()
    return n


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Within the block, kernel calls made by this thread use at most ``n`` threads."""
    if n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    before = getattr(_local, "n", None)
    _local.n = n
    try:
        yield
    finally:
        _local.n = before


def _shared_pool() -> ThreadPoolExecutor:
    """The kernel pool of this process (a forked child gets its own: the parent's threads are not there)."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max(usable_cpus() - 1, 1), thread_name_prefix="l2t-kernel")
            _pool_pid = os.getpid()
        return _pool


def run_chunks(fn: Callable[[int, int], None], n_items: int, min_per_worker: int = 1) -> None:
    """Call ``fn(worker, n_workers)`` for every worker: the caller runs worker 0, the pool the rest.

    ``n_workers`` is :func:`get_cpu_threads`, fewer where ``n_items`` would give a worker under
    ``min_per_worker`` items; with one worker nothing leaves the calling thread.
    """
    n = max(min(get_cpu_threads(), n_items // max(min_per_worker, 1)), 1)
    if n == 1:
        fn(0, 1)
        return
    futures = [_shared_pool().submit(fn, w, n) for w in range(1, n)]
    try:
        fn(0, n)
    finally:
        for f in futures:
            f.result()
