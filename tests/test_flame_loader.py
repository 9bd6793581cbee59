"""Head model loading: chumpy-free FLAME pickles, .npz files, FLAME masks and every kind of bad file."""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from flame_factory import make_flame_arrays, make_head_model, reference_flame

from l2t_gs.errors import L2TError
from l2t_gs.rig import (
    FlameRig,
    head_model_from_arrays,
    load_flame_masks,
    load_head_model,
    save_head_model,
)

HAVE_SCIPY = importlib.util.find_spec("scipy") is not None

# A throwaway stand-in for the chumpy package: classes whose pickled state looks like chumpy's
# (``Ch`` keeps its array under 'x'; derived operations keep their operands as attributes).
_FAKE_CHUMPY = {
    "chumpy/__init__.py": "from .ch import Ch\n",
    "chumpy/ch.py": """
        import numpy as np

        class Ch(object):
            dterms = ['x']

            def __init__(self, x=None):
                if x is not None:
                    self.x = np.asarray(x, dtype=np.float64)
                self._dirty_vars = set()
                self._itr = None
                self._depends_on_deps = {}
                self._parents = {}
                self._cache = {'r': None, 'drs': {}}

            def __getstate__(self):
                state = dict(self.__dict__)
                del state['_parents']
                del state['_cache']
                return state
        """,
    "chumpy/reordering.py": """
        from .ch import Ch

        class transpose(Ch):
            def __init__(self, a, axes=None):
                Ch.__init__(self)
                self.a = a
                self.axes = axes
        """,
    "chumpy/ch_ops.py": """
        from .ch import Ch

        class sin(Ch):
            def __init__(self, x):
                Ch.__init__(self)
                self.x = x

        class add(Ch):
            def __init__(self, a, b):
                Ch.__init__(self)
                self.a = a
                self.b = b
        """,
}

# A throwaway scipy.sparse csc matrix, used only when scipy is not installed.
_FAKE_SCIPY = {
    "scipy/__init__.py": "",
    "scipy/sparse/__init__.py": "from ._csc import csc_matrix\n",
    "scipy/sparse/_csc.py": """
        import numpy as np

        class csc_matrix(object):
            def __init__(self, dense):
                dense = np.asarray(dense)
                rows, cols = np.nonzero(dense.T)[::-1]
                order = np.lexsort((rows, cols))
                rows, cols = rows[order], cols[order]
                self.data = dense[rows, cols]
                self.indices = rows.astype(np.int32)
                self.indptr = np.searchsorted(cols, np.arange(dense.shape[1] + 1)).astype(np.int32)
                self._shape = dense.shape
                self.maxprint = 50
        """,
}


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _forget(prefixes: tuple[str, ...], placeholders_only: tuple[str, ...] = ()) -> dict[str, object]:
    """Drop modules under ``prefixes`` (and import-blocking ``None`` entries under ``placeholders_only``)."""
    gone = {
        k: m
        for k, m in sys.modules.items()
        if k.split(".")[0] in prefixes or (m is None and k.split(".")[0] in placeholders_only)
    }
    for k in gone:
        del sys.modules[k]
    return gone


def _flame_pickle_bytes(tmp_path: Path, arrays: dict[str, np.ndarray], protocol: int) -> bytes:
    """Pickle ``arrays`` the way FLAME's generic_model.pkl is laid out, with chumpy/scipy objects."""
    fake_root = tmp_path / "fake_modules"
    files = dict(_FAKE_CHUMPY)
    if not HAVE_SCIPY:
        files.update(_FAKE_SCIPY)
    _write_tree(fake_root, files)
    # With real scipy installed, keep its loaded modules and only lift the fixture's import blocks.
    prefixes = ("chumpy",) if HAVE_SCIPY else ("chumpy", "scipy")
    saved = _forget(prefixes, placeholders_only=("scipy",))
    sys.path.insert(0, str(fake_root))
    importlib.invalidate_caches()
    try:
        ch = importlib.import_module("chumpy.ch")
        reordering = importlib.import_module("chumpy.reordering")
        ch_ops = importlib.import_module("chumpy.ch_ops")
        sparse = importlib.import_module("scipy.sparse")
        flame = {
            "v_template": ch.Ch(arrays["v_template"]),
            "shapedirs": ch.Ch(arrays["shapedirs"]),
            "posedirs": ch_ops.add(ch.Ch(arrays["posedirs"]), ch.Ch(np.zeros_like(arrays["posedirs"]))),
            "J_regressor": sparse.csc_matrix(arrays["J_regressor"]),
            "weights": reordering.transpose(ch.Ch(arrays["weights"].T)),
            "kintree_table": arrays["kintree_table"],
            "f": arrays["f"],
            # Extras of real FLAME pickles, ignored by the loader (J is not even evaluable here).
            "J": ch_ops.sin(ch.Ch(np.zeros((5, 3)))),
            "bs_style": "lbs",
            "bs_type": "lrotmin",
            "joint2num": {"global": 0, "neck": 1},
            "vert_sym_idxs": np.arange(arrays["v_template"].shape[0]),
        }
        data = pickle.dumps(flame, protocol=protocol)
    finally:
        sys.path.remove(str(fake_root))
        _forget(prefixes, placeholders_only=("scipy",))
        sys.modules.update(saved)
        importlib.invalidate_caches()
    # Old pickles name numpy's pre-2.0 module path.
    return data.replace(b"numpy._core", b"numpy.core")


