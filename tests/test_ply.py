"""INRIA 3DGS PLY reading/writing: round trips, layout, and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from l2t_gs.errors import L2TError
from l2t_gs.gaussians.ply import GaussianPly, read_gaussian_ply, write_gaussian_ply

INRIA_HEAD = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
INRIA_TAIL = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def make_ply(n: int = 17, degree: int = 3, binding: bool = True, seed: int = 0) -> GaussianPly:
    rng = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    return GaussianPly(
        means=rng.normal(size=(n, 3)).astype(np.float32),
        log_scales=rng.normal(size=(n, 3)).astype(np.float32),
        quats=rng.normal(size=(n, 4)).astype(np.float32),
        opacity_logits=rng.normal(size=n).astype(np.float32),
        sh=rng.normal(size=(n, k, 3)).astype(np.float32),
        binding=rng.integers(0, 9976, size=n) if binding else None,
    )


def plain_read(path: Path) -> tuple[list[str], np.ndarray]:
    """A minimal independent reader: all-float binary little-endian vertex element."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    lines = raw[:end].decode().splitlines()
    assert lines[0] == "ply" and lines[1] == "format binary_little_endian 1.0"
    count = int(lines[2].split()[2])
    names = []
    for line in lines[3:-1]:
        kind, typ, name = line.split()
        assert kind == "property" and typ == "float"
        names.append(name)
    data = np.frombuffer(raw[end:], dtype="<f4").reshape(count, len(names))
    return names, data


def plain_write(path: Path, names: list[str], types: list[str], columns: list[np.ndarray], order: str = "<") -> None:
    """A minimal independent writer with arbitrary property order and types."""
    dtype = np.dtype([(n, order + {"float": "f4", "double": "f8", "int": "i4", "uchar": "u1"}[t])
                      for n, t in zip(names, types, strict=True)])  # fmt: skip
    rec = np.empty(len(columns[0]), dtype=dtype)
    for name, col in zip(names, columns, strict=True):
        rec[name] = col
    fmt = "binary_little_endian" if order == "<" else "binary_big_endian"
    header = ["ply", f"format {fmt} 1.0", "comment hand-written", f"element vertex {len(rec)}"]
    header += [f"property {t} {n}" for n, t in zip(names, types, strict=True)] + ["end_header", ""]
    path.write_bytes("\n".join(header).encode() + rec.tobytes())


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("binding", [True, False])
def test_round_trip_bit_exact(tmp_path: Path, degree: int, binding: bool) -> None:
    ply = make_ply(degree=degree, binding=binding, seed=degree)
    ply.means[0, 0] = -0.0  # signed zero survives
    path = tmp_path / "pc.ply"
    write_gaussian_ply(path, ply)
    back = read_gaussian_ply(path)
    for key in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        a, b = getattr(ply, key), getattr(back, key)
        assert a.shape == b.shape and b.dtype == np.float32
        assert a.tobytes() == b.tobytes(), key
    assert back.sh_degree == degree
    if binding:
        assert back.binding is not None and np.array_equal(back.binding, ply.binding)
    else:
        assert back.binding is None
    assert not list(tmp_path.glob(".pc.ply.*")), "temporary file left behind"


