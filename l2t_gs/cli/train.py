"""``l2t-gs train``: training commands (``audio2mesh``, ``syncnet3d``, ``lipreader``, ``ablation``).

Each trainer is a ``(name, help, add_arguments, run)`` entry of :data:`TRAINERS`; :func:`register`
builds one sub-command per entry. Options shared by all trainers (``--data``, ``--out``, ``--config``,
``--epochs``, ``--max-steps``, ``--device``, ``--seed``) are added by :func:`common_options`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Trainer:
    """A ``l2t-gs train NAME`` sub-command."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def common_options(p: argparse.ArgumentParser, recipe_help: str) -> None:
    """Options every trainer takes."""
    p.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="dataset folder (FaceFormer layout: wav/, vertices_npy/, templates.pkl)",
    )
    p.add_argument(
        "--out", required=True, metavar="RUN", help="run folder; rerunning the same command resumes from RUN/last.pt"
    )
    p.add_argument("--config", metavar="RECIPE", help=recipe_help)
    p.add_argument("--epochs", type=_positive, metavar="N", help="total epochs (overrides the recipe)")
    p.add_argument(
        "--max-steps",
        type=_non_negative,
        metavar="N",
        help="stop after this many optimizer steps in total (0: no limit)",
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="compute device (default: the recipe's, auto)")
    p.add_argument("--seed", type=_non_negative, metavar="S", help="random seed (overrides the recipe)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _audio2mesh_arguments(p: argparse.ArgumentParser) -> None:
    common_options(p, "recipe: a .toml file or a packaged name (vocaset, biwi, corpus); default: built-in defaults")


def _run_audio2mesh(args: argparse.Namespace) -> int:
    from l2t_gs.training.audio2mesh import train

    summary = train(
        args.data,
        args.out,
        args.config,
        epochs=args.epochs,
        max_steps=args.max_steps,
        device=args.device,
        seed=args.seed,
        progress=False if args.no_progress else None,
    )
    if summary["rank"] == 0:
        best = summary.get("best_val")
        shown = f"{best:.4g}" if isinstance(best, float) and best != float("inf") else "n/a"
        print(
            f"trained {summary['steps']} steps; best validation loss {shown}; model: {summary['run']}", file=sys.stderr
        )
    return 0


def _syncnet3d_arguments(p: argparse.ArgumentParser) -> None:
    from l2t_gs.training.syncnet3d import add_arguments  # a light module: heavy imports happen in run()

    add_arguments(p)


def _run_syncnet3d(args: argparse.Namespace) -> int:
    from l2t_gs.training.syncnet3d import run

    return run(args)


def _lipreader_arguments(p: argparse.ArgumentParser) -> None:
    from l2t_gs.training.lipreader import lipreader_arguments

    lipreader_arguments(p)


def _run_lipreader(args: argparse.Namespace) -> int:
    from l2t_gs.training.lipreader import run_lipreader

    return run_lipreader(args)


def _ablation_arguments(p: argparse.ArgumentParser) -> None:
    from l2t_gs.training.ablation import ablation_arguments

    ablation_arguments(p)


def _run_ablation(args: argparse.Namespace) -> int:
    from l2t_gs.training.ablation import run_ablation_cli

    return run_ablation_cli(args)


#: The ``l2t-gs train`` sub-commands, in help order.
TRAINERS: list[Trainer] = [
    Trainer(
        "audio2mesh", "train the speech -> mesh network (FaceFormer-style)", _audio2mesh_arguments, _run_audio2mesh
    ),
    Trainer(
        "syncnet3d",
        "train the SyncNet3D lip-sync expert (audio vs 3D lip motion)",
        _syncnet3d_arguments,
        _run_syncnet3d,
    ),
    Trainer(
        "lipreader",
        "train the lip reader (mouth crops rendered through an avatar -> visemes)",
        _lipreader_arguments,
        _run_lipreader,
    ),
    Trainer(
        "ablation",
        "the Learn2Talk ablation: baseline, +sync, +lip-read, full; scored on held-out voices",
        _ablation_arguments,
        _run_ablation,
    ),
]


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train networks: " + ", ".join(t.name for t in TRAINERS))
    ts = train.add_subparsers(dest="train_command", metavar="NETWORK", required=True)
    for t in TRAINERS:
        p = ts.add_parser(t.name, help=t.help, description=t.help)
        t.add_arguments(p)
        p.set_defaults(func=t.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry, e.g. for torchrun: ``python -m l2t_gs.cli.train audio2mesh --data ... --out ...``
    (the same as ``l2t-gs train ...``)."""
    from l2t_gs.cli.main import PROG
    from l2t_gs.errors import L2TError

    parser = argparse.ArgumentParser(prog=PROG)
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except L2TError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


__all__ = ["TRAINERS", "Trainer", "common_options", "main", "register"]

if __name__ == "__main__":
    raise SystemExit(main())