@pytest.fixture
def no_chumpy_no_scipy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any import of chumpy or scipy fail while the loader runs."""
    for name in ("chumpy", "chumpy.ch", "scipy", "scipy.sparse"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("protocol", [0, 2])
def test_flame_pickle_loads_without_chumpy(tmp_path: Path, protocol: int, no_chumpy_no_scipy: None) -> None:
    arrays = make_flame_arrays(n_verts=30, n_shape=6, n_expr=4, seed=21)
    # FLAME's own split: 400 columns = 300 identity + 100 expression.
    arrays["shapedirs"] = np.random.default_rng(0).normal(scale=0.01, size=(30, 3, 400))
    path = tmp_path / "generic_model.pkl"
    path.write_bytes(_flame_pickle_bytes(tmp_path, arrays, protocol))
    with pytest.raises(ImportError):
        importlib.import_module("chumpy")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no numpy.core deprecation warnings
        model = load_head_model(path, dtype=torch.float64)
    assert model.n_verts == 30 and model.n_joints == 5
    assert (model.n_shape, model.n_expr) == (300, 100)
    np.testing.assert_array_equal(model.v_template.numpy(), arrays["v_template"])
    np.testing.assert_array_equal(model.shapedirs.numpy(), arrays["shapedirs"][..., :300])
    np.testing.assert_array_equal(model.exprdirs.numpy(), arrays["shapedirs"][..., 300:])
    np.testing.assert_array_equal(model.posedirs.numpy(), arrays["posedirs"].reshape(90, 36).T)
    np.testing.assert_array_equal(model.J_regressor.numpy(), arrays["J_regressor"])
    np.testing.assert_array_equal(model.lbs_weights.numpy(), arrays["weights"])
    assert model.parents.tolist() == [-1, 0, 1, 1, 1]
    assert model.faces.dtype == torch.long
    np.testing.assert_array_equal(model.faces.numpy(), arrays["f"].astype(np.int64))
    assert model.name == "generic_model" and model.source == str(path)

    # The loaded rig agrees with the brute-force FLAME on the raw arrays (posedirs layout, etc.).
    arrays["n_shape"] = np.asarray(300)
    rng = np.random.default_rng(3)
    shape, expr, pose = rng.normal(size=300), rng.normal(size=100), rng.normal(scale=0.3, size=(5, 3))
    out = FlameRig(model)(
        shape=torch.tensor(shape[None]),
        expr=torch.tensor(expr[None]),
        rotation=torch.tensor(pose[0][None]),
        neck_pose=torch.tensor(pose[1][None]),
        jaw_pose=torch.tensor(pose[2][None]),
        eyes_pose=torch.tensor(pose[3:].reshape(1, 6)),
    )
    ref, _ = reference_flame(arrays, shape, expr, pose, np.zeros(3))
    np.testing.assert_allclose(out[0].numpy(), ref, rtol=0, atol=1e-12)

    small = load_head_model(path, n_shape=50, n_expr=10)
    assert (small.n_shape, small.n_expr, small.dtype) == (50, 10, torch.float32)
    np.testing.assert_allclose(small.exprdirs.numpy(), arrays["shapedirs"][..., 300:310], rtol=1e-6)


def test_flame_masks_pickle(tmp_path: Path, no_chumpy_no_scipy: None) -> None:
    regions = {
        "lips": np.array([3, 4, 5, 9], dtype=np.int64),
        "forehead": np.array([0, 1, 2], dtype=np.uint32),
        "eye_region": np.array([], dtype=np.int64),
    }
    path = tmp_path / "FLAME_masks.pkl"
    path.write_bytes(pickle.dumps(regions, protocol=2).replace(b"numpy._core", b"numpy.core"))
    masks = load_flame_masks(path)
    assert sorted(masks) == sorted(regions)
    for k, v in regions.items():
        assert masks[k].dtype == np.int64
        np.testing.assert_array_equal(masks[k], v)

    npz = tmp_path / "head.npz"
    save_head_model(make_head_model(n_verts=12, n_faces=5, seed=1), npz)
    model = load_head_model(npz, masks=path)
    assert model.masks["lips"].tolist() == [3, 4, 5, 9]
    with pytest.raises(L2TError, match="lips"):
        load_head_model(_tiny_npz(tmp_path), masks=path)


def _tiny_npz(tmp_path: Path) -> Path:
    out = tmp_path / "tiny.npz"
    save_head_model(make_head_model(n_verts=6, n_faces=3, seed=2), out)
    return out


def test_npz_round_trip_with_project_extensions(tmp_path: Path) -> None:
    arrays = make_flame_arrays(n_verts=20, n_shape=5, n_expr=3, seed=22)
    arrays.update(
        shape_names=np.array([f"id{i}" for i in range(5)]),
        expr_names=np.array(["jaw_open", "smile", "blink"]),
        name=np.array("l2t test head"),
        mask_lips=np.array([1, 2, 3]),
        mask_forehead=np.array([7, 8]),
        mask_empty=np.zeros(0, dtype=np.int64),
    )
    path = tmp_path / "l2t_head.npz"
    np.savez(path, **arrays)
    model = load_head_model(path)
    assert model.dtype == torch.float32
    assert (model.n_shape, model.n_expr) == (5, 3)
    assert model.shape_names == [f"id{i}" for i in range(5)]
    assert model.expr_names == ["jaw_open", "smile", "blink"]
    assert model.name == "l2t test head"
    assert {k: v.tolist() for k, v in model.masks.items()} == {
        "lips": [1, 2, 3],
        "forehead": [7, 8],
        "empty": [],
    }
    np.testing.assert_allclose(model.exprdirs.numpy(), arrays["shapedirs"][..., 5:], rtol=1e-6)

    trimmed = load_head_model(path, n_shape=2, n_expr=1, dtype=torch.float64)
    assert trimmed.shape_names == ["id0", "id1"] and trimmed.expr_names == ["jaw_open"]
    np.testing.assert_array_equal(trimmed.exprdirs.numpy(), arrays["shapedirs"][..., 5:6])

    # save_head_model -> load_head_model is lossless (float64).
    again = tmp_path / "again.npz"
    save_head_model(load_head_model(path, dtype=torch.float64), again)
    back = load_head_model(again, dtype=torch.float64)
    ref = load_head_model(path, dtype=torch.float64)
    for field in (
        "v_template",
        "shapedirs",
        "exprdirs",
        "posedirs",
        "J_regressor",
        "lbs_weights",
        "parents",
        "faces",
    ):
        assert torch.equal(getattr(back, field), getattr(ref, field)), field
    assert back.masks.keys() == ref.masks.keys() and back.expr_names == ref.expr_names
    assert back.name == ref.name

    with pytest.raises(L2TError, match="n_expr = 4"):
        load_head_model(path, n_expr=4)


def test_head_model_to_and_repr() -> None:
    model = make_head_model(dtype=torch.float64, n_verts=10, n_faces=4, seed=3)
    model.masks["lips"] = torch.tensor([1, 2])
    m32 = model.to(dtype=torch.float32)
    assert m32.v_template.dtype == torch.float32 and m32.faces.dtype == torch.long
    assert m32.masks["lips"].dtype == torch.long and model.v_template.dtype == torch.float64
    assert "V=10" in repr(m32)


def test_npz_without_n_shape(tmp_path: Path) -> None:
    arrays = make_flame_arrays(n_verts=10, n_faces=4, seed=23)
    del arrays["n_shape"]
    path = tmp_path / "no_split.npz"
    np.savez(path, **arrays)
    with pytest.raises(L2TError, match="n_shape"):
        load_head_model(path)


def test_missing_keys_are_all_named(tmp_path: Path) -> None:
    arrays = make_flame_arrays(n_verts=10, n_faces=4, seed=24)
    del arrays["posedirs"], arrays["weights"]
    path = tmp_path / "partial.npz"
    np.savez(path, **arrays)
    with pytest.raises(L2TError, match=r"FLAME model .*partial\.npz lacks: posedirs, weights$"):
        load_head_model(path)
    pkl = tmp_path / "partial.pkl"
    pkl.write_bytes(pickle.dumps({"v_template": arrays["v_template"]}, protocol=2))
    with pytest.raises(L2TError, match="lacks: shapedirs, posedirs, J_regressor, weights, kintree_table, f"):
        load_head_model(pkl)


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda a: a.update(weights=a["weights"][:-1]), "weights"),
        (lambda a: a.update(J_regressor=a["J_regressor"][:, :-1]), "J_regressor"),
        (lambda a: a.update(posedirs=a["posedirs"][..., :30]), "posedirs"),
        (lambda a: a.update(f=a["f"] + 100), "faces"),
        (lambda a: a.update(shapedirs=a["shapedirs"][:-2]), "shapedirs"),
        (lambda a: a.update(mask_lips=np.array([0, 999])), "lips"),
        (lambda a: a.update(v_template=a["v_template"] * np.nan), "NaN"),
    ],
)
def test_inconsistent_shapes(tmp_path: Path, edit, needle: str) -> None:
    arrays = make_flame_arrays(n_verts=10, n_faces=4, seed=25)
    edit(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(L2TError, match=needle) as info:
        load_head_model(path)
    assert "\n" not in str(info.value)


def test_bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(L2TError, match="not found"):
        load_head_model(tmp_path / "nope.pkl")
    with pytest.raises(L2TError, match="not a file"):
        load_head_model(tmp_path)

    text = tmp_path / "notes.pkl"
    text.write_text("this is not a pickle\n")
    with pytest.raises(L2TError, match="not a readable pickle"):
        load_head_model(text)
    fake_npz = tmp_path / "fake.npz"
    fake_npz.write_text("hello")
    with pytest.raises(L2TError, match="not a valid .npz"):
        load_head_model(fake_npz)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(L2TError, match="empty"):
        load_head_model(empty)
    npy = tmp_path / "array.npz"
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(npy)
    with pytest.raises(L2TError, match=".npy"):
        load_head_model(npy)
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(L2TError, match="dictionary"):
        load_head_model(listed)

    # Truncated pickle and npz.
    arrays = make_flame_arrays(n_verts=10, n_faces=4, seed=26)
    blob = pickle.dumps(arrays, protocol=2)
    for frac in (0.1, 0.5, 0.99):
        cut = tmp_path / f"cut{frac}.pkl"
        cut.write_bytes(blob[: int(len(blob) * frac)])
        with pytest.raises(L2TError, match="truncated"):
            load_head_model(cut)
    good = tmp_path / "good.npz"
    np.savez(good, **arrays)
    cut_npz = tmp_path / "cut.npz"
    cut_npz.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(L2TError, match="truncated"):
        load_head_model(cut_npz)

    # Unknown classes are refused by name and never instantiated or called.
    evil = tmp_path / "evil.pkl"
    marker = tmp_path / "pwned"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(L2TError, match=r"os\.system"):
        load_head_model(evil)
    assert not marker.exists()
    from collections import Counter

    odd = tmp_path / "odd.pkl"
    odd.write_bytes(pickle.dumps({"v_template": Counter()}, protocol=2))
    with pytest.raises(L2TError, match=r"collections\.Counter"):
        load_head_model(odd)

    # The built-in head, when it has not been built yet.
    import l2t_gs.rig.loader

    monkeypatch.setattr(l2t_gs.rig.loader, "asset_path", lambda *parts: tmp_path / "missing" / parts[-1])
    with pytest.raises(L2TError, match="l2t-gs head build"):
        load_head_model("builtin")


def test_load_flame_masks_errors(tmp_path: Path) -> None:
    with pytest.raises(L2TError, match="not found"):
        load_flame_masks(tmp_path / "FLAME_masks.pkl")
    bad = tmp_path / "bad_masks.pkl"
    bad.write_bytes(pickle.dumps(np.zeros(3), protocol=2))
    with pytest.raises(L2TError, match="dictionary"):
        load_flame_masks(bad)


def test_head_model_from_arrays_accepts_torch_layout() -> None:
    arrays = make_flame_arrays(n_verts=10, n_faces=4, seed=27)
    ref = head_model_from_arrays(arrays, dtype=torch.float64)
    arrays["posedirs"] = arrays["posedirs"].reshape(30, 36).T  # [P, V*3]
    arrays["parents"] = np.array([-1, 0, 1, 1, 1])
    del arrays["kintree_table"]
    alt = head_model_from_arrays(arrays, dtype=torch.float64)
    assert torch.equal(alt.posedirs, ref.posedirs) and torch.equal(alt.parents, ref.parents)


def test_pickle_cannot_reach_numpy_dtypes_module_attributes(tmp_path) -> None:
    """``numpy.dtypes`` gives only DType classes: ``__builtins__`` (or any ``_`` name) is refused, and
    nothing in the process changes (a pickle could otherwise rebind ``len``)."""
    import builtins
    import pickle

    from l2t_gs.errors import L2TError
    from l2t_gs.rig.loader import unpickle_restricted

    # GLOBAL numpy.dtypes __builtins__, then SETITEM len -> str: rebinds builtins.len if resolved
    payload = b"cnumpy.dtypes\n__builtins__\nVlen\ncbuiltins\nstr\ns."
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    before = builtins.len
    with pytest.raises(L2TError, match="unsupported object of class numpy.dtypes.__builtins__"):
        unpickle_restricted(path, "FLAME model")
    assert builtins.len is before
    ok = tmp_path / "dtype.pkl"
    ok.write_bytes(pickle.dumps(np.dtype("float32")))
    assert unpickle_restricted(ok, "FLAME model") == np.dtype("float32")
