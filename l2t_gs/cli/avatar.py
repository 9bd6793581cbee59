"""``l2t-gs avatar``: export a frame as a plain 3DGS PLY, import GaussianAvatars exports."""

from __future__ import annotations

import argparse
import sys


def run_export_ply(args: argparse.Namespace) -> int:
    from l2t_gs.gaussians.avatar_io import load_avatar, load_frame_params
    from l2t_gs.gaussians.export import export_world_ply

    avatar = load_avatar(args.avatar)
    if args.frame_params is not None:
        vertices = avatar.vertices_from_params(load_frame_params(args.frame_params, args.frame, avatar))[0]
        what = f"frame {args.frame} of {args.frame_params}"
    else:
        vertices = avatar.neutral_vertices()
        what = "neutral frame"
    ply = export_world_ply(avatar, args.out, vertices)
    print(f"wrote {args.out}: {ply.num_splats} splats, SH degree {ply.sh_degree}, {what} of '{avatar.name}'")
    return 0


def run_import_ga(args: argparse.Namespace) -> int:
    from l2t_gs.gaussians.avatar_io import import_gaussian_avatars

    avatar = import_gaussian_avatars(
        args.export_dir,
        args.flame_model,
        args.out,
        frame=args.frame,
        drop_teeth=args.drop_teeth,
        name=args.name,
    )
    print(f"wrote {args.out}: avatar '{avatar.name}' with {avatar.num_splats} splats ({avatar.notes})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("avatar", help="avatar tools: export a frame as a 3DGS PLY, import GaussianAvatars")
    avatar_sub = p.add_subparsers(dest="avatar_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda _args: (p.print_help(sys.stderr), 2)[1])

    e = avatar_sub.add_parser(
        "export-ply",
        help="write one frame as a plain world-space 3DGS PLY (for generic splat viewers)",
        description="Write one frame of an avatar as a world-space INRIA 3DGS PLY without binding.",
    )
    e.add_argument(
        "--avatar", required=True, metavar="NAME_OR_DIR", help="shipped avatar name or avatar folder"
    )
    e.add_argument("--out", required=True, metavar="FILE.ply", help="output PLY file")
    e.add_argument(
        "--frame-params",
        metavar="FILE.npz",
        help="rig parameters (flame_param.npz layout) to pose the avatar with; default: its neutral frame",
    )
    e.add_argument("--frame", type=int, default=0, metavar="N", help="frame of --frame-params (default 0)")
    e.set_defaults(func=run_export_ply)

    i = avatar_sub.add_parser(
        "import-ga",
        help="convert a GaussianAvatars export (point_cloud.ply + flame_param.npz) into an avatar folder",
        description="Convert a GaussianAvatars export into an l2t-gs avatar folder. The FLAME model "
        "file is copied into the folder (mind FLAME's license when sharing it).",
    )
    i.add_argument("export_dir", metavar="EXPORT_DIR", help="folder with point_cloud.ply and flame_param.npz")
    i.add_argument("--flame-model", required=True, metavar="PATH", help="FLAME model file the export used")
    i.add_argument("--out", required=True, metavar="DIR", help="avatar folder to write")
    i.add_argument(
        "--frame", type=int, default=0, metavar="N", help="tracked frame used as neutral (default 0)"
    )
    i.add_argument(
        "--drop-teeth",
        action="store_true",
        help="discard splats bound to GaussianAvatars' teeth triangles (not supported) instead of failing",
    )
    i.add_argument("--name", help="avatar name (default: the output folder's name)")
    i.set_defaults(func=run_import_ga)
