"""Entry point of the ``l2t-gs`` console script."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from l2t_gs import __version__
from l2t_gs.cli.prog import COMMAND_HELP, PROG
from l2t_gs.cli.runner import run_command

#: Sub-commands and the modules that register them, in help order. A module is imported only when
#: its command runs (or for :func:`build_parser`): the overview (``l2t-gs --help``) is built from
#: :data:`~l2t_gs.cli.prog.COMMAND_HELP` alone, so that it and light commands never pay for torch.
COMMANDS: dict[str, str] = {
    "info": "l2t_gs.cli.info",
    "render": "l2t_gs.cli.render",
    "view": "l2t_gs.cli.view",
    "head": "l2t_gs.cli.head",
    "avatar": "l2t_gs.cli.avatar",
    "data": "l2t_gs.cli.data",
    "train": "l2t_gs.cli.train",
    "eval": "l2t_gs.cli.eval",
    "eval-motion": "l2t_gs.cli.eval_motion",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every sub-command registered."""
    return _parser(None)


def _parser(command: str | None, *, overview: bool = False) -> argparse.ArgumentParser:
    """The argument parser with every sub-command registered, or only ``command``'s; with ``overview``,
    every command as a bare entry with its one-line help (nothing imported: for ``--help`` and errors)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Speech to talking 3D Gaussian Splatting head avatars.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        if overview:
            sub.add_parser(name, help=COMMAND_HELP[name])
        elif command is None or name == command:
            importlib.import_module(module).register(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names (its first argument), when it is a known one."""
    return argv[0] if argv and argv[0] in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and return a non-zero code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # answered before any sub-command module (and torch) is imported
        print(f"{PROG} {__version__}")
        return 0
    command = _command_of(argv)
    parser = _parser(command) if command else _parser(None, overview=True)
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return run_command(func, args)


if __name__ == "__main__":
    raise SystemExit(main())
