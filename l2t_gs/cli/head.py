"""``l2t-gs head``: build the built-in head, pose a head model and export it as OBJ or a picture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from l2t_gs.errors import L2TError


def parse_values(
    text: str | None, option: str, names: list[str] | None = None, count: int | None = None
) -> list:
    """Parse ``v1,v2,...`` or (with ``names``) ``name=v,...`` into a list of floats.

    Positional lists may be shorter than ``names`` (zero-padded); ``count`` demands an exact length.
    """
    if text is None:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if names is not None and any("=" in t for t in items):
        vals = [0.0] * len(names)
        for item in items:
            key, _, raw = item.partition("=")
            key = key.strip()
            if key not in names:
                raise L2TError(f"{option}: unknown name {key!r}; known: {', '.join(names)}")
            vals[names.index(key)] = _float(raw, option)
        return vals
    vals = [_float(t, option) for t in items]
    if count is not None and len(vals) != count:
        raise L2TError(f"{option} needs {count} comma-separated values, got {len(vals)}")
    if names is not None and len(vals) > len(names):
        raise L2TError(f"{option}: the model has {len(names)} components, got {len(vals)} values")
    return vals


def _float(raw: str, option: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise L2TError(f"{option}: not a number: {raw!r}") from None
    if not np.isfinite(v):
        raise L2TError(f"{option}: values must be finite, got {raw!r}")
    return v


def _names(given: list[str], n: int) -> list[str]:
    return given if len(given) == n else [str(i) for i in range(n)]


def posed_from_args(args: argparse.Namespace):
    """Load the model named by ``--model`` and pose it from the CLI options; returns (model, verts [V,3])."""
    from l2t_gs.rig import FlameRig, load_head_model

    model = load_head_model(args.model, dtype=torch.float64)
    rig = FlameRig(model)
    shape = parse_values(args.shape, "--shape", _names(model.shape_names, model.n_shape))
    expr = parse_values(args.expr, "--expr", _names(model.expr_names, model.n_expr))
    t = lambda v: torch.tensor([v], dtype=torch.float64) if v else None  # noqa: E731
    verts = rig(
        shape=t(shape),
        expr=t(expr),
        jaw_pose=t(parse_values(args.jaw, "--jaw", count=3)),
        neck_pose=t(parse_values(args.neck, "--neck", count=3)),
        eyes_pose=t(parse_values(args.eyes, "--eyes", count=6)),
    )[0]
    return model, verts


def run_build(args: argparse.Namespace) -> int:
    from l2t_gs.rig.builtin_head import save_builtin_head

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


def _pose_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="builtin", help="head model: 'builtin' (default) or a FLAME .pkl/.npz path"
    )
    p.add_argument("--shape", help="identity coefficients: v1,v2,... or name=v,...")
    p.add_argument("--expr", help="expression coefficients: v1,v2,... or name=v,... (e.g. lip_close=1)")
    p.add_argument("--jaw", help="jaw pose, axis-angle radians: ax,ay,az")
    p.add_argument("--neck", help="neck pose, axis-angle radians: ax,ay,az")
    p.add_argument("--eyes", help="eye poses, axis-angle radians: 6 values (left eye, then right eye)")


def register(sub: argparse._SubParsersAction) -> None:
    head = sub.add_parser("head", help="the FLAME-format head: build, export, render")
    hs = head.add_subparsers(dest="head_command", metavar="SUBCOMMAND", required=True)

    p = hs.add_parser("build", help="generate the built-in FLAME-format head model (.npz)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=run_build)

    p = hs.add_parser("export", help="pose a head model and write it as OBJ")
    p.add_argument("--out", required=True, help="output .obj")
    _pose_options(p)
    p.set_defaults(func=run_export)

    p = hs.add_parser("render", help="pose a head model and render a shaded PNG with the project's renderer")
    p.add_argument("--out", required=True, help="output .png")
    p.add_argument("--view", default="front", choices=["front", "three-quarter", "side", "mouth"])
    p.add_argument("--size", type=int, default=512)
    _pose_options(p)
    p.set_defaults(func=run_render)
