"""Broken and hostile inputs give one line naming the file and the field, before anything large is
allocated: avatar.json, flame_param.npz, PLY headers, checkpoints, FLAME pickles/npz, a full disk, and
the weak spots of ``--export-ply``, ``avatar export-ply`` and ``train``."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import stat
import struct
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from reliability_helpers import DEFAULT_AVATAR, leftovers, run_guarded, speech_wav

from l2t_gs.cli.main import main
from l2t_gs.errors import L2TError
from l2t_gs.gaussians.avatar_io import load_avatar, load_flame_params
from l2t_gs.gaussians.ply import read_gaussian_ply
from l2t_gs.io import video
from l2t_gs.io.npz import read_npz
from l2t_gs.models.checkpoint import load_model, read_checkpoint
from l2t_gs.rig import load_head_model

MB = 1 << 20


def _avatar_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "avatar"
    shutil.copytree(DEFAULT_AVATAR, folder)
    return folder


def _edit_json(folder: Path, **fields) -> None:
    meta = json.loads((folder / "avatar.json").read_text())
    meta.update(fields)
    (folder / "avatar.json").write_text(json.dumps(meta))


# ----------------------------------------------------------------------------- avatar.json
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("version", "one", "field 'version' must be an integer"),
        ("num_vertices", "lots", "field 'num_vertices' must be an integer"),
        ("sh_degree", None, "field 'sh_degree' must be an integer"),
        ("sh_degree", 7, "field 'sh_degree' must be in 0..3"),
        ("num_faces", -3, "field 'num_faces' must be in"),
        ("num_splats", True, "field 'num_splats' must be an integer"),
        ("num_splats", 12, "field 'num_splats' says 12, point_cloud.ply has 40000"),
        ("name", ["x"], "field 'name' must be a string"),
        ("notes", {"a": 1}, "field 'notes' must be a string"),
        ("version", 99, "version 99 is newer"),
    ],
)
def test_avatar_json_fields(tmp_path: Path, field: str, value, message: str) -> None:
    folder = _avatar_copy(tmp_path)
    _edit_json(folder, **{field: value})
    with pytest.raises(L2TError, match=message) as info:
        load_avatar(folder)
    assert "avatar.json" in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------- flame_param.npz
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("expr", np.array(["a", "b"]), "field 'expr' must hold numbers, got <U1"),
        ("jaw_pose", np.array([[np.nan, 0, 0]], dtype=np.float32), "field 'jaw_pose' has non-finite"),
        ("shape", np.float32(3.0), r"field 'shape' must be \[N\] or \[T, N\]"),
        ("expr", np.zeros((1, 2, 3), np.float32), r"field 'expr' must be \[N\] or \[T, N\]"),
        ("rotation", np.zeros((1, 7), np.float32), r"field 'rotation' has shape \[1, 7\], expected \[T, 3\]"),
    ],
)
def test_flame_param_fields(tmp_path: Path, key: str, value, message: str) -> None:
    folder = _avatar_copy(tmp_path)
    params = dict(np.load(folder / "flame_param.npz"))
    params[key] = value
    np.savez(folder / "flame_param.npz", **params)
    with pytest.raises(L2TError, match=message) as info:
        load_avatar(folder)
    assert "flame_param.npz" in str(info.value)


def _npz_with_forged_header(path: Path, shape: tuple[int, ...]) -> None:
    """An .npz whose one member's .npy header declares ``shape`` but holds 16 bytes of data."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("expr.npy", buf.getvalue() + b"\0" * 16)


def test_npz_declared_sizes_are_checked_before_allocation(tmp_path: Path) -> None:
    path = tmp_path / "forged.npz"
    _npz_with_forged_header(path, (1 << 20, 1 << 20))  # 8 TiB declared
    out, peak = run_guarded(lambda: load_flame_params(path), max_bytes=4 * MB)
    assert "more than the limit" in out and "'expr'" in out
    _npz_with_forged_header(path, (1000, 1000))  # 8 MB declared, 16 bytes present
    out, peak = run_guarded(lambda: read_npz(path, "x.npz"), max_bytes=2 * MB)
    assert "truncated or damaged" in out
    # a zip member whose directory entry declares 64 GB
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.npy", b"\x93NUMPY")
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFF0)  # uncompressed size
    path.write_bytes(bytes(raw))
    out, _ = run_guarded(lambda: read_npz(path, "x.npz"), max_bytes=2 * MB)
    assert "more than the limit" in out or "damaged" in out


