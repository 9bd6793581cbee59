"""The trainers, in one registry: ``l2t-gs train NAME`` is an entry of :data:`TRAINERS`.

Each trainer module registers one :class:`Trainer` (its command-line options and what runs it) with its
one-line help::

    TRAINERS.add("syncnet3d", Trainer(add_arguments, run), help=TRAINER_HELP["syncnet3d"])

``l2t_gs.cli.train`` builds one sub-command per entry; a trainer's module (and torch) loads only when its
sub-command parses. Options shared by the network trainers
(``--data``, ``--out``, ``--config``, ``--epochs``, ``--max-steps``, ``--device``, ``--seed``,
``--no-progress``) come from :func:`common_options`. The trainer modules load on the registry's first
lookup. A new trainer = one module that registers itself, plus its
name -> module in :data:`TRAINERS`' declaration and its one-line help in :data:`TRAINER_HELP`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from l2t_gs.core.device import DEVICE_CHOICES
from l2t_gs.core.registry import Registry

__all__ = ["TRAINERS", "TRAINER_HELP", "Trainer", "common_options"]


@dataclass(frozen=True)
class Trainer:
    """A ``l2t-gs train NAME`` sub-command: ``add_arguments(parser)`` adds its options, ``run(args)`` runs
    it on the parsed arguments and returns the exit code."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: Every trainer's one-line help, by sub-command name (``train --help`` lists them without importing the
#: trainers, which load torch).
TRAINER_HELP: dict[str, str] = {
    "audio2mesh": "train the speech -> mesh network (FaceFormer-style)",
    "syncnet3d": "train the SyncNet3D lip-sync expert (audio vs 3D lip motion)",
    "lipreader": "train the lip reader (mouth crops rendered through an avatar -> visemes)",
    "ablation": "the Learn2Talk ablation: baseline, +sync, +lip-read, full; scored on held-out voices",
    "contact-head": "train a context contact head on a trained Audio2Mesh (the rest frozen)",
    "contact-threshold": "calibrate a contact head's threshold on a validation split (recall vs false closures)",
    "posevae": "train the PoseVAE head-motion generator (speech -> head pose windows)",
}

#: Every trainer, by sub-command name (declared with its module, so that the names need no import).
TRAINERS: Registry[Trainer] = Registry(
    "trainer",
    modules={
        "audio2mesh": "l2t_gs.training.audio2mesh",
        "syncnet3d": "l2t_gs.training.syncnet3d",
        "lipreader": "l2t_gs.training.lipreader",
        "ablation": "l2t_gs.training.ablation",
        "contact-head": "l2t_gs.training.contact_head",
        "contact-threshold": "l2t_gs.training.contact_threshold",
        "posevae": "l2t_gs.training.posevae",
    },
)


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
