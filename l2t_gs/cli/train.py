"""``l2t-gs train``: one sub-command per entry of the trainer registry
(:data:`l2t_gs.training.trainers.TRAINERS`: ``audio2mesh``, ``syncnet3d``, ``lipreader``, ``ablation``).

Each trainer module registers its options (``add_arguments``), what runs it (``run``) and a one-line
help; :func:`register` turns them into ``l2t-gs train NAME``. :func:`main` is the standalone entry for
``torchrun``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from l2t_gs.cli.prog import COMMAND_HELP, PROG


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command group, one sub-command per registered trainer, to ``sub``."""
    from l2t_gs.training.trainers import TRAINERS, trainer_names

    names = trainer_names()
    train = sub.add_parser("train", help=COMMAND_HELP["train"], description="Train networks: " + ", ".join(names) + ".")
    ts = train.add_subparsers(dest="train_command", metavar="NETWORK", required=True)
    for name in names:
        trainer, text = TRAINERS.get(name), TRAINERS.help(name)
        p = ts.add_parser(name, help=text, description=text)
        trainer.add_arguments(p)
        p.set_defaults(func=trainer.run, guard=_run_folder_guard)


@contextlib.contextmanager
def _run_folder_guard(args: argparse.Namespace) -> Iterator[None]:
    """Around a trainer's ``run``: the inputs every trainer shares are checked first (a missing ``--data``
    folder is an error before anything is created), and a run folder that the failed or interrupted run
    created and left empty is removed."""
    from l2t_gs.errors import L2TError

    data = getattr(args, "data", None)
    if isinstance(data, str) and not Path(data).is_dir():
        what = "does not exist" if not Path(data).exists() else "is not a folder"
        raise L2TError(f"--data: dataset folder {data} {what}")
    out = getattr(args, "out", None)
    fresh = Path(out) if isinstance(out, str) and not Path(out).exists() else None
    try:
        yield
    except BaseException:
        if fresh is not None and fresh.is_dir():
            with contextlib.suppress(OSError):
                fresh.rmdir()  # only if still empty
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry, e.g. for torchrun: ``python -m l2t_gs.cli.train audio2mesh --data ... --out ...``
    (the same as ``l2t-gs train ...``)."""
    from l2t_gs.cli.runner import run_command

    parser = argparse.ArgumentParser(prog=PROG)
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    return run_command(args.func, args)


__all__ = ["main", "register"]

if __name__ == "__main__":
    raise SystemExit(main())
