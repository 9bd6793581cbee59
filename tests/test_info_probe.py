"""``l2t-gs info`` without torch: the file-based probes agree with what torch and gsplat say."""

from __future__ import annotations

import subprocess
import sys

import pytest

from l2t_gs.cli.info import collect_info
from l2t_gs.core import probe


def test_quick_info_imports_no_heavy_package():
    code = (
        "import sys; from l2t_gs.cli.info import collect_info; info = collect_info(); "
        "print(sorted(m for m in ('torch', 'numba', 'gsplat', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_quick_info_agrees_with_probe():
    import torch

    from l2t_gs.core.device import describe_device
    from l2t_gs.render.backend_gsplat import gsplat_status

    quick, probed = collect_info(), collect_info(probe=True)
    assert quick["probed"] is False and probed["probed"] is True
    assert quick["torch"] == torch.__version__ == probed["torch"]
    assert quick["device"] == describe_device() == probed["device"]
    assert (quick["gsplat_cuda"], quick["gsplat"]) == gsplat_status() or torch.cuda.is_available()
    assert probed["torch_threads"] == torch.get_num_threads()
    assert 1 <= quick["cpus"] <= (__import__("os").cpu_count() or 1)
    assert quick["head_models"] == probed["head_models"] == ["builtin"]


def test_torch_gpu_build_matches_torch():
    import torch

    expected = f"CUDA {torch.version.cuda}" if torch.version.cuda else None
    if expected is None and getattr(torch.version, "hip", None):
        expected = f"ROCm {torch.version.hip}"
    assert probe.torch_gpu_build() == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("cuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n", "CUDA 12.8"),
        ("cuda = None\nhip: Optional[str] = '6.2.4'\n", "ROCm 6.2.4"),
        ("cuda: Optional[str] = None\nhip: Optional[str] = None\n", None),
    ],
)
def test_torch_gpu_build_parses_version_file(tmp_path, monkeypatch, text, expected):
    (tmp_path / "version.py").write_text("__version__ = '2.0'\n" + text)
    monkeypatch.setattr(probe, "package_dir", lambda name: tmp_path)
    assert probe.torch_gpu_build() == expected


def test_nvidia_gpus_reads_driver_files(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    for bus, model in (("0000:81:00.0", "NVIDIA H200"), ("0000:01:00.0", "NVIDIA GeForce RTX 4090")):
        (tmp_path / bus).mkdir()
        (tmp_path / bus / "information").write_text(f"Model: \t\t {model}\nIRQ:   42\n")
    assert probe.nvidia_gpus(tmp_path) == ["NVIDIA GeForce RTX 4090", "NVIDIA H200"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert probe.nvidia_gpus(tmp_path) == []


def test_quick_device_needs_gpu_and_cuda_build(monkeypatch):
    monkeypatch.setattr(probe, "nvidia_gpus", lambda: ["NVIDIA H200"])
    monkeypatch.setattr(probe, "torch_gpu_build", lambda: "CUDA 12.8")
    assert probe.quick_device() == "cuda (NVIDIA H200)"
    monkeypatch.setattr(probe, "torch_gpu_build", lambda: None)
    assert probe.quick_device() == "cpu"
    monkeypatch.setattr(probe, "torch_gpu_build", lambda: "CUDA 12.8")
    monkeypatch.setattr(probe, "nvidia_gpus", lambda: [])
    assert probe.quick_device() == "cpu"


def test_quick_gsplat_status(monkeypatch, tmp_path):
    monkeypatch.setattr(probe, "package_version", lambda name: "1.5.3")
    assert probe.quick_gsplat_status("cpu") == (False, "gsplat 1.5.3 is installed but no CUDA device is available")
    monkeypatch.setattr(probe, "gsplat_kernel_files", lambda: [])
    assert probe.quick_gsplat_status("cuda (X)")[0] is False
    monkeypatch.setattr(probe, "gsplat_kernel_files", lambda: [str(tmp_path / "csrc.so")])
    assert probe.quick_gsplat_status("cuda (X)")[0] is True
    monkeypatch.setattr(probe, "package_version", lambda name: None)
    assert probe.quick_gsplat_status("cuda (X)") == (False, "gsplat is not installed")


def test_gsplat_kernel_files_finds_torch_extension_build(tmp_path, monkeypatch):
    monkeypatch.setattr(probe, "package_dir", lambda name: None)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert probe.gsplat_kernel_files() == []
    (tmp_path / "gsplat_cuda").mkdir()
    (tmp_path / "gsplat_cuda" / "gsplat_cuda.so").write_bytes(b"")
    assert probe.gsplat_kernel_files() == [str(tmp_path / "gsplat_cuda" / "gsplat_cuda.so")]


def test_package_version_matches_metadata():
    import numpy

    assert probe.package_version("numpy") == numpy.__version__
    assert probe.package_version("surely-not-an-installed-package") is None
