"""``l2t-gs train posevae``: train the PoseVAE on speech with its procedural head-motion track.

Speech: every ``.wav`` under ``--data`` (a corpus folder, e.g. from ``l2t-gs data synth``), or, without
``--data``, ``--clips`` clips freshly synthesised with espeak-ng (3-5 generated sentences each, joined by
0.2-0.9 s pauses, with random voice, rate and pitch). Each clip gets ``--tracks`` head-motion tracks from
:func:`l2t_gs.motion.head_motion.procedural_head_motion` (different random parts, same prosodic coupling),
cut into random windows. Loss: MSE of the normalised pose window + 4 x MSE of its frame-to-frame
velocity + 16 x MSE of its angular speed (the norm of the rotation velocity: direction-free, so the
loudness-driven speed is learnt even where the direction is not predictable) + beta KL (beta ramps
0 -> ``--beta`` over the first third). Writes ``OUT/posevae.pt`` and
``OUT/train.json``::

    l2t-gs train posevae --out runs/posevae --clips 160 --max-steps 1500 --seed 0  # the shipped model
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2t_gs.audio.io import load_audio
from l2t_gs.audio.prosody import prosody
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import write_text_atomic
from l2t_gs.models.posevae import PoseVAE, PoseVAEConfig, pose_features
from l2t_gs.motion.head_motion import procedural_head_motion
from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS, Trainer

FPS = 25.0
VOICES = ("en-us", "en", "en-gb-x-rp", "en-us+adam", "en-us+Annie", "en-us+david", "en-us+belinda", "en-029")


def synth_clips(n: int, seed: int) -> list[np.ndarray]:
    """``n`` clips of espeak-ng speech (16 kHz float32), deterministic for ``seed``."""
    from l2t_gs.speech.segments import synthesize
    from l2t_gs.training.data.sentences import generate_sentences

    rng = np.random.default_rng(seed)
    sentences = generate_sentences(n * 5, seed=seed + 1000)
    clips, k = [], 0
    for _ in range(n):
        voice = str(rng.choice(VOICES))
        rate = float(rng.uniform(0.85, 1.2))
        pitch = float(rng.integers(30, 71))
        parts = []
        for _ in range(int(rng.integers(3, 6))):
            audio, _ = synthesize(sentences[k % len(sentences)], "espeak", voice, rate=rate, pitch=pitch)
            k += 1
            parts += [audio, np.zeros(int(rng.uniform(0.2, 0.9) * 16000), np.float32)]
        clips.append(np.concatenate([np.zeros(int(0.3 * 16000), np.float32)] + parts))
    return clips


def wav_clips(data: Path) -> list[np.ndarray]:
    files = sorted(data.rglob("*.wav"))
    if not files:
        raise L2TError(f"no .wav files under {data}")
    return [load_audio(f, sr=16000) for f in files]


def build_examples(clips: list[np.ndarray], tracks: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(features [T, F], poses [tracks, T, 6]) per clip."""
    feats, poses = [], []
    for i, audio in enumerate(clips):
        n = int(round(len(audio) / 16000 * FPS))
        p = prosody(audio, FPS, n)
        feats.append(pose_features(audio, n, FPS, p))
        poses.append(np.stack([procedural_head_motion(p, np.random.default_rng([seed, i, k])) for k in range(tracks)]))
    return feats, poses


