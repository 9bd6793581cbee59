"""Rasterizer throughput: forward frames per second per backend, scene size and resolution.

Scenes are the deterministic synthetic heads of :func:`l2t_gs.render.synthetic.head_scene` (SH degree 3
by default) seen by the "three-quarter" head camera with the head spanning 60% of the frame, plus the
shipped ``default`` avatar in its neutral frame when one exists. Backends: the pure torch path
(``torch-pure``), the compiled CPU path (``cpu-fast``, needs numba), and on CUDA ``gsplat`` and the
pure path on the GPU.

    python benchmarks/raster.py            # full table
    python benchmarks/raster.py --quick    # 50k splats at 512x512 only, fewer repeats
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from l2t_gs.core.workers import cpu_threads, get_cpu_threads, set_cpu_threads
from l2t_gs.errors import L2TError
from l2t_gs.render import BACKENDS, gsplat_status, head_camera, rasterize
from l2t_gs.render.synthetic import head_scene


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_call(fn: Callable[[], Any], device: str, repeats: int, warmup: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def frames_per_core(frame: Callable[[], None], repeats: int) -> float:
    """Frames per second with one frame per core at once (each on one kernel thread), as the render
    loop draws a video: the best of ``repeats`` rounds in which every core renders two frames."""
    n = get_cpu_threads()

    def two() -> None:
        with cpu_threads(1):
            frame()
            frame()

    best = 0.0
    with ThreadPoolExecutor(n) as pool:
        for _ in range(max(repeats, 1)):
            t0 = time.perf_counter()
            for f in [pool.submit(two) for _ in range(n)]:
                f.result()
            best = max(best, 2 * n / (time.perf_counter() - t0))
    return best


def load_default_avatar() -> tuple[dict[str, Any] | None, str]:
    """Rasterizer kwargs of the shipped ``default`` avatar's neutral frame, or (None, why not)."""
    try:
        from l2t_gs.gaussians import load_avatar

        avatar = load_avatar("default")
        return avatar.splat_params(), ""
    except (ImportError, L2TError) as exc:
        return None, str(exc)


def backends_here(wanted: list[str] | None) -> list[tuple[str, str]]:
    """(backend, device) pairs to run."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = [
        (name, dev.type)
        for dev in devices
        for name in BACKENDS.choices()
        if BACKENDS.get(name).unusable(dev, torch.float32, needs_grad=False) is None
    ]
    if wanted:
        rows = [r for r in rows if r[0] in wanted]
    return rows


def scene_stats(kw: dict[str, Any], vm: torch.Tensor, K: torch.Tensor, size: int) -> str:
    """Median splat radius (px) and head coverage, to show the scene is realistic."""
    with torch.no_grad():
        _, alpha, meta = rasterize(**kw, viewmats=vm, Ks=K, width=size, height=size, backend="torch")
    radii = meta["radii"].float().mean(-1)
    return (
        f"visible {radii.numel()}, median radius {radii.median():.1f} px "
        f"(3.33 sigma), p90 {radii.quantile(0.9):.1f} px, alpha>0.5 on {100 * float((alpha > 0.5).float().mean()):.0f}%"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="50k splats at 512x512 only, 3 repeats")
    p.add_argument("--splats", type=int, nargs="+", default=[20_000, 50_000, 100_000])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--backends", nargs="+", choices=BACKENDS.choices(), default=None)
    p.add_argument("--sh-degree", type=int, default=3, choices=[0, 1, 2, 3])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch and compiled-kernel CPU threads")
    p.add_argument("--no-avatar", action="store_true", help="skip the default-avatar row")
    args = p.parse_args(argv)
    if args.quick:
        args.splats, args.sizes, args.repeats = [50_000], [512], 3
    if args.threads:
        torch.set_num_threads(args.threads)
        set_cpu_threads(args.threads)  # the compiled CPU path's kernel threads

    scenes: list[tuple[str, dict[str, Any]]] = []
    for n in args.splats:
        s = head_scene(n, seed=0, sh_degree=args.sh_degree)
        kw = dict(means=s.means, quats=s.quats, scales=s.scales, opacities=s.opacities, colors=s.sh,
                  sh_degree=args.sh_degree)  # fmt: skip
        scenes.append((f"synthetic-head {n // 1000}k", kw))
    avatar_note = ""
    if not args.no_avatar:
        kw, why = load_default_avatar()
        if kw is None:
            avatar_note = f"default avatar: skipped ({why})"
        else:
            scenes.append((f"default avatar {kw['means'].shape[0] // 1000}k", kw))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; gsplat: {gsplat_status()[1]}")
    print(f"{'scene':<24} {'size':>9} {'backend':<11} {'device':<6} {'ms/frame':>9} {'fps':>7} {'best fps':>9} "
          f"{'per core':>9}")  # fmt: skip
    print("-" * 91)
    for name, kw in scenes:
        for size in args.sizes:
            vm, K = head_camera("three-quarter", kw["means"].detach().cpu(), size, size, fill=0.6)
            print(f"  [{name} @ {size}: {scene_stats(kw, vm, K, size)}]")
            for backend, device in backends_here(args.backends):
                dkw = {k: v.to(device) if torch.is_tensor(v) else v for k, v in kw.items()}
                dvm, dK = vm.to(device), K.to(device)

                def frame(dkw=dkw, dvm=dvm, dK=dK, size=size, backend=backend) -> None:
                    with torch.no_grad():
                        rasterize(**dkw, viewmats=dvm, Ks=dK, width=size, height=size, backend=backend)

                times = time_call(frame, device, args.repeats, warmup=1)
                ms = 1000 * statistics.median(times)
                best = 1.0 / min(times)
                cols = f"{name:<24} {size:>4}x{size:<4} {backend:<11} {device:<6}"
                line = f"{cols} {ms:>9.1f} {1000 / ms:>7.1f} {best:>9.1f}"
                if backend == "cpu-fast" and get_cpu_threads() > 1:
                    line += f" {frames_per_core(frame, args.repeats):>9.1f}"
                print(line)
    if avatar_note:
        print(avatar_note)
    print("(ms/frame and fps: median of the timed repeats; best fps: fastest repeat; per core: best fps with one "
          "frame per core at once, as `l2t-gs render` draws videos; forward only, no gradient)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
