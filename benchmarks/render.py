"""Wall seconds per second of audio for ``l2t-gs render`` (512x512, 25 fps by default): cold and warm.

    python benchmarks/render.py [--seconds 10] [--size 512] [--fps 25] [--backend auto|torch|gsplat]
                                [--model PATH] [--cold 3] [--warm 3] [--long-minutes 0] [--cli 3]

* **cold**: ``l2t-gs render`` as a new process, timed from its start to its exit (interpreter,
  imports, loading the model and avatar, compiled kernels read from numba's cache, rendering,
  encoding); the best of ``--cold`` runs. The first-ever run fills the cache and is reported apart.
* **warm**: ``render_video`` called again in this process (everything loaded and compiled); the best
  of ``--warm`` runs.

First, with ``--cli N`` (default 3), the start-up of the commands that must answer at once
(``--version``, ``info``, ``--help``, ``render --help``, ``train --help``) as new processes, best of N.

Each line has the stage split: start (a new process: interpreter and imports), setup (audio, model,
avatar), model, deform, rasterize, encode (the time the render loop waited for the encoder thread;
encoding itself overlaps with rasterizing). Where frames are rendered on several threads at once (the
compiled CPU rasterizer), deform and rasterize add up the threads' times.
Other processes on the cores slow every number down: the load average is printed with them, and the
best of several short runs is the figure to quote. With ``--long-minutes M`` it also renders M
minutes of audio to show that memory stays flat.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

STAGES = ("model", "deform", "rasterize", "encode")


def speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: voiced harmonics with a syllable-rate envelope and noise bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 8))
    env = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.1 * voiced * env + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path: Path, seconds: float) -> Path:
    with sf.SoundFile(path, "w", 16000, 1, "FLOAT") as fh:  # in blocks: an hour of float64 would be GBs
        for k, start in enumerate(np.arange(0.0, seconds, 60.0)):
            fh.write(speech_like(min(60.0, seconds - start), seed=k))
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def split(wall: float, render_wall: float, stages: dict[str, float], workers: int) -> str:
    """Stage seconds: process start and imports (cold runs), setup, then the per-frame stages (deform
    and rasterize summed over the frame workers, so that they may exceed the wall time)."""
    start = f"start {wall - render_wall:.1f}, " if wall > render_wall else ""
    per_frame = ", ".join(f"{k} {stages[k]:.1f}" for k in STAGES)
    return f"{start}setup {stages.get('setup', 0.0):.1f}, {per_frame}; {workers} frame worker(s)"


def child(args: argparse.Namespace) -> None:
    """One render in this (new) process; prints its stage seconds as JSON on the last line."""
    from l2t_gs.pipeline import RenderConfig, render_video

    cfg = RenderConfig(model=args.model, size=args.size, fps=args.fps, backend=args.backend, quiet=True)
    res = render_video(args.child, Path(args.child).with_suffix(".mp4"), cfg)
    rep = {"frames": res.frames, "audio": res.audio_seconds, "stages": res.stage_seconds, "wall": res.wall_seconds}
    print(json.dumps(rep | {"workers": res.frame_workers}))


def cold(wav: Path, args: argparse.Namespace) -> tuple[float, dict]:
    """Seconds from starting a new Python process that renders ``wav`` to its exit, and its report."""
    cmd = [sys.executable, __file__, "--child", str(wav), "--size", str(args.size), "--fps", str(args.fps),
           "--backend", args.backend] + (["--model", args.model] if args.model else [])  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - t0, json.loads(out.strip().splitlines()[-1])


#: Command lines that must answer at once (issue 16: --version < 0.5 s, info < 1.5 s, --help at once).
LIGHT_COMMANDS = (["--version"], ["info"], ["--help"], ["render", "--help"], ["train", "--help"])


def cli_startup(repeats: int) -> list[tuple[str, float]]:
    """Best wall seconds of ``python -m l2t_gs ARGS`` as a new process, for each of :data:`LIGHT_COMMANDS`."""
    rows = []
    for argv in LIGHT_COMMANDS:
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "l2t_gs", *argv], check=True, capture_output=True)
            best = min(best, time.perf_counter() - t0)
        rows.append(("l2t-gs " + " ".join(argv), best))
    return rows


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--model", default=None)
    ap.add_argument("--cold", type=int, default=3, help="new-process runs (best reported)")
    ap.add_argument("--warm", type=int, default=3, help="in-process runs after a warm-up (best reported)")
    ap.add_argument("--long-minutes", type=float, default=0.0)
    ap.add_argument("--cli", type=int, default=3, help="new-process runs of each light command (best reported)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    print(f"render benchmark: {args.size}x{args.size} @ {args.fps:g} fps, {args.seconds:g} s of audio, backend "
          f"{args.backend}, cpus {os.cpu_count()}, {load()}")  # fmt: skip
    if args.cli:
        for name, wall in cli_startup(args.cli):
            print(f"  {name:<24} {wall:5.2f} s (new process, best of {args.cli})")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        wav = write_wav(tmp / "bench.wav", args.seconds)
        if args.cold:
            wall, rep = cold(write_wav(tmp / "first.wav", 1.0), args)
            print(f"first process (fills the compile cache if empty): {wall:.1f} s for 1 s of audio")
            best = None
            for _ in range(args.cold):
                wall, rep = cold(wav, args)
                print(f"  cold run: {wall:6.2f} s wall = {wall / rep['audio']:.2f} s/s  ({load()})")
                if best is None or wall < best[0]:
                    best = (wall, rep)
            wall, rep = best
            stages = split(wall, rep["wall"], rep["stages"], rep["workers"])
            print(f"cold (new process, from its start): {wall / rep['audio']:.2f} s per audio second, "
                  f"{rep['frames']} frames in {wall:.2f} s ({stages})")  # fmt: skip
        if args.warm:
            from l2t_gs.pipeline import RenderConfig, render_video

            cfg = RenderConfig(model=args.model, size=args.size, fps=args.fps, backend=args.backend, quiet=True)
            render_video(write_wav(tmp / "warmup.wav", 1.0), tmp / "w.mp4", cfg)  # load, compile, caches
            best = None
            for _ in range(args.warm):
                res = render_video(wav, tmp / "out.mp4", cfg)
                print(
                    f"  warm run: {res.wall_seconds:6.2f} s wall = {res.seconds_per_audio_second:.2f} s/s  ({load()})"
                )
                if best is None or res.wall_seconds < best.wall_seconds:
                    best = res
            rate = best.frames * best.frame_workers / best.stage_seconds["rasterize"]
            print(f"warm (in process): {best.seconds_per_audio_second:.2f} s per audio second, {best.frames} frames "
                  f"in {best.wall_seconds:.2f} s "
                  f"({split(best.wall_seconds, best.wall_seconds, best.stage_seconds, best.frame_workers)}), "
                  f"{rate:.1f} frames/s rasterized")  # fmt: skip
            if args.long_minutes > 0:
                rss0 = peak_rss_mb()
                res = render_video(write_wav(tmp / "long.wav", args.long_minutes * 60), tmp / "long.mp4", cfg)
                peak = peak_rss_mb()
                print(f"long: {res.audio_seconds:.0f} s audio, {res.seconds_per_audio_second:.2f} s/s, "
                      f"peak RSS {peak:.0f} MB (+{peak - rss0:.0f} above the earlier runs)")  # fmt: skip
    print(f"done at {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main()
