"""Temporary names a later run recognises: the tag + PID shape, the sweep of dead processes' leftovers,
and every writer using them (atomic writes, mesh/PLY exports, avatar folders, the viewer's folder)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from reliability_helpers import DEFAULT_AVATAR, dead_pid, leftovers

from l2t_gs.cli.main import main
from l2t_gs.io import tempfiles
from l2t_gs.io.atomic import atomic_path
from l2t_gs.io.tempfiles import (
    HOST,
    TAG,
    is_temp_name,
    make_temp_dir,
    make_temp_file,
    sweep_stale,
    temp_dir,
    temp_name,
    temp_owner,
)


def test_names_embed_tag_pid_and_random_part() -> None:
    a, b = temp_name("o.mp4"), temp_name("o.mp4")
    assert a != b
    assert a.startswith(f"{TAG}{os.getpid()}-{HOST}") and a.endswith("-o.mp4")
    assert temp_owner(a) == os.getpid() and is_temp_name(a)
    long = temp_name("x" * 300 + ".mp4")
    assert len(long.encode()) < 255 and long.endswith("x.mp4")
    # user files, even ones that look alike, are not ours
    for name in (
        "o.mp4",
        ".o.mp4.abc123.mp4",
        ".l2t-mesh-abc",
        f"{TAG}12-short-o.mp4",
        f"{TAG}abc-0123456789-o.mp4",
        f"l2t-tmp-{os.getpid()}-0123456789",
        f"{TAG}0-0123456789",
    ):
        assert temp_owner(name) is None, name


def test_sweep_removes_only_dead_processes_temporaries(tmp_path: Path) -> None:
    dead = dead_pid()
    stale_file = tmp_path / temp_name("o.mp4", pid=dead)
    stale_file.write_bytes(b"x" * 100)
    stale_dir = tmp_path / temp_name("mesh", pid=dead)
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "vertices.npy").write_bytes(b"y")
    live = tmp_path / temp_name("o.mp4", pid=os.getpid())  # ours: in use
    live.write_bytes(b"z")
    parent = tmp_path / temp_name("x", pid=1)  # PID 1 runs: kept
    parent.write_bytes(b"z")
    other_host = "zzzz" if HOST != "zzzz" else "yyyy"  # another machine's or container's: its PIDs mean nothing here
    foreign = tmp_path / temp_name("o.mp4", pid=dead).replace(f"-{HOST}", f"-{other_host}", 1)
    foreign.write_bytes(b"f")
    user = [
        tmp_path / n for n in (f".o.mp4.{dead}.mp4", f"{TAG}{dead}-short", "talk.mp4", f"l2t-tmp-{dead}-abcdefghij")
    ]
    for p in user:
        p.write_bytes(b"u")
    removed = sweep_stale(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_dir])
    assert not stale_file.exists() and not stale_dir.exists()
    assert live.exists() and parent.exists() and foreign.exists() and all(p.exists() for p in user)
    # once per directory and process, unless forced
    stale_file.write_bytes(b"x")
    assert sweep_stale(tmp_path) == [] and stale_file.exists()
    assert sweep_stale(tmp_path, force=True) == [stale_file]


def test_make_temp_file_and_dir_sweep_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfiles, "_swept", set())
    stale = tmp_path / temp_name("old", pid=dead_pid())
    stale.mkdir()
    f = make_temp_file(tmp_path, "x.ply")
    assert not stale.exists()
    assert f.is_file() and temp_owner(f.name) == os.getpid() and f.name.endswith("-x.ply")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    d = make_temp_dir(tmp_path, "plys", mode=0o777)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(d.stat().st_mode) == 0o777 & ~umask
    with temp_dir(tmp_path, "scratch") as s:
        (s / "f").write_bytes(b"1")
        assert stat.S_IMODE(s.stat().st_mode) == 0o700
    assert not s.exists()


def test_atomic_path_uses_recognisable_names(tmp_path: Path) -> None:
    target = tmp_path / "o.mp4"
    with atomic_path(target) as tmp:
        assert temp_owner(tmp.name) == os.getpid() and tmp.suffix == ".mp4"
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data" and leftovers(tmp_path) == []
    with atomic_path(tmp_path / "vertices", suffix=".npz") as tmp:
        assert tmp.name.endswith("-vertices.npz")
        tmp.write_bytes(b"1")


def test_stale_temporaries_of_a_killed_run_are_swept_by_the_next_run(tmp_path: Path, monkeypatch) -> None:
    """SIGKILL leaves temporaries behind; the next command writing into that folder removes them (and only
    them)."""
    monkeypatch.setattr(tempfiles, "_swept", set())
    dead = dead_pid()
    stale = [
        tmp_path / temp_name("o.mp4", pid=dead),
        tmp_path / temp_name("mesh", pid=dead),
        tmp_path / temp_name("plys", pid=dead),
    ]
    stale[0].write_bytes(b"\0" * 1000)
    for d in stale[1:]:
        d.mkdir()
        (d / "frame_000000.ply").write_bytes(b"ply\n")
    keep = tmp_path / ".o.mp4.k3j4h5.mp4"  # an older-style name, or a user's file: never touched
    keep.write_bytes(b"u")
    out = tmp_path / "neutral.ply"
    assert main(["avatar", "export-ply", "--avatar", str(DEFAULT_AVATAR), "--out", str(out)]) == 0
    assert out.is_file() and keep.exists()
    assert not any(p.exists() for p in stale)
    assert leftovers(tmp_path) == []


def test_viewer_workdir_is_a_recognisable_temporary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The viewer's folder in the system temp folder has the swept shape: a viewer killed before it
    serves leaves a folder the next run removes."""
    pytest.importorskip("viser")
    import inspect

    from l2t_gs.viewer import app

    src = inspect.getsource(app.AvatarViewer.__init__)
    assert "make_temp_dir(None" in src and "mkdtemp" not in inspect.getsource(app)
    monkeypatch.setattr(tempfiles, "_swept", set())
    root = Path(tempfile.gettempdir())
    stale = root / temp_name("view", pid=dead_pid())
    stale.mkdir()
    (stale / "upload-x.wav").write_bytes(b"RIFF")
    fresh = make_temp_dir(None, "view")
    try:
        assert not stale.exists() and fresh.parent == root
    finally:
        shutil.rmtree(fresh)
