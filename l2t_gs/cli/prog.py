"""The program name of the command line (``l2t-gs``), shared by ``l2t_gs.cli.main`` and the standalone
``python -m l2t_gs.cli.train`` entry without one importing the other."""

from __future__ import annotations

PROG = "l2t-gs"
