"""``l2t-gs train``: one sub-command per entry of the trainer registry
(:data:`l2t_gs.training.trainers.TRAINERS`: ``audio2mesh``, ``syncnet3d``, ``lipreader``, ``ablation``).

Each trainer module registers its options (``add_arguments``), what runs it (``run``) and a one-line
help; :func:`register` turns them into ``l2t-gs train NAME``. :func:`main` is the standalone entry for
``torchrun``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
        p.set_defaults(func=_checked(trainer.run))


def _checked(run: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], Any]:
    """``run`` after the inputs every trainer shares are checked (a missing ``--data`` folder is an error
    before anything is created); a run folder that the failed or interrupted run created and left
    empty is removed."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> Any:
        from l2t_gs.errors import L2TError

        data = getattr(args, "data", None)
        if isinstance(data, str) and not Path(data).is_dir():
            what = "does not exist" if not Path(data).exists() else "is not a folder"
            raise L2TError(f"--data: dataset folder {data} {what}")
        out = getattr(args, "out", None)
        fresh = Path(out) if isinstance(out, str) and not Path(out).exists() else None
        try:
            return run(args)
        except BaseException:
            if fresh is not None and fresh.is_dir():
                with contextlib.suppress(OSError):
                    fresh.rmdir()  # only if still empty
            raise

    return wrapper


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry, e.g. for torchrun: ``python -m l2t_gs.cli.train audio2mesh --data ... --out ...``
    (the same as ``l2t-gs train ...``)."""
    from l2t_gs.cli.main import run_command

    parser = argparse.ArgumentParser(prog=PROG)
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return run_command(args.func, args)


__all__ = ["main", "register"]

if __name__ == "__main__":
    raise SystemExit(main())
