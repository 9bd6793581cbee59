"""Checkpoint files, in one place: every network of the project (Audio2Mesh, SyncNet3D, the lip reader)
stores a ``torch.save`` dict that starts with ``format``, ``format_version`` and ``l2t_gs_version`` and is
read back with ``torch.load(weights_only=True)`` (no arbitrary pickles).

A :class:`CheckpointFormat` names one kind of file; :meth:`CheckpointFormat.read` resolves a run folder
to its checkpoint, loads it safely and checks its kind, version and required keys, turning a missing,
empty, corrupt, foreign or too new file into a one-line :class:`~l2t_gs.errors.L2TError`;
:meth:`CheckpointFormat.header` and :func:`save_payload` write one (atomically).
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from l2t_gs import __version__
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path

__all__ = ["CheckpointFormat", "cpu_state_dict", "load_payload", "save_payload"]

#: What torch's safe loader raises on files that are not (intact) checkpoints.
_LOAD_ERRORS = (
    RuntimeError,
    EOFError,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    ValueError,
    OSError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    struct.error,
)


@dataclass(frozen=True)
class CheckpointFormat:
    """One kind of checkpoint file.

    ``format``: the value of the file's ``format`` key; ``version``: the newest ``format_version`` this code
    reads (and writes); ``what``: how messages name such a file (``"SyncNet3D checkpoint"``); ``kind``: the
    phrase after "is not" for a foreign file (``"a SyncNet3D checkpoint"``); ``required``: keys a file
    must hold; ``run_files``: names looked for, in order, in a run folder; ``hint``: appended to the
    not-found message.
    """

    format: str
    version: int
    what: str
    kind: str
    required: tuple[str, ...] = ("model",)
    run_files: tuple[str, ...] = ("best.pt", "last.pt", "model.pt")
    hint: str = ""

    def header(self) -> dict[str, Any]:
        """The first keys of a payload: ``format``, ``format_version``, ``l2t_gs_version``."""

        return {"format": self.format, "format_version": self.version, "l2t_gs_version": __version__}

    def resolve(self, path: str | os.PathLike) -> Path:
        """A checkpoint file, or the first of :attr:`run_files` in a run folder."""
        p = Path(path).expanduser()
        if p.is_dir():
            for name in self.run_files:
                if (p / name).is_file():
                    return p / name
            raise L2TError(f"no {self.what} in {p} (looked for {', '.join(self.run_files)})")
        if not p.is_file():
            raise L2TError(f"{self.what} not found: {p}" + (f" ({self.hint})" if self.hint else ""))
        return p

    def read(self, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Load and check a checkpoint (file or run folder); every failure is a one-line :class:`L2TError`."""
        p = self.resolve(path)
        data = load_payload(p, self.what, map_location)
        if not isinstance(data, dict) or data.get("format") != self.format:
            found = data.get("format") if isinstance(data, dict) else None
            raise L2TError(f"{p} is not {self.kind}" + (f" (it is {found!r})" if found else ""))
        version = data.get("format_version")
        if not isinstance(version, int) or version > self.version:
            raise L2TError(
                f"{self.what} {p} has format version {version!r}; this l2t-gs reads up to {self.version} "
                "(upgrade l2t-gs)"
            )
        for key in self.required:
            if key not in data:
                raise L2TError(f"{self.what} {p} is incomplete: missing {key!r}")
        return data


def load_payload(path: Path, what: str = "checkpoint", map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; an empty, truncated or foreign file is a one-line error."""
    try:
        if path.stat().st_size == 0:
            raise L2TError(f"{what} {path} is empty")
        return torch.load(path, map_location=map_location, weights_only=True)
    except L2TError:
        raise
    except _LOAD_ERRORS as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise L2TError(f"{what} {path} is corrupt, truncated or not an l2t-gs checkpoint ({first})") from None


def save_payload(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save(payload)`` to ``path`` atomically (the file appears complete or not at all)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict, detached and on the CPU (what a payload's ``model`` holds)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}
