"""The head-motion and blink options: choices and the ``--head-motion``, ``--blinks``, ``--motion-scale``
arguments shared by ``l2t-gs render`` and ``l2t-gs view`` (light: no numpy or torch)."""

from __future__ import annotations

import argparse

__all__ = ["BLINK_CHOICES", "HEAD_MOTION_CHOICES", "add_life_arguments"]

HEAD_MOTION_CHOICES = ("still", "natural", "procedural")
BLINK_CHOICES = ("off", "on")


def add_life_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options; the defaults (natural, on) are what a demo expects: ``still`` + ``off`` renders the
    speech motion alone, exactly as before these options existed."""
    p.add_argument(
        "--head-motion", default="natural", choices=HEAD_MOTION_CHOICES,
        help="natural: speech-driven PoseVAE head motion (default); still: none; procedural: the corpus generator",
    )  # fmt: skip
    p.add_argument("--blinks", default="on", choices=BLINK_CHOICES, help="blinks, brow raises and gaze (default on)")
    p.add_argument("--motion-scale", type=float, default=1.0, metavar="X", help="scale of head motion (default 1)")