# ----------------------------------------------------------------------------- PLY headers
def _ply_header(count: str, props=("x", "y", "z")) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {count}"]
    lines += [f"property float {p}" for p in props] + ["end_header", ""]
    return "\n".join(lines).encode()


@pytest.mark.parametrize(
    ("count", "message"),
    [("-1", "negative count"), (str(10**12), "declares 1000000000000 splats"), ("4", "declares 4 splats")],
)
def test_ply_counts_are_checked_against_the_file(tmp_path: Path, count: str, message: str) -> None:
    path = tmp_path / "p.ply"
    path.write_bytes(_ply_header(count) + b"\0" * 12)
    out, _ = run_guarded(lambda: read_gaussian_ply(path), max_bytes=2 * MB)
    assert message in out and str(path) in out


def test_ply_missing_properties_and_empty_avatar(tmp_path: Path) -> None:
    path = tmp_path / "p.ply"
    path.write_bytes(_ply_header("1") + b"\0" * 12)
    with pytest.raises(L2TError, match="lacks required 3DGS attribute.*f_dc_0"):
        read_gaussian_ply(path)
    path.write_bytes(_ply_header("2", props=()))
    with pytest.raises(L2TError, match="no properties"):
        read_gaussian_ply(path)
    # found by the fuzz suite: a repeated property in an element before 'vertex'
    header = ["ply", "format binary_little_endian 1.0", "element face 0", "property float x", "property float x"]
    path.write_bytes(("\n".join([*header, "end_header", ""])).encode())
    with pytest.raises(L2TError, match="element 'face' repeats the property 'x'"):
        read_gaussian_ply(path)
    folder = _avatar_copy(tmp_path)
    ply = folder / "point_cloud.ply"
    raw = ply.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    ply.write_bytes(raw[:end].replace(b"element vertex 40000", b"element vertex 0"))
    _edit_json(folder, num_splats=1)
    with pytest.raises(L2TError, match="no splats"):  # instead of a blank video
        load_avatar(folder)


# ----------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def shipped_checkpoint() -> dict:
    from l2t_gs.assets import asset_path

    return read_checkpoint(asset_path("models", "default", "model.pt"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(subjects=None), "field 'subjects' must be a list"),
        (lambda d: d.update(subjects=[]), "field 'subjects' must name 1.."),
        (lambda d: d.update(n_verts="7931"), "field 'n_verts' must be an integer"),
        (lambda d: d["config"].update(d_model=2**20), "field 'd_model' must be in 1..4096"),
        (lambda d: d["config"].update(n_layers=10**6), "field 'n_layers' must be in 1..64"),
        (lambda d: d["config"].update(d_model=4096, n_heads=64, n_layers=64), "asks for about"),
        (lambda d: d.update(config=None), "field 'config' must be a table"),
        (lambda d: d.update(model=[1, 2]), "field 'model' must be a state dict"),
    ],
)
def test_checkpoint_fields_checked_before_building(tmp_path: Path, shipped_checkpoint: dict, edit, message) -> None:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in shipped_checkpoint.items()}
    edit(data)
    path = tmp_path / "forged.pt"
    torch.save(data, path)
    out, _ = run_guarded(lambda: load_model(path), max_bytes=64 * MB)
    assert message in out and str(path) in out, out


