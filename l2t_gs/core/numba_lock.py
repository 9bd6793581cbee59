"""One process-wide lock around numba's parallel kernels.

numba's default "workqueue" threading layer must not be entered from two threads at once (it
aborts the process); every module that launches ``parallel=True`` kernels holds :data:`NUMBA_LOCK`
while it does, so that threads (the viewer's, a render loop's) take turns.
"""

from __future__ import annotations

import threading

#: Held while a parallel numba kernel runs (re-entrant: a kernel wrapper may call another).
NUMBA_LOCK = threading.RLock()
