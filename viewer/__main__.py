"""``python -m l2t_gs.viewer [options]``: the same as ``l2t-gs view [options]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from l2t_gs.errors import L2TError

from .command import DESCRIPTION, add_arguments, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2t-gs view", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except L2TError as exc:
        print(f"l2t-gs: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("l2t-gs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
