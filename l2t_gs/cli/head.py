"""``l2t-gs head``: build the built-in head, pose a head model and export it as OBJ or a picture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from l2t_gs.cli.pose_args import add_pose_options, pose_params
from l2t_gs.cli.prog import COMMAND_HELP
from l2t_gs.errors import L2TError
from l2t_gs.render.views import PREVIEW_VIEWS


def posed_from_args(args: argparse.Namespace):
    """Load the model named by ``--model`` and pose it from the CLI options; returns (model, verts [V,3])."""
    import torch

    from l2t_gs.rig import FlameRig, load_head_model

    model = load_head_model(args.model, dtype=torch.float64)
    verts = FlameRig(model)(**pose_params(args, model, dtype=torch.float64))[0]
    return model, verts


def run_build(args: argparse.Namespace) -> int:
    from l2t_gs.authoring.head import save_builtin_head

    out = Path(args.out)
    if out.suffix != ".npz":
        raise L2TError(f"--out must end in .npz, got {out}")
    print("building the built-in head (about a minute)...", file=sys.stderr)
    save_builtin_head(out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from l2t_gs.io.obj import write_obj

    if Path(args.out).suffix.lower() != ".obj":
        raise L2TError(f"--out must end in .obj, got {args.out}")
    model, verts = posed_from_args(args)
    header = f"l2t-gs head export: model {model.name} ({model.n_verts} vertices, {model.n_faces} faces)"
    write_obj(args.out, verts.numpy(), model.faces.numpy(), header=header)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def run_render(args: argparse.Namespace) -> int:
    from PIL import Image

    from l2t_gs.io.atomic import atomic_path
    from l2t_gs.render.preview import render_head

    if Path(args.out).suffix.lower() != ".png":
        raise L2TError(f"--out must end in .png, got {args.out}")
    if not 16 <= args.size <= 4096:
        raise L2TError(f"--size must be between 16 and 4096, got {args.size}")
    model, verts = posed_from_args(args)
    view, frame = args.view, None
    if view == "mouth":
        if "lips" not in model.masks:
            raise L2TError("--view mouth needs a model with a 'lips' region mask")
        view, frame = "front", verts[model.masks["lips"]]
    img = render_head(
        verts,
        model.faces,
        view=view,
        size=args.size,
        masks=model.masks,
        frame_verts=frame,
        fill=0.55 if frame is not None else 0.85,
    )
    with atomic_path(args.out) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    head = sub.add_parser("head", help=COMMAND_HELP["head"])
    hs = head.add_subparsers(dest="head_command", metavar="SUBCOMMAND", required=True)

    p = hs.add_parser("build", help="generate the built-in FLAME-format head model (.npz)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=run_build)

    p = hs.add_parser("export", help="pose a head model and write it as OBJ")
    p.add_argument("--out", required=True, help="output .obj")
    add_pose_options(p)
    p.set_defaults(func=run_export)

    p = hs.add_parser("render", help="pose a head model and render a shaded PNG with the project's renderer")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--view", default="front", choices=PREVIEW_VIEWS)
    p.add_argument("--size", type=int, default=512)
    add_pose_options(p)
    p.set_defaults(func=run_render)
