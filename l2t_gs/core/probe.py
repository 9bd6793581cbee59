"""Cheap answers about the environment, without importing torch, gsplat or numba.

``l2t-gs info`` must answer at once, so these read package metadata, files of the installed packages
and of the NVIDIA driver instead of importing the packages (torch alone takes seconds to import).
They are good guesses, not proofs: :func:`l2t_gs.core.device.describe_device` and
:func:`l2t_gs.render.backend_gsplat.gsplat_status` import torch and gsplat and give the exact answer.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def package_version(name: str) -> str | None:
    """The installed distribution ``name``'s version (from its metadata), or None when not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_dir(name: str) -> Path | None:
    """Folder of the top-level package ``name``, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def torch_gpu_build() -> str | None:
    """The CUDA (or ROCm) version torch was built for, read from ``torch/version.py``; None for CPU builds."""
    root = package_dir("torch")
    try:
        text = (root / "version.py").read_text() if root else ""
    except OSError:
        return None
    for field in ("cuda", "hip"):
        m = re.search(rf"^{field}\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
        if m:
            return f"{'CUDA' if field == 'cuda' else 'ROCm'} {m.group(1)}"
    return None


def nvidia_gpus(proc: Path = NVIDIA_PROC) -> list[str]:
    """Model names of the NVIDIA GPUs the driver lists (empty when none, or hidden by CUDA_VISIBLE_DEVICES)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1"):
        return []
    names = []
    for info in sorted(proc.glob("*/information")) if proc.is_dir() else []:
        try:
            m = re.search(r"^Model:\s*(.+)$", info.read_text(), re.MULTILINE)
        except OSError:
            continue
        names.append(m.group(1).strip() if m else "NVIDIA GPU")
    if not names and Path("/dev/nvidia0").exists():
        names.append("NVIDIA GPU")
    return names


def quick_device() -> str:
    """What ``--device auto`` most likely picks: ``"cuda (<GPU name>)"`` or ``"cpu"`` (torch not imported).

    CUDA needs both a torch built for CUDA and a GPU the driver lists.
    """
    gpus = nvidia_gpus()
    return f"cuda ({gpus[0]})" if gpus and torch_gpu_build() else "cpu"


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gsplat_kernel_files() -> list[str]:
    """gsplat's compiled CUDA kernels on disk: its prebuilt ``csrc`` module or torch's JIT build cache."""
    root = package_dir("gsplat")
    found = sorted(glob.glob(str(root / "csrc*.so"))) if root else []
    env_root = os.environ.get("TORCH_EXTENSIONS_DIR")
    # torch builds into $TORCH_EXTENSIONS_DIR/<name>, else ~/.cache/torch_extensions/py<XY>_cu<Z>/<name>
    root_pattern = env_root or str(Path.home() / ".cache" / "torch_extensions" / "*")
    pattern = os.path.join(root_pattern, "gsplat_cuda", "gsplat_cuda.so")
    found += sorted(glob.glob(pattern))
    return found


def quick_gsplat_status(device: str) -> tuple[bool, str]:
    """:func:`gsplat_status`'s answer as far as files tell (``device`` from :func:`quick_device`)."""
    version = package_version("gsplat")
    if version is None:
        return False, "gsplat is not installed"
    if not device.startswith("cuda"):
        return False, f"gsplat {version} is installed but no CUDA device is available"
    if not gsplat_kernel_files():
        return False, f"gsplat {version}: no compiled CUDA kernels found (built on first use where nvcc is available)"
    return True, f"gsplat {version} with CUDA kernels (found on disk, not loaded; --probe loads them)"
