"""Atomic writes: a failed write leaves neither a partial target nor a temporary file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path, write_text_atomic
from l2t_gs.io.obj import write_obj


def test_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("new but broken")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_permissions_follow_umask(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_missing_directory_is_a_user_error(tmp_path):
    with pytest.raises(L2TError, match="does not exist"):
        write_text_atomic(tmp_path / "nope" / "a.txt", "x")


def test_obj_round_trip(tmp_path):
    v = np.random.default_rng(0).normal(size=(5, 3))
    f = np.array([[0, 1, 2], [2, 3, 4]])
    write_obj(tmp_path / "m.obj", v, f, header="test")
    lines = (tmp_path / "m.obj").read_text().splitlines()
    vs = np.array([[float(t) for t in ln.split()[1:]] for ln in lines if ln.startswith("v ")])
    fs = np.array([[int(t) for t in ln.split()[1:]] for ln in lines if ln.startswith("f ")])
    np.testing.assert_allclose(vs, v, atol=1e-6)
    np.testing.assert_array_equal(fs, f + 1)
