"""Packaging: every package is declared, assets ship, and the CLI runs from any directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("l2t-gs")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "l2t_gs"]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_every_package_is_declared():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    mapped = cfg["package-dir"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "l2t_gs").rglob("__init__.py")}
    for name, folder in mapped.items():
        found |= {
            name + "".join("." + part for part in p.parent.relative_to(ROOT / folder).parts)
            for p in (ROOT / folder).rglob("__init__.py")
        }
    assert found <= declared, f"undeclared packages: {sorted(found - declared)}"


def test_version_help_and_info(tmp_path):
    out = _cli("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.startswith("l2t-gs ")
    out = _cli("--help", cwd=tmp_path)
    assert out.returncode == 0 and "info" in out.stdout and "head" in out.stdout
    out = _cli("info", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["head_models"] == ["builtin"]
    assert info["torch"].startswith("2.")
    assert info["gsplat_cuda"] in (True, False)


def test_head_export_obj(tmp_path):
    out = _cli("head", "export", "--out", "h.obj", "--expr", "lip_close=1", "--jaw", "0.2,0,0", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "h.obj").read_text().splitlines()
    n_v = sum(ln.startswith("v ") for ln in lines)
    n_f = sum(ln.startswith("f ") for ln in lines)
    from l2t_gs.rig import load_head_model

    model = load_head_model("builtin")
    assert (n_v, n_f) == (model.n_verts, model.n_faces)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["head", "export", "--out", "x.obj", "--jaw", "1,2"], "--jaw needs 3"),
        (["head", "export", "--out", "x.obj", "--expr", "smile=1"], "unknown name 'smile'"),
        (["head", "export", "--out", "x.obj", "--model", "missing.pkl"], "not found"),
        (["head", "export", "--out", "x.txt"], "must end in .obj"),
        (["head", "export", "--out", "nodir/x.obj"], "does not exist"),
        (["head", "export", "--out", "x.obj", "--eyes", "0,0,nan,0,0,0"], "finite"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, needle):
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    out = _cli(*args, cwd=tmp_path)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert not list(tmp_path.glob("*.obj")) and not list(tmp_path.glob(".x.obj*"))


def test_bad_model_file_is_one_line(tmp_path):
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle")
    out = _cli("head", "export", "--out", "x.obj", "--model", "bad.pkl", cwd=tmp_path)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_head_render_png(tmp_path):
    import numpy as np
    from PIL import Image

    out = _cli("head", "render", "--out", "h.png", "--size", "96", "--view", "three-quarter", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    img = np.asarray(Image.open(tmp_path / "h.png"))
    assert img.shape == (96, 96, 3)
    centre = img[32:64, 32:64].reshape(-1, 3)
    assert (centre < 250).any(axis=1).mean() > 0.9  # the head covers the centre
