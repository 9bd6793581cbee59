"""Helpers of the reliability and fuzz tests: dead PIDs, leftover temporaries, small inputs, guards."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from l2t_gs.audio.io import save_wav
from l2t_gs.errors import L2TError
from l2t_gs.io.tempfiles import TAG

REPO = Path(__file__).resolve().parents[1]
HELLO = REPO / "l2t_gs" / "assets" / "samples" / "hello.wav"
DEFAULT_AVATAR = REPO / "avatars" / "default"


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return proc.pid
    raise RuntimeError("PID reused at once")  # pragma: no cover


def leftovers(folder: Path) -> list[str]:
    """Names of l2t-gs temporaries under ``folder`` (recursively) and in the system temp folder of this
    process."""
    found = [str(p.relative_to(folder)) for p in folder.rglob(f"{TAG}*")]
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    found += [p.name for p in tmp.glob(f"{TAG}{os.getpid()}-*")]
    return found


def speech_wav(path: Path, seconds: float = 0.6, sr: int = 16000) -> Path:
    """A short voiced-sounding test signal (harmonics with a syllable envelope)."""
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 - 0.5 * np.cos(2 * np.pi * 4 * t)
    sig = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * env * 0.2
    save_wav(path, sig.astype(np.float32), sr)
    return path


def run_guarded(fn: Callable[[], Any], max_bytes: int) -> tuple[str, int]:
    """Call ``fn``; it must succeed or raise :class:`L2TError` (anything else propagates), must leave
    every builtin as it was, and must not allocate more than ``max_bytes`` (traced peak).

    Returns ("ok" or the error line, the traced peak).
    """
    before = dict(builtins.__dict__)
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        outcome = "ok"
    except L2TError as exc:
        outcome = str(exc)
        assert "\n" not in outcome, f"error message is not one line: {outcome!r}"
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    after = builtins.__dict__
    changed = sorted(k for k in set(before) | set(after) if before.get(k, None) is not after.get(k, None))
    changed = [k for k in changed if k not in ("_", "__builtins__")]
    assert not changed, f"builtins changed: {changed}"
    assert peak <= max_bytes, f"allocated {peak} bytes, more than the bound {max_bytes}"
    return outcome, peak
