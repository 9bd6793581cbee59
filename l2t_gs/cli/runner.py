"""Running one CLI command: one-line errors, and SIGTERM/SIGHUP unwound like Ctrl-C.

Every command (``l2t-gs ...`` and the standalone ``python -m l2t_gs.cli.train``) runs through
:func:`run_command`: user errors and a full disk print one line and exit 1; Ctrl-C exits 130, SIGTERM 143
and SIGHUP 129, after the same cleanup (``except BaseException`` / ``finally`` blocks remove temporary
files and partial outputs).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from l2t_gs.cli.prog import PROG
from l2t_gs.errors import L2TError

__all__ = ["HANDLED_SIGNALS", "Terminated", "run_command", "terminate_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C (every cleanup that handles SIGINT runs)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: Signals handled like SIGINT; the exit status is 128 + the signal number (SIGTERM 143, SIGHUP 129).
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    Only the first such signal raises; later ones are ignored while the cleanup runs. Outside the main
    thread (where Python cannot install handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_command(func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> int:
    """Run one command: one line on stderr and exit 1 for user errors and a full disk; 130 after Ctrl-C,
    143 after SIGTERM, 129 after SIGHUP (temporary files removed in each case)."""
    from l2t_gs.io.atomic import disk_full

    guard = getattr(args, "guard", None)  # a command's context manager around its run (e.g. train's)
    try:
        with terminate_as_interrupt(), guard(args) if guard is not None else contextlib.nullcontext():
            return int(func(args) or 0)
    except L2TError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except Terminated as exc:
        print(f"{PROG}: terminated ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if not disk_full(exc):
            raise
        print(f"{PROG}: error: no space left on the device ({exc.filename or 'while writing'})", file=sys.stderr)
        return 1
