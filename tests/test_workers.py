"""Kernel threads (l2t_gs.core.workers) and what rides on them: chunked kernels give the same
numbers on any thread count, concurrent callers do not disturb each other, and the render loop's
frame workers yield exactly the frames of the one-frame-at-a-time loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.core import workers
from l2t_gs.core.probe import usable_cpus
from l2t_gs.render.backend_cpu import fast_cpu_available

needs_numba = pytest.mark.skipif(not fast_cpu_available(), reason="no numba")


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("n_items", [0, 1, 7, 1000])
def test_run_chunks_covers_every_item_once(threads, n_items):
    seen = np.zeros(n_items, dtype=np.int64)
    calls = []

    def fn(w, k):
        calls.append((w, k))
        seen[n_items * w // k : n_items * (w + 1) // k] += 1

    with workers.cpu_threads(threads):
        workers.run_chunks(fn, n_items, min_per_worker=2)
    assert (seen == 1).all()
    k = calls[0][1]
    assert k == max(min(threads, n_items // 2), 1)
    assert sorted(calls) == [(w, k) for w in range(k)]


def test_thread_count_is_per_thread_and_restored():
    workers.set_cpu_threads(3)
    try:
        assert workers.get_cpu_threads() == 3
        got = {}
        with workers.cpu_threads(1):
            assert workers.get_cpu_threads() == 1
            t = threading.Thread(target=lambda: got.setdefault("other", workers.get_cpu_threads()))
            t.start()
            t.join()
        assert got["other"] == 3  # another thread keeps the process default
        assert workers.get_cpu_threads() == 3
    finally:
        workers.set_cpu_threads(None)
    assert workers.get_cpu_threads() == usable_cpus()
    with pytest.raises(ValueError):
        workers.set_cpu_threads(0)


def test_a_failing_chunk_raises_in_the_caller():
    def fn(w, k):
        if w == k - 1:
            raise RuntimeError("chunk failed")

    with workers.cpu_threads(2), pytest.raises(RuntimeError, match="chunk failed"):
        workers.run_chunks(fn, 10)


def _scene(n=20000, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 0.08 * torch.randn(n, 3, generator=g)
    means[:, 2] += 0.6
    quats = torch.randn(n, 4, generator=g)
    scales = 0.004 * torch.exp(0.4 * torch.randn(n, 3, generator=g))
    opac = torch.rand(n, generator=g)
    rgb = torch.rand(n, 3, generator=g)
    vm = torch.eye(4)[None]
    K = torch.tensor([[[300.0, 0, 96.0], [0, 300.0, 80.0], [0, 0, 1]]])
    return dict(means=means, quats=quats, scales=scales, opacities=opac, colors=rgb, viewmats=vm, Ks=K)


@needs_numba
def test_cpu_rasterizer_is_bit_identical_on_any_thread_count():
    from l2t_gs.render import rasterize

    s = _scene()
    out = []
    for threads in (1, 2, 4):
        with workers.cpu_threads(threads), torch.no_grad():
            img, alpha, _ = rasterize(**s, width=192, height=160, backend="cpu-fast")
        out.append((img, alpha))
    assert float(out[0][1].mean()) > 0.2  # a real scene, not an empty frame
    for img, alpha in out[1:]:
        assert torch.equal(img, out[0][0]) and torch.equal(alpha, out[0][1])


@needs_numba
def test_concurrent_renders_equal_serial_ones():
    from l2t_gs.render import rasterize

    scenes = [_scene(seed=k) for k in range(4)]

    def draw(s):
        with torch.no_grad():
            return rasterize(**s, width=192, height=160, backend="cpu-fast")[0]

    serial = [draw(s) for s in scenes]
    got: dict[int, torch.Tensor] = {}

    def worker(k):
        with workers.cpu_threads(2):  # each caller also splits its own kernels
            for _ in range(2):
                got[k] = draw(scenes[k])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert torch.equal(got[k], serial[k])


@needs_numba
def test_deformation_is_identical_on_any_thread_count():
    from l2t_gs.gaussians import load_avatar
    from l2t_gs.gaussians.deform_fast import deform_one

    av = load_avatar("default")
    verts = av.neutral_vertices() + 0.002 * torch.randn(av.n_verts, 3, generator=torch.Generator().manual_seed(1))
    local = (av.means, av.log_scales, av.quats)
    with workers.cpu_threads(1):
        one = deform_one(verts, av.faces, av.binding, *local)
    with workers.cpu_threads(2):
        two = deform_one(verts, av.faces, av.binding, *local)
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


@needs_numba
def test_frame_workers_yield_the_serial_frames_in_order(tmp_path, monkeypatch):
    from l2t_gs import pipeline

    sr = 16000
    t = np.arange(int(0.8 * sr)) / sr
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.2 * np.sin(2 * np.pi * 170 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)), sr)
    cfg = pipeline.RenderConfig(size=96, head_motion="procedural", blinks="on", quiet=True)
    with workers.cpu_threads(3):
        assert pipeline.frame_workers("auto", torch.device("cpu")) == 3
        parallel = list(pipeline.render_frames(wav, cfg))
    with workers.cpu_threads(1):
        assert pipeline.frame_workers("auto", torch.device("cpu")) == 1
        serial = list(pipeline.render_frames(wav, cfg))
    assert len(serial) == 20 and len(parallel) == 20
    assert len({f.tobytes() for f in serial}) > 5  # the frames move
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)
    assert pipeline.frame_workers("torch-pure", torch.device("cpu")) == 1


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_pool():
    import os

    def fn(w, k):
        pass

    with workers.cpu_threads(2):
        workers.run_chunks(fn, 10)  # the parent's pool exists and has gone idle
        pid = os.fork()
        if pid == 0:  # child: the parent's pool threads do not exist here; this must not hang
            code = 1
            try:
                out = np.zeros(10)

                def fill(w, k):
                    out[10 * w // k : 10 * (w + 1) // k] = 1

                workers.run_chunks(fill, 10)
                code = 0 if out.all() else 1
            finally:
                os._exit(code)
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("run_chunks hung in a forked child")