def test_inria_layout(tmp_path: Path) -> None:
    ply = make_ply(n=5, degree=3)
    path = tmp_path / "pc.ply"
    write_gaussian_ply(path, ply)
    names, data = plain_read(path)
    assert names == INRIA_HEAD + [f"f_rest_{i}" for i in range(45)] + INRIA_TAIL + ["binding_0"]
    col = {n: data[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(np.stack([col["x"], col["y"], col["z"]], 1), ply.means)
    np.testing.assert_array_equal(np.stack([col["nx"], col["ny"], col["nz"]], 1), 0)
    for c in range(3):
        np.testing.assert_array_equal(col[f"f_dc_{c}"], ply.sh[:, 0, c])
        for j in range(1, 16):  # channel-major: all R coefficients, then G, then B
            np.testing.assert_array_equal(col[f"f_rest_{c * 15 + j - 1}"], ply.sh[:, j, c])
    np.testing.assert_array_equal(col["opacity"], ply.opacity_logits)
    np.testing.assert_array_equal(np.stack([col[f"rot_{i}"] for i in range(4)], 1), ply.quats)
    np.testing.assert_array_equal(np.stack([col[f"scale_{i}"] for i in range(3)], 1), ply.log_scales)
    np.testing.assert_array_equal(col["binding_0"], ply.binding.astype(np.float32))


def test_reads_other_writers(tmp_path: Path) -> None:
    """Property order, types, byte order and missing normals are the writer's choice."""
    ref = make_ply(n=6, degree=1)
    names = ["rot_3", "rot_2", "rot_1", "rot_0", "binding_0", "opacity", "z", "y", "x"]
    names += [f"f_rest_{i}" for i in range(9)][::-1] + [
        "f_dc_2",
        "f_dc_1",
        "f_dc_0",
        "scale_2",
        "scale_1",
        "scale_0",
    ]
    rest = ref.sh[:, 1:, :].transpose(0, 2, 1).reshape(6, 9)
    source = {
        **{f"rot_{i}": ref.quats[:, i] for i in range(4)},
        "binding_0": ref.binding,
        "opacity": ref.opacity_logits,
        **{"xyz"[i]: ref.means[:, i] for i in range(3)},
        **{f"f_rest_{i}": rest[:, i] for i in range(9)},
        **{f"f_dc_{i}": ref.sh[:, 0, i] for i in range(3)},
        **{f"scale_{i}": ref.log_scales[:, i] for i in range(3)},
    }
    types = ["double" if n.startswith("rot") else "int" if n == "binding_0" else "float" for n in names]
    for order in "<>":
        path = tmp_path / f"other{order == '<'}.ply"
        plain_write(path, names, types, [source[n] for n in names], order=order)
        back = read_gaussian_ply(path)
        np.testing.assert_array_equal(back.sh, ref.sh)
        np.testing.assert_array_equal(back.means, ref.means)
        np.testing.assert_array_equal(back.quats, ref.quats)
        np.testing.assert_array_equal(back.binding, ref.binding)


def _write_without(path: Path, drop: str, ply: GaussianPly) -> None:
    write_gaussian_ply(path, ply)
    names, data = plain_read(path)
    keep = [i for i, n in enumerate(names) if n != drop]
    plain_write(path, [names[i] for i in keep], ["float"] * len(keep), [data[:, i] for i in keep])


@pytest.mark.parametrize("attribute", ["x", "opacity", "scale_1", "rot_3", "f_dc_2", "f_rest_7"])
def test_missing_attribute_is_named(tmp_path: Path, attribute: str) -> None:
    path = tmp_path / "bad.ply"
    _write_without(path, attribute, make_ply(degree=1 if attribute != "f_rest_7" else 3))
    with pytest.raises(L2TError, match="f_rest" if attribute == "f_rest_7" else attribute):
        read_gaussian_ply(path)


def test_missing_binding_when_required(tmp_path: Path) -> None:
    path = tmp_path / "plain.ply"
    write_gaussian_ply(path, make_ply(binding=False))
    with pytest.raises(L2TError, match="binding_0"):
        read_gaussian_ply(path, require_binding=True)


def test_truncated(tmp_path: Path) -> None:
    path = tmp_path / "t.ply"
    write_gaussian_ply(path, make_ply(n=10))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(L2TError, match="truncated"):
        read_gaussian_ply(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b"end_header") - 3])
    with pytest.raises(L2TError, match="end_header"):
        read_gaussian_ply(path)


def test_not_a_ply(tmp_path: Path) -> None:
    path = tmp_path / "x.ply"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(L2TError, match="not a PLY"):
        read_gaussian_ply(path)
    with pytest.raises(L2TError, match="not found"):
        read_gaussian_ply(tmp_path / "missing.ply")
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nend_header\n")
    with pytest.raises(L2TError, match="ascii"):
        read_gaussian_ply(path)


def test_nan_is_reported(tmp_path: Path) -> None:
    ply = make_ply(n=8)
    ply.log_scales[3, 1] = np.nan
    ply.quats[5, 0] = np.inf
    path = tmp_path / "nan.ply"
    write_gaussian_ply(path, ply)
    with pytest.raises(L2TError, match=r"non-finite.*(scale_1|rot_0)"):
        read_gaussian_ply(path)


@pytest.mark.parametrize("value", [-1.0, 2.5, np.nan])
def test_bad_binding_values(tmp_path: Path, value: float) -> None:
    path = tmp_path / "b.ply"
    write_gaussian_ply(path, make_ply(n=4))
    names, data = plain_read(path)
    data = data.copy()
    data[2, names.index("binding_0")] = value
    plain_write(path, names, ["float"] * len(names), [data[:, i] for i in range(len(names))])
    with pytest.raises(L2TError, match="binding_0"):
        read_gaussian_ply(path)


def test_bad_rest_count(tmp_path: Path) -> None:
    path = tmp_path / "r.ply"
    _write_without(path, "f_rest_8", make_ply(degree=1))  # 8 f_rest values: no SH degree
    with pytest.raises(L2TError, match="SH degree"):
        read_gaussian_ply(path)


def test_write_rejects_bad_sh(tmp_path: Path) -> None:
    ply = make_ply(n=3)
    ply.sh = ply.sh[:, :5]
    with pytest.raises(L2TError):
        write_gaussian_ply(tmp_path / "x.ply", ply)
    assert not list(tmp_path.iterdir())


def test_empty_cloud(tmp_path: Path) -> None:
    path = tmp_path / "empty.ply"
    write_gaussian_ply(path, make_ply(n=0))
    back = read_gaussian_ply(path)
    assert back.num_splats == 0 and back.sh.shape == (0, 16, 3) and back.binding is not None
