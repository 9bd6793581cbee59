"""Device choice, in one place: ``auto`` takes CUDA where it works, else the CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from l2t_gs.errors import L2TError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> cuda if available else cpu; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` as given.

    Asking for CUDA where it is not available is a one-line :class:`L2TError`.
    """
    import torch  # here, not at the top: the command line lists DEVICE_CHOICES without torch

    if isinstance(name, torch.device):
        name = str(name)
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise L2TError(f"device {name} requested but CUDA is not available")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise L2TError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc


def describe_device() -> str:
    """``"cuda (<GPU name>)"`` or ``"cpu"``: what ``auto`` picks, for ``l2t-gs info``."""
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
