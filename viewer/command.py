"""``l2t-gs view``: its arguments and what it runs. ``l2t_gs.cli.view`` registers them as the ``view`` subcommand;
``python -m l2t_gs.viewer`` (:mod:`l2t_gs.viewer.__main__`) runs them on their own.

Light to import (``l2t-gs --help`` loads it): viser, torch and the viewer itself load only in :func:`run`.
"""

from __future__ import annotations

import argparse
import importlib.util

from l2t_gs.errors import L2TError
from l2t_gs.motion.life_options import add_life_arguments

DESCRIPTION = (
    "Serve a viser page that shows an avatar as Gaussian splats and plays Audio2Mesh motion "
    "for an audio file (given here or uploaded in the page), with playback controls, pose sliders, "
    "camera presets, a mesh wireframe and MP4 rendering. Stop with Ctrl-C or SIGTERM."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``l2t-gs view``."""
    p.add_argument(
        "--avatar", default="default", metavar="NAME_OR_DIR", help="avatar name or folder (default: default)"
    )
    p.add_argument("--audio", metavar="FILE", help="speech to animate at start (wav, flac, ogg, mp3, m4a)")
    p.add_argument("--model", metavar="PATH", help="Audio2Mesh checkpoint or run dir (default: the shipped model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument(
        "--port", type=int, default=8080, help="port (default 8080; the next free one if taken, said on stderr)"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=50.0, metavar="MB", help="largest accepted upload (default 50)"
    )
    p.add_argument(
        "--no-token",
        action="store_true",
        help="serve without the secret token in the URL (the Host and Origin checks stay; see README)",
    )
    add_life_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled head motion, blinks and gaze (default 0)")


def run(args: argparse.Namespace) -> int:
    """Serve the viewer for parsed ``args`` until Ctrl-C or SIGTERM; user errors raise :class:`L2TError`."""
    if importlib.util.find_spec("viser") is None:
        raise L2TError("the viewer needs viser: pip install viser==1.1.1")
    if not 1 <= args.port <= 65535:
        raise L2TError(f"--port must be in 1..65535, got {args.port}")
    if not 1 <= args.max_upload_mb <= 1024:
        raise L2TError(f"--max-upload-mb must be in 1..1024, got {args.max_upload_mb}")
    from .access import choose_port

    choose_port(args.host, args.port)  # a bad --host or no free port: one line now, before loading anything
    # viser is an optional dependency: the viewer (which imports it) loads only once it is known to be there
    from .app import AvatarViewer, ViewerOptions

    viewer = AvatarViewer(
        ViewerOptions(
            avatar=args.avatar,
            audio=args.audio,
            model=args.model,
            host=args.host,
            port=args.port,
            max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
            token=not args.no_token,
            head_motion=args.head_motion,
            blinks=args.blinks,
            motion_scale=args.motion_scale,
            seed=args.seed,
        )
    )
    try:
        url = viewer.start()
        print(f"l2t-gs view: serving avatar '{viewer.avatar.name}' at {url} (Ctrl-C to stop)", flush=True)
        viewer.serve_forever()
    finally:
        viewer.stop()
    return 0
