"""Audio uploads: checked by name, size and decodability before anything runs on them.

Uploaded bytes are decoded in a child process (``python -m l2t_gs.viewer.uploads``) with a memory
cap and a time limit, so a corrupt, hostile or decompression-bomb file costs that child, never the
server. File names from the client are only used for their extension and for display.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l2t_gs.audio.io import audio_duration, load_audio
from l2t_gs.errors import L2TError

#: Accepted audio extensions (lower case).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".m4a")
#: Largest accepted upload.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
#: Most upload bytes in flight (declared sizes of unfinished uploads, or what arrived if more) from one
#: browser connection; a new upload beyond it is dropped as it starts, with one message to that browser.
MAX_CLIENT_INFLIGHT_BYTES = 64 * 1024 * 1024
#: Most upload bytes in flight from all connections together (bounds the server's memory for uploads).
MAX_TOTAL_INFLIGHT_BYTES = 256 * 1024 * 1024
#: Longest accepted audio (the motion is kept in memory; use ``l2t-gs render`` for longer files).
MAX_AUDIO_SECONDS = 300.0
#: Shortest accepted audio.
MIN_AUDIO_SECONDS = 0.1
#: Limits of the decoding child process.
DECODE_TIMEOUT_S = 60.0
DECODE_MEMORY_BYTES = 3 * 1024**3
SAMPLE_RATE = 16000


class UploadRejected(L2TError):
    """An upload that is not accepted; the message is shown in the GUI."""


@dataclass
class AudioClip:
    """Decoded audio ready for Audio2Mesh: ``samples`` [n] float32 mono at 16 kHz, stored at ``path``."""

    name: str
    path: Path
    samples: np.ndarray

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / SAMPLE_RATE


def display_name(name: str, limit: int = 60) -> str:
    """A client-supplied file name made safe to show in Markdown (word characters, dots, dashes, spaces)."""
    base = re.split(r"[\\/]", name or "")[-1]
    safe = re.sub(r"[^\w.\- ]", "_", base).strip() or "upload"
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def _mb(n: int) -> str:
    return f"{n / 1024**2:.1f} MB"


def check_upload_header(name: str, size: int, max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """Check an upload's name and declared size; returns its lower-case extension or raises :class:`UploadRejected`."""
    ext = Path(display_name(name)).suffix.lower()
    if ext not in AUDIO_EXTENSIONS:
        raise UploadRejected(
            f"'{display_name(name)}' is not an accepted audio file (use {', '.join(AUDIO_EXTENSIONS)})"
        )
    if size <= 0:
        raise UploadRejected(f"'{display_name(name)}' is empty")
    if size > max_bytes:
        raise UploadRejected(f"'{display_name(name)}' is {_mb(size)}; the limit is {_mb(max_bytes)}")
    return ext


def check_duration(seconds: float, what: str) -> None:
    """Reject audio outside ``MIN_AUDIO_SECONDS..MAX_AUDIO_SECONDS``."""
    if seconds < MIN_AUDIO_SECONDS:
        raise UploadRejected(f"{what} is too short ({seconds:.2f} s)")
    if seconds > MAX_AUDIO_SECONDS:
        raise UploadRejected(
            f"{what} is {seconds:.0f} s long; the viewer takes up to {MAX_AUDIO_SECONDS:.0f} s "
            "(use `l2t-gs render` for longer audio)"
        )


def _limit_memory(limit: int) -> None:
    """Cap this process's address space (POSIX; a no-op elsewhere)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def decode_isolated(
    path: Path,
    what: str,
    *,
    timeout: float = DECODE_TIMEOUT_S,
    memory_bytes: int = DECODE_MEMORY_BYTES,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> np.ndarray:
    """Decode ``path`` to 16 kHz mono in a child process with a memory cap and a time limit.

    ``on_start`` receives the child (so that a shutting-down server can kill it). Raises
    :class:`UploadRejected` with a one-line reason for anything that is not acceptable audio.
    """
    path = Path(path).resolve()
    out = path.with_suffix(".npy")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "l2t_gs.viewer.uploads", str(path), str(out), str(int(memory_bytes))]
    proc = subprocess.Popen(
        cmd,
        cwd=tempfile.gettempdir(),  # `-m` puts the cwd first on sys.path: never let a source tree shadow the install
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    if on_start is not None:
        on_start(proc)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise UploadRejected(f"{what}: decoding took longer than {timeout:.0f} s") from None
    try:
        if proc.returncode != 0:
            lines = [ln.strip() for ln in (err or "").splitlines() if ln.strip()]
            reason = lines[-1] if lines and proc.returncode == 2 else "not decodable audio"
            if proc.returncode < 0 or "MemoryError" in (err or ""):
                reason = "not decodable audio within the viewer's memory limit"
            raise UploadRejected(f"{what}: {reason}")
        samples = np.load(out, allow_pickle=False)
    finally:
        with contextlib.suppress(FileNotFoundError):
            out.unlink()
    check_duration(samples.shape[0] / SAMPLE_RATE, what)
    return samples


def accept_upload(
    name: str,
    content: bytes,
    workdir: Path,
    *,
    max_bytes: int = MAX_UPLOAD_BYTES,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> AudioClip:
    """Validate an uploaded file (extension, size, decodability, duration) and keep it in ``workdir``.

    Raises :class:`UploadRejected`; nothing is left in ``workdir`` for a rejected upload.
    """
    ext = check_upload_header(name, len(content), max_bytes)
    shown = display_name(name)
    fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=ext, dir=workdir)
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        samples = decode_isolated(path, f"'{shown}'", on_start=on_start)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise
    return AudioClip(shown, path, samples)


def load_local_audio(path: str | os.PathLike) -> AudioClip:
    """A local audio file given on the command line (trusted: decoded in-process), checked for duration."""
    p = Path(path)
    samples = load_audio(p, sr=SAMPLE_RATE)
    check_duration(samples.shape[0] / SAMPLE_RATE, f"audio file {p}")
    return AudioClip(p.name, p.resolve(), samples)


def _child_main(argv: list[str]) -> int:
    """Child process: decode ``argv[0]`` to 16 kHz mono float32 and save it as ``argv[1]`` (.npy).

    ``argv[2]`` caps the address space in bytes. Exit 0 on success, 2 with a one-line reason on stderr
    for a user error, anything else otherwise.
    """
    src, dst, memory = argv
    _limit_memory(int(memory))
    try:
        try:
            seconds = audio_duration(src)
        except L2TError:
            seconds = 0.0
        if seconds > MAX_AUDIO_SECONDS * 1.5:  # a header that says far too long: don't decode it at all
            raise UploadRejected(f"audio is {seconds:.0f} s long; the viewer takes up to {MAX_AUDIO_SECONDS:.0f} s")
        samples = load_audio(src, sr=SAMPLE_RATE)
    except L2TError as exc:
        msg = (str(exc).splitlines() or ["not decodable audio"])[0]
        if msg.startswith("cannot decode audio"):  # drop the decoder's detail and the temporary path
            msg = "not a supported audio file, or corrupt"
        print(msg.replace(src, "the file"), file=sys.stderr)
        return 2
    np.save(dst, np.ascontiguousarray(samples, dtype=np.float32), allow_pickle=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
