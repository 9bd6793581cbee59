"""Entry point of the ``l2t-gs`` console script."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from l2t_gs import __version__
from l2t_gs.cli.prog import PROG
from l2t_gs.cli.runner import run_command


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    from l2t_gs.cli import avatar, data, eval_motion, head, info, render, train, view
    from l2t_gs.cli import eval as eval_cmd  # 'eval' would shadow the builtin

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Speech to talking 3D Gaussian Splatting head avatars.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (info, render, view, head, avatar, data, train, eval_cmd, eval_motion):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and return a non-zero code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return run_command(func, args)


if __name__ == "__main__":
    raise SystemExit(main())
