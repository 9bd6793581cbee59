"""cached_njit: kernels still compile (and cache where they can) when numba finds nowhere to cache."""

from __future__ import annotations

import pytest

from l2t_gs.core import numba_support

numba = pytest.importorskip("numba")


def _add_one(x):
    return x + 1


@pytest.fixture
def no_cache_dir(monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    return monkeypatch


def _refusing(real, refuse):
    """numba.njit that refuses to cache the way numba does when no locator is writable."""

    def njit(**options):
        if options.get("cache") and refuse(options):
            raise RuntimeError("cannot cache function '_add_one': no locator available for file 'x.py'")
        return real(**options)

    return njit


def test_falls_back_to_a_private_cache_dir(no_cache_dir, tmp_path):
    no_cache_dir.setattr(numba_support, "fallback_cache_dir", lambda: tmp_path / "cache")
    no_cache_dir.setattr(numba_support, "_njit", _refusing(numba.njit, lambda o: not numba.config.CACHE_DIR))
    f = numba_support.cached_njit()(_add_one)
    assert numba.config.CACHE_DIR == str(tmp_path / "cache")
    assert f(41) == 42
    assert f._cache is not None and "cache" in str(f._cache._cache_path)


def test_compiles_without_a_cache_when_nothing_is_writable(no_cache_dir):
    no_cache_dir.setattr(numba_support, "_njit", _refusing(numba.njit, lambda o: True))
    f = numba_support.cached_njit()(_add_one)
    assert f(1) == 2


def test_other_errors_are_not_swallowed(no_cache_dir):
    def broken(**options):
        raise RuntimeError("something else")

    no_cache_dir.setattr(numba_support, "_njit", broken)
    with pytest.raises(RuntimeError, match="something else"):
        numba_support.cached_njit()(_add_one)
