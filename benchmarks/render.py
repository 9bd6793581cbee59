"""Wall seconds per second of audio for ``l2t-gs render`` (512x512, 25 fps by default).

    python benchmarks/render.py [--seconds 10] [--size 512] [--fps 25] [--backend auto|torch|gsplat]
                                [--model PATH] [--long-minutes 0]

Prints the stage split (model, deform, rasterize, encode) and peak resident memory. With
``--long-minutes M`` it also renders M minutes of audio to show that memory stays flat.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from l2t_gs.pipeline import RenderConfig, render_video


def speech_like(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: voiced harmonics with a syllable-rate envelope and noise bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 8))
    env = np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.1 * voiced * env + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(seconds: float, args: argparse.Namespace, tmp: Path) -> None:
    wav = tmp / f"bench_{seconds:g}.wav"
    with sf.SoundFile(wav, "w", 16000, 1, "FLOAT") as fh:  # in blocks: an hour of float64 would be GBs
        for k, start in enumerate(np.arange(0.0, seconds, 60.0)):
            fh.write(speech_like(min(60.0, seconds - start), seed=k))
    cfg = RenderConfig(model=args.model, size=args.size, fps=args.fps, backend=args.backend, quiet=True)
    rss0 = peak_rss_mb()  # peak so far (earlier runs included): "+N" is what this run adds above it
    res = render_video(wav, tmp / "out.mp4", cfg)
    st = res.stage_seconds
    print(
        f"{seconds:8.1f} s audio  {res.frames:6d} frames  {res.wall_seconds:8.1f} s wall  "
        f"{res.seconds_per_audio_second:6.2f} s/s  "
        f"(model {st['model']:.1f}, deform {st['deform']:.1f}, rasterize {st['rasterize']:.1f}, "
        f"encode {st['encode']:.1f})  peak RSS {peak_rss_mb():.0f} MB (+{peak_rss_mb() - rss0:.0f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--model", default=None)
    ap.add_argument("--long-minutes", type=float, default=0.0)
    args = ap.parse_args()
    print(f"render benchmark: {args.size}x{args.size} @ {args.fps} fps, backend {args.backend}, "
          f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run(1.0, args, tmp)  # warm-up (numba compile, model load)
        for s in args.seconds:
            run(s, args, tmp)
        if args.long_minutes > 0:
            run(args.long_minutes * 60, args, tmp)
    print(f"done at {time.strftime('%H:%M:%S')}")


if __name__ == "__main__":
    main()
