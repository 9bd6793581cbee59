"""``l2t-gs view``: the interactive viser viewer (arguments and run: ``l2t_gs.viewer.command``)."""

from __future__ import annotations

import argparse

from l2t_gs.cli.prog import COMMAND_HELP
from l2t_gs.viewer.command import DESCRIPTION, add_arguments, run


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("view", help=COMMAND_HELP["view"], description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)
