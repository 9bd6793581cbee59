"""``l2t-gs train``: one sub-command per entry of the trainer registry
(:data:`l2t_gs.training.trainers.TRAINERS`: ``audio2mesh``, ``syncnet3d``, ``lipreader``, ``ablation``,
``contact-head``, ``contact-threshold``, ``posevae``).

Each trainer module registers its options (``add_arguments``) and what runs it (``run``);
:func:`register` turns them into ``l2t-gs train NAME``, listing the declared names and
:data:`~l2t_gs.training.trainers.TRAINER_HELP` without importing a trainer until its sub-command parses.
:func:`main` is the standalone entry for ``torchrun``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from l2t_gs.cli.prog import COMMAND_HELP, PROG


class _TrainerParser(argparse.ArgumentParser):
    """The parser of ``train NAME``: the trainer's options (and its module, which imports torch) are added
    when this parser first parses or formats its help, so that ``train --help`` lists the trainers from
    :data:`~l2t_gs.training.trainers.TRAINER_HELP` without importing any."""

    trainer = ""  # set by register()
    _loaded = False

    def _load(self) -> None:
        if self.trainer and not self._loaded:
            from l2t_gs.training.trainers import TRAINERS

            self._loaded = True
            entry = TRAINERS.get(self.trainer)
            entry.add_arguments(self)
            self.set_defaults(func=entry.run, guard=_run_folder_guard)

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's signature
        self._load()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._load()
        return super().format_help()


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command group, one sub-command per registered trainer, to ``sub``."""
    from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS

    names = TRAINERS.names()
    train = sub.add_parser("train", help=COMMAND_HELP["train"], description="Train networks: " + ", ".join(names) + ".")
    ts = train.add_subparsers(dest="train_command", metavar="NETWORK", required=True, parser_class=_TrainerParser)
    for name in names:
        text = TRAINER_HELP.get(name) or TRAINERS.help(name)
        p = ts.add_parser(name, help=text, description=text)
        p.trainer = name


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
