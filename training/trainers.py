"""The trainers, in one registry: ``l2t-gs train NAME`` is an entry of :data:`TRAINERS`.

Each trainer module registers one :class:`Trainer` (its command-line options and what runs it) with a
one-line help::

    TRAINERS.add("syncnet3d", Trainer(add_arguments, run), help="train the SyncNet3D lip-sync expert")

``l2t_gs.cli.train`` builds one sub-command per entry. Options shared by the network trainers
(``--data``, ``--out``, ``--config``, ``--epochs``, ``--max-steps``, ``--device``, ``--seed``,
``--no-progress``) come from :func:`common_options`. The trainer modules load on the registry's first
lookup. A new trainer = one module that registers itself plus its
name in the ``modules`` tuple of :data:`TRAINERS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from l2t_gs.core.device import DEVICE_CHOICES
from l2t_gs.core.registry import Registry

__all__ = ["TRAINERS", "Trainer", "common_options", "trainer_names"]


@dataclass(frozen=True)
class Trainer:
    """A ``l2t-gs train NAME`` sub-command: ``add_arguments(parser)`` adds its options, ``run(args)`` runs
    it on the parsed arguments and returns the exit code."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: Every trainer, by sub-command name.
TRAINERS: Registry[Trainer] = Registry(
    "trainer",
    modules=(
        "l2t_gs.training.audio2mesh",
        "l2t_gs.training.syncnet3d",
        "l2t_gs.training.lipreader",
        "l2t_gs.training.ablation",
        "l2t_gs.training.contact_threshold",
        "l2t_gs.training.posevae",
    ),
)


def trainer_names() -> tuple[str, ...]:
    """The registered trainers in the order of :data:`TRAINERS`' modules (whatever order they were imported
    in), then any others in registration order."""
    names = TRAINERS.choices()

    def rank(name: str) -> int:
        module = getattr(TRAINERS.get(name).run, "__module__", "")
        return TRAINERS.modules.index(module) if module in TRAINERS.modules else len(TRAINERS.modules)

    return tuple(sorted(names, key=rank))


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low`` (a clear message otherwise)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        return v

    return parse


_positive, _non_negative = _int_at_least(1), _int_at_least(0)


def common_options(p: argparse.ArgumentParser, recipe_help: str) -> None:
    """Options every network trainer takes (``recipe_help`` describes its ``--config``)."""
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
    p.add_argument("--device", choices=list(DEVICE_CHOICES), help="compute device (default: the recipe's, auto)")
    p.add_argument("--seed", type=_non_negative, metavar="S", help="random seed (overrides the recipe)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
