"""``l2t-gs train``: one sub-command per entry of the trainer registry
(:data:`l2t_gs.training.trainers.TRAINERS`: ``audio2mesh``, ``syncnet3d``, ``lipreader``, ``ablation``).

Each trainer module registers its options (``add_arguments``), what runs it (``run``) and a one-line
help; :func:`register` turns them into ``l2t-gs train NAME``. :func:`main` is the standalone entry for
``torchrun``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from l2t_gs.cli.prog import PROG


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command group, one sub-command per registered trainer, to ``sub``."""
    from l2t_gs.training.trainers import TRAINERS, trainer_names

    names = trainer_names()
    train = sub.add_parser("train", help="train networks: " + ", ".join(names))
    ts = train.add_subparsers(dest="train_command", metavar="NETWORK", required=True)
    for name in names:
        trainer, text = TRAINERS.get(name), TRAINERS.help(name)
        p = ts.add_parser(name, help=text, description=text)
        trainer.add_arguments(p)
        p.set_defaults(func=trainer.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry, e.g. for torchrun: ``python -m l2t_gs.cli.train audio2mesh --data ... --out ...``
    (the same as ``l2t-gs train ...``)."""
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


__all__ = ["main", "register"]

if __name__ == "__main__":
    raise SystemExit(main())