class _Payload:
    """A pickle that runs a command when loaded by an unsafe loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (subprocess.call, (["touch", str(self.marker)],))


@pytest.fixture()
def unsafe_encoder_dir(tmp_path: Path) -> tuple[Path, Path]:
    """A transformers model folder whose weights are a pickle that runs a command; and its marker file."""
    enc_dir = tmp_path / "enc"
    enc_dir.mkdir()
    config = {"model_type": "wav2vec2", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    (enc_dir / "config.json").write_text(json.dumps(config | {"intermediate_size": 64, "conv_dim": [32] * 7}))
    marker = tmp_path / "pwned"
    torch.save({"w": _Payload(marker)}, enc_dir / "pytorch_model.bin")
    return enc_dir, marker


def test_checkpoint_never_loads_its_encoder_path(tmp_path: Path, shipped_checkpoint, unsafe_encoder_dir) -> None:
    """A checkpoint naming a model folder as encoder_path (and no stored encoder config) is refused."""
    enc_dir, marker = unsafe_encoder_dir
    data = dict(shipped_checkpoint)
    data["config"] = dict(data["config"], encoder="wav2vec2", encoder_path=str(enc_dir))
    data["hf_config"] = None
    torch.save(data, tmp_path / "m.pt")
    with pytest.raises(L2TError, match="must be self-contained"):
        load_model(tmp_path / "m.pt")
    assert not marker.exists()


@pytest.mark.slow
def test_hf_encoder_weights_that_are_an_unsafe_pickle_are_refused(unsafe_encoder_dir) -> None:
    pytest.importorskip("transformers")
    from l2t_gs.models.encoders import HFEncoder

    enc_dir, marker = unsafe_encoder_dir
    with pytest.raises(L2TError, match="only model.safetensors is read"):
        HFEncoder.from_pretrained(str(enc_dir))
    assert not marker.exists()


# ----------------------------------------------------------------------------- FLAME pickles
def _proto2(body: bytes) -> bytes:
    return b"\x80\x02" + body + b"."


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (_proto2(b"c__builtin__\nbytearray\nJ\x00\x00\x00\x40\x85R"), "bytearray"),  # bytearray(2**30)
        (_proto2(b"c__builtin__\nlist\nc__builtin__\nxrange\nJ\x00\x00\x00\x40\x85R\x85R"), "range of"),
        (_proto2(b"N" + b"r\xff\xff\xff\x7f"), "memo index"),  # LONG_BINPUT 2**31 - 1
        (
            _proto2(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x01\x00J\x00\x00\x01\x00\x86"
                    b"U\x01b\x87R"),  # _reconstruct(ndarray, (65536, 65536), 'b')
            "needs",
        ),
    ],
)  # fmt: skip
def test_pickle_declared_sizes_are_refused_before_allocation(tmp_path: Path, payload: bytes, message: str) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    out, _ = run_guarded(lambda: load_head_model(path), max_bytes=4 * MB)
    assert "declares more than this loader accepts" in out and message in out, out


class csc_matrix:  # noqa: N801 - pickled under scipy's name (the GLOBAL line is rewritten below)
    """Pickles like a scipy.sparse csc_matrix with a chosen state."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def __reduce__(self):
        return (csc_matrix, (None,), self.state)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"_shape": (1 << 20, 1 << 20), "data": np.ones(1), "indices": np.zeros(1, int),
          "indptr": np.zeros(2, int)}, "more than the limit"),
        ({"_shape": (5, 10), "data": np.ones(3), "indices": np.zeros(2, int), "indptr": np.zeros(11, int)},
         "do not fit"),
        ({"_shape": (5, 2), "data": np.ones(1), "indices": np.zeros(1, int),
          "indptr": np.array([0, 10**12, 1])}, "must rise from 0"),
        ({"_shape": (5, 2), "data": np.ones(1), "indices": np.array([9]), "indptr": np.array([0, 1, 1])},
         "outside the 5x2 matrix"),
        ({"_shape": None, "data": np.ones(1)}, "shape must be two integers"),
    ],
)  # fmt: skip
def test_sparse_matrices_are_checked_before_densifying(tmp_path: Path, state: dict, message: str) -> None:
    from flame_factory import make_flame_arrays

    arrays = make_flame_arrays(n_verts=10, n_faces=4, seed=1)
    blob = pickle.dumps({**arrays, "J_regressor": csc_matrix(state)}, protocol=2)
    blob = blob.replace(f"c{__name__}\ncsc_matrix\n".encode(), b"cscipy.sparse._csc\ncsc_matrix\n")
    path = tmp_path / "flame.pkl"
    path.write_bytes(blob)
    out, _ = run_guarded(lambda: load_head_model(path), max_bytes=8 * MB)
    assert "J_regressor" in out and message in out, out