def _ang_speed(x: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Angular speed [B, W-1] (rotation units of the normalised pose's mean rotation SD per frame) of
    normalised pose windows [B, W, 6]."""
    rot = x[..., :3] * (std[:3] / std[:3].mean())
    return (rot.diff(dim=1).square().sum(-1) + 1e-8).sqrt()


def train(
    out: Path,
    clips: list[np.ndarray],
    *,
    tracks: int = 4,
    steps: int = 2000,
    batch: int = 64,
    lr: float = 2e-3,
    beta: float = 0.02,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and save ``out/posevae.pt``; returns the training summary."""
    torch.manual_seed(seed)
    cfg = PoseVAEConfig()
    t0 = time.perf_counter()
    feats, poses = build_examples(clips, tracks, seed)
    keep = [i for i, f in enumerate(feats) if f.shape[0] >= cfg.window]
    if not keep:
        raise L2TError(f"every clip is shorter than a PoseVAE window ({cfg.window / FPS:.1f} s)")
    allp = np.concatenate([poses[i].reshape(-1, 6) for i in keep])
    mean, std = allp.mean(0), allp.std(0) + 1e-6
    model = PoseVAE(cfg)
    model.pose_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    model.pose_std.copy_(torch.as_tensor(std, dtype=torch.float32))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(seed)
    w = cfg.window
    lengths = np.array([feats[i].shape[0] for i in keep], float)
    prob = (lengths - w + 1) / (lengths - w + 1).sum()
    log = []
    for step in range(steps):
        ci = rng.choice(len(keep), size=batch, p=prob)
        fb, pb = [], []
        for c in ci:
            i = keep[c]
            s = int(rng.integers(0, feats[i].shape[0] - w + 1))
            fb.append(feats[i][s : s + w])
            pb.append(poses[i][int(rng.integers(0, tracks)), s : s + w])
        f = torch.as_tensor(np.stack(fb))
        x = (torch.as_tensor(np.stack(pb), dtype=torch.float32) - model.pose_mean) / model.pose_std
        rec, mu, logvar = model(f, x)
        mse = (rec - x).square().mean()
        vel = (rec.diff(dim=1) - x.diff(dim=1)).square().mean()
        # angular speed profile (direction-free): the loudness-driven speed must survive an uncertain direction
        speed = (_ang_speed(rec, model.pose_std) - _ang_speed(x, model.pose_std)).square().mean()
        kl = (-0.5 * (1 + logvar - mu.square() - logvar.exp())).sum(1).mean()
        b = beta * min(1.0, step / max(1, steps // 3))
        loss = mse + 4.0 * vel + 16.0 * speed + b * kl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            terms = (("loss", loss), ("mse", mse), ("vel", vel), ("speed", speed), ("kl", kl))
            row = {"step": step, **{k: float(v.detach()) for k, v in terms}}
            log.append(row)
            if progress:
                print(json.dumps(row), file=sys.stderr, flush=True)
    summary = {
        "clips": len(keep),
        "tracks": tracks,
        "steps": steps,
        "batch": batch,
        "seed": seed,
        "seconds_of_audio": float(sum(len(clips[i]) for i in keep) / 16000),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "final": log[-1],
    }
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save(out / "posevae.pt", train=summary)
    write_text_atomic(out / "train.json", json.dumps({**summary, "log": log}, indent=1))
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="RUN", help="run folder: writes RUN/posevae.pt and RUN/train.json")
    p.add_argument("--data", metavar="DIR", help="speech: every .wav under DIR (default: synthesise with espeak-ng)")
    p.add_argument("--clips", type=int, default=160, metavar="N", help="clips to synthesise without --data (160)")
    p.add_argument("--tracks", type=int, default=4, metavar="K", help="head-motion tracks per clip (4)")
    p.add_argument("--max-steps", type=int, default=2000, metavar="N", help="optimizer steps (2000)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.clips < 1 or args.tracks < 1 or args.max_steps < 1 or args.batch < 1:
        raise L2TError("--clips, --tracks, --max-steps and --batch must be positive")
    clips = wav_clips(Path(args.data)) if args.data else synth_clips(args.clips, args.seed)
    s = train(
        Path(args.out), clips, tracks=args.tracks, steps=args.max_steps, batch=args.batch, seed=args.seed,
        progress=not args.no_progress,
    )  # fmt: skip
    print(f"wrote {Path(args.out) / 'posevae.pt'} ({s['clips']} clips, {s['wall_seconds']} s)", file=sys.stderr)
    return 0


TRAINERS.add("posevae", Trainer(add_arguments, run), help=TRAINER_HELP["posevae"])
