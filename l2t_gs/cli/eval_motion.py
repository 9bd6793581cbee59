"""``l2t-gs eval-motion``: statistics of generated head motion, blinks and gaze vs reference distributions."""

from __future__ import annotations

import argparse
import json

from l2t_gs.cli.prog import COMMAND_HELP
from l2t_gs.errors import L2TError
from l2t_gs.motion.life_options import HEAD_MOTION_CHOICES


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from l2t_gs.audio.io import load_audio
    from l2t_gs.io.atomic import write_text_atomic
    from l2t_gs.training.metrics.life import evaluate_motion

    if args.head_motion == "still":
        raise L2TError("--head-motion still has no motion to evaluate")
    if args.audio:
        clips = [load_audio(a, sr=16000) for a in args.audio]
    else:
        from l2t_gs.training.posevae import synth_clips

        clips, total = [], 0.0
        seed = 10_000 + args.synth_seed
        while total < args.synth_seconds:  # held-out espeak-ng speech (sentence seed differs from training)
            clips += synth_clips(1, seed)
            seed += 1
            total += len(clips[-1]) / 16000
        clips = [np.concatenate(clips)]
    res = evaluate_motion(clips, head_motion=args.head_motion, seeds=tuple(args.seeds), fps=args.fps)
    text = json.dumps(res, indent=1)
    if args.json:
        write_text_atomic(args.json, text + "\n")
    print(text)
    return 0 if all(res["generated"]["in_reference_range"].values()) or not args.strict else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval-motion",
        help=COMMAND_HELP["eval-motion"],
        description="Generate life for speech (given files, or synthetic espeak-ng speech) with several seeds and "
        "report amplitude, velocity spectrum, prosody correlation, beat alignment, diversity and blink statistics "
        "next to the procedural reference and the published ranges (docs/life.md).",
    )
    p.add_argument("audio", nargs="*", metavar="AUDIO", help="speech files (default: synthesise --synth-seconds)")
    p.add_argument(
        "--head-motion", default="natural", choices=HEAD_MOTION_CHOICES, help="natural (default) or procedural"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--synth-seconds", type=float, default=60.0, metavar="S")
    p.add_argument("--synth-seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT.json", help="also write the results here")
    p.add_argument("--strict", action="store_true", help="exit 1 if a statistic is outside its reference range")
    p.set_defaults(func=run)