# ----------------------------------------------------------------------------- full disk
def _noise_frames(n: int, size: int = 128, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_disk_full_while_encoding_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "o.mp4"
    with pytest.raises(L2TError, match="no space left on the device"):
        with video.VideoWriter(out, 25, 128, 128) as writer:
            writer.write(_noise_frames(2))
            full()
    assert list(tmp_path.iterdir()) == []
    # through the CLI: the encoder fails after two frames
    wav = speech_wav(tmp_path / "in.wav", seconds=1.0)
    original = video.VideoWriter.write
    seen = [0]  # frames handed to the writer (its frames_written is counted by the background encoder)

    def write(self, img):
        if seen[0] >= 2:
            full()
        seen[0] += 1 if np.ndim(img) == 3 else len(img)
        original(self, img)

    monkeypatch.setattr(video.VideoWriter, "write", write)
    assert main(["render", str(wav), "-o", str(out), "--size", "64", "--fps", "10", "--quiet"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_disk_full_for_the_mesh_export_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    wav = speech_wav(tmp_path / "in.wav", seconds=0.5)
    args = ["render", str(wav), "-o", str(tmp_path / "o.mp4"), "--size", "64", "--fps", "10", "--quiet"]
    assert main([*args, "--export-mesh", str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--export-mesh: no space left on the device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_disk_full_on_a_real_tiny_tmpfs(tmp_path: Path) -> None:
    """A 64 KiB tmpfs (root only, where mounting is permitted): PyAV's own ENOSPC becomes one line."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({res.stderr.decode().strip()[:80]})")
    try:
        with pytest.raises(L2TError, match="no space left on the device"):
            with video.VideoWriter(mnt / "o.mp4", 25, 256, 256) as writer:
                for i in range(20):  # distinct noise frames: about 100 KB each
                    writer.write(_noise_frames(1, 256, seed=i))
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# ----------------------------------------------------------------------------- weak spots
def test_export_ply_onto_an_existing_file_is_one_line(tmp_path: Path, capsys) -> None:
    wav = speech_wav(tmp_path / "in.wav", seconds=0.5)
    target = tmp_path / "frames"
    target.write_text("mine")
    args = ["render", str(wav), "-o", str(tmp_path / "o.mp4"), "--size", "64", "--fps", "10", "--quiet"]
    assert main([*args, "--export-ply", str(target)]) == 1
    assert "--export-ply must name a folder, but" in capsys.readouterr().err
    assert target.read_text() == "mine" and not (tmp_path / "o.mp4").exists()


def test_export_ply_says_how_much_it_writes_into_a_normal_folder(tmp_path: Path, capsys) -> None:
    wav = speech_wav(tmp_path / "in.wav", seconds=0.5)
    plys = tmp_path / "plys"
    args = ["render", str(wav), "-o", str(tmp_path / "o.mp4"), "--size", "64", "--fps", "10", "--quiet"]
    assert main([*args, "--export-ply", str(plys)]) == 0
    err = capsys.readouterr().err
    files = sorted(plys.iterdir())
    per_frame = files[0].stat().st_size
    assert len(files) == 5 and f"about {per_frame / 1e6:.1f} MB each: 5 frames" in err, err
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(plys.stat().st_mode) == 0o777 & ~umask  # not 0700
    assert leftovers(tmp_path) == []


def test_export_ply_needing_more_than_the_free_space_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**6, 10**6 - 1000, 1000))
    wav = speech_wav(tmp_path / "in.wav", seconds=0.5)
    args = ["render", str(wav), "-o", str(tmp_path / "o.mp4"), "--size", "64", "--fps", "10", "--quiet"]
    assert main([*args, "--export-ply", str(tmp_path / "plys")]) == 1
    assert "only 0.00 GB are free" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"]


def test_avatar_export_ply_frame_needs_frame_params(tmp_path: Path, capsys) -> None:
    out = tmp_path / "f.ply"
    assert main(["avatar", "export-ply", "--avatar", str(DEFAULT_AVATAR), "--out", str(out), "--frame", "5"]) == 1
    assert "--frame needs --frame-params" in capsys.readouterr().err and not out.exists()
    assert main(["avatar", "export-ply", "--avatar", str(DEFAULT_AVATAR), "--out", str(tmp_path)]) == 1
    assert "--out is a directory" in capsys.readouterr().err


def test_train_without_data_leaves_no_run_folder(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", "audio2mesh", "--data", str(tmp_path / "missing"), "--out", str(run)]) == 1
    assert "dataset folder" in capsys.readouterr().err and not run.exists()


def test_wav_with_zero_bits_per_sample_is_one_line(tmp_path: Path) -> None:
    """Found by the fuzz suite: PyAV opens such a file with a stream lacking a codec context."""
    from l2t_gs.audio.io import load_audio

    raw = bytearray(speech_wav(tmp_path / "ok.wav", seconds=0.2).read_bytes())
    assert raw[12:16] == b"fmt " and raw[34:36] == b"\x10\x00"
    raw[34:36] = b"\x00\x00"  # bits per sample
    path = tmp_path / "bad.wav"
    path.write_bytes(bytes(raw))
    out, _ = run_guarded(lambda: load_audio(path), max_bytes=16 * MB)
    assert "cannot decode audio" in out
