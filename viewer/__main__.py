"""``python -m l2t_gs.viewer [options]``: the same as ``l2t-gs view [options]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from l2t_gs.errors import L2TError


def main(argv: Sequence[str] | None = None) -> int:
    from l2t_gs.cli import view

    parser = argparse.ArgumentParser(prog="l2t-gs")
    view.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["view", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except L2TError as exc:
        print(f"l2t-gs: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("l2t-gs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
