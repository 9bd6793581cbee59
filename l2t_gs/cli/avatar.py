"""``l2t-gs avatar``: build the default avatar, export a frame as a plain 3DGS PLY, import GaussianAvatars."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from l2t_gs.cli.pose_args import add_pose_options
from l2t_gs.cli.prog import COMMAND_HELP
from l2t_gs.render.backends import backend_choices
from l2t_gs.render.views import STILL_VIEWS


def run_build(args: argparse.Namespace) -> int:
    from l2t_gs.authoring.avatar import build_default_avatar
    from l2t_gs.errors import L2TError
    from l2t_gs.gaussians.avatar_io import save_avatar

    if args.preview is not None and Path(args.preview).suffix.lower() != ".png":
        raise L2TError(f"--preview must end in .png, got {args.preview}")
    if args.preview is not None and not 64 <= args.preview_size <= 2048:
        raise L2TError(f"--preview-size must be between 64 and 2048, got {args.preview_size}")
    out = Path(args.out)
    avatar = build_default_avatar(
        num_splats=args.splats, seed=args.seed, sh_degree=args.sh_degree, name=args.name or out.resolve().name
    )
    save_avatar(avatar, out)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(
        f"wrote {out}: avatar '{avatar.name}' with {avatar.num_splats} splats on {avatar.num_faces} triangles, "
        f"SH degree {avatar.sh_degree}, {size / 1e6:.1f} MB"
    )
    if args.preview is not None:
        from PIL import Image

        from l2t_gs.authoring.avatar import render_preview
        from l2t_gs.io.atomic import atomic_path

        image, seconds = render_preview(avatar, args.preview_size)
        with atomic_path(args.preview) as tmp:
            Image.fromarray(image).save(tmp, format="PNG")
        print(
            f"wrote {args.preview}: neutral and jaw-open, front and three-quarter, {args.preview_size}px "
            f"(median {sorted(seconds)[len(seconds) // 2]:.3f} s per frame)"
        )
    return 0


def run_export_ply(args: argparse.Namespace) -> int:
    from l2t_gs.errors import L2TError
    from l2t_gs.gaussians.avatar_io import load_avatar, load_frame_params
    from l2t_gs.gaussians.export import world_space_ply
    from l2t_gs.gaussians.ply import with_sh_degree, write_gaussian_ply

    if args.frame is not None and args.frame_params is None:
        raise L2TError("--frame needs --frame-params (the motion file whose frame to export)")
    if args.frame is None:
        args.frame = 0
    if Path(args.out).is_dir():
        raise L2TError(f"--out is a directory: {args.out} (expected a .ply file name)")
    avatar = load_avatar(args.avatar)
    if args.frame_params is not None:
        params = load_frame_params(
            args.frame_params, args.frame, avatar, dynamic_offset=args.dynamic_offset, note=_print_note
        )
        vertices = avatar.vertices_from_params(params)[0]
        what = f"frame {args.frame} of {args.frame_params}"
    else:
        vertices = avatar.neutral_vertices()
        what = "neutral frame"
    ply = world_space_ply(avatar, vertices)
    if args.sh_degree is not None:
        ply = with_sh_degree(ply, args.sh_degree)
    write_gaussian_ply(args.out, ply)
    print(f"wrote {args.out}: {ply.num_splats} splats, SH degree {ply.sh_degree}, {what} of '{avatar.name}'")
    return 0


def _print_note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def run_import_ga(args: argparse.Namespace) -> int:
    from l2t_gs.gaussians.avatar_io import import_gaussian_avatars

    avatar = import_gaussian_avatars(
        args.export_dir,
        args.flame_model,
        args.out,
        frame=args.frame,
        drop_teeth=args.drop_teeth,
        dynamic_offset=args.dynamic_offset,
        name=args.name,
        note=_print_note,
    )
    print(f"wrote {args.out}: avatar '{avatar.name}' with {avatar.num_splats} splats ({avatar.notes})")
    return 0


def run_from_photo(args: argparse.Namespace) -> int:
    from l2t_gs.errors import L2TError

    try:
        import cv2  # noqa: F401  (the photo package needs OpenCV; opencv-python or its headless twin)
    except ImportError:
        raise L2TError('avatar from-photo needs OpenCV (cv2): pip install "l2t-gs[photo]"') from None
    from l2t_gs.authoring.photo.build import PhotoAvatarConfig, build_photo_avatar

    cfg = PhotoAvatarConfig(
        splats=args.splats, steps=args.steps, seed=args.seed, face=args.face, min_eye_distance=args.min_eye_distance,
        name=args.name,
    )  # fmt: skip
    res = build_photo_avatar(args.photo, args.out, cfg)
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    fit = res.fit
    rerender = fit["rerender_landmark_error_iod"]
    print(
        f"wrote {res.out}: landmark error {fit['landmark_error_iod']:.3f} (fit), "
        f"{'n/a' if rerender is None else f'{rerender:.3f}'} (re-render) of the eye distance, face PSNR "
        f"{fit['face_psnr_db']:.1f} dB, {res.seconds:.0f} s; photo view: "
        f"l2t-gs avatar render --avatar {res.out} --camera-json {res.out}/fit.json --out X.png"
    )
    return 0


def parse_color(text: str) -> tuple[float, float, float]:
    """``white``/``black``/``gray``, ``#rrggbb`` or ``r,g,b`` in 0..1 -> RGB floats."""
    from l2t_gs.errors import L2TError

    named = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "gray": (0.5, 0.5, 0.5), "green": (0.0, 1.0, 0.0)}
    t = text.strip().lower()
    if t in named:
        return named[t]
    try:
        if t.startswith("#") and len(t) == 7:
            return tuple(int(t[k : k + 2], 16) / 255.0 for k in (1, 3, 5))  # type: ignore[return-value]
        vals = tuple(float(v) for v in t.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 3 or not all(0.0 <= v <= 1.0 for v in vals):
        raise L2TError(f"--background: expected a name, #rrggbb or r,g,b in 0..1, got {text!r}")
    return vals  # type: ignore[return-value]


def run_render(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from l2t_gs.cli.pose_args import pose_params
    from l2t_gs.errors import L2TError
    from l2t_gs.gaussians import load_avatar
    from l2t_gs.io.atomic import atomic_path
    from l2t_gs.render import head_camera, rasterize, to_uint8

    if Path(args.out).suffix.lower() != ".png":
        raise L2TError(f"--out must end in .png, got {args.out}")
    if not 16 <= args.size <= 4096:
        raise L2TError(f"--size must be between 16 and 4096, got {args.size}")
    bg = torch.tensor([parse_color(args.background)], dtype=torch.float32)
    avatar = load_avatar(args.avatar)
    params = pose_params(args, avatar.head_model)
    width = height = args.size
    if getattr(args, "camera_json", None):  # the photo's camera of `avatar from-photo` (fit.json), at its size
        from l2t_gs.authoring.photo.build import photo_expression
        from l2t_gs.render.camera import camera_from_json

        viewmats, ks, width, height = camera_from_json(args.camera_json)
        # the face as the photo shows it (mouth, jaw), unless --expr / --jaw say otherwise
        shown = photo_expression(args.camera_json, avatar) if getattr(args, "photo_expression", True) else {}
        for key, value in shown.items():
            params.setdefault(key, value[None])
    else:
        viewmats, ks = head_camera(args.view, avatar.neutral_vertices(), args.size, args.size)
    verts = avatar.vertices_from_params(params)[0]
    rgb, _, _ = rasterize(
        **avatar.splat_params(verts.float()), viewmats=viewmats, Ks=ks, width=width, height=height,
        backgrounds=bg, backend=args.backend,
    )  # fmt: skip
    img = to_uint8(rgb[0])
    with atomic_path(args.out) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _add_dynamic_offset_option(parser: argparse.ArgumentParser, auto_help: str) -> None:
    from l2t_gs.gaussians.frame_options import DYNAMIC_OFFSET_MODES

    parser.add_argument(
        "--dynamic-offset",
        default="auto",
        choices=DYNAMIC_OFFSET_MODES,
        help=f"per-frame vertex offsets of the parameter file (default auto). {auto_help}",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("avatar", help=COMMAND_HELP["avatar"])
    avatar_sub = p.add_subparsers(dest="avatar_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda _args: (p.print_help(sys.stderr), 2)[1])

    b = avatar_sub.add_parser(
        "build",
        help="build the procedural default avatar (splats painted on the built-in head) as an avatar folder",
        description="Build the procedural default avatar: splats on every triangle of the built-in head with "
        "skin, hair, brows, eyes, lips, mouth and teeth colours, written as an avatar folder (atomically). "
        "The shipped avatars/default is built with the defaults.",
    )
    b.add_argument("--out", required=True, metavar="DIR", help="avatar folder to write")
    b.add_argument(
        "--splats",
        type=int,
        default=None,
        metavar="N",
        help="total splats, at least one per triangle (default 40000)",
    )
    b.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    b.add_argument("--sh-degree", type=int, default=1, choices=range(4), metavar="D", help="SH degree 0..3 (default 1)")
    b.add_argument("--name", help="avatar name (default: the output folder's name)")
    b.add_argument(
        "--preview",
        metavar="FILE.png",
        help="also render neutral and jaw-open views (front, three-quarter) side by side into this PNG",
    )
    b.add_argument("--preview-size", type=int, default=512, metavar="PX", help="preview tile size (default 512)")
    b.set_defaults(func=run_build)

    r = avatar_sub.add_parser(
        "render",
        help="render an avatar in a pose to a PNG with the Gaussian rasterizer",
        description="Pose an avatar (rig options as in `head render`) and rasterize its splats.",
    )
    r.add_argument("--avatar", default="default", metavar="NAME_OR_DIR", help="avatar name or folder")
    r.add_argument("--out", required=True, metavar="FILE.png", help="output PNG")
    r.add_argument("--view", default="front", choices=STILL_VIEWS)
    r.add_argument("--size", type=int, default=512, metavar="PX")
    r.add_argument("--background", default="white", help="white, black, gray, #rrggbb or r,g,b in 0..1")
    r.add_argument("--backend", default="auto", choices=backend_choices(), help="rasterizer (default: auto)")
    r.add_argument(
        "--camera-json",
        metavar="FIT.json",
        help="camera of a photo avatar (DIR/fit.json): its view and size, and the photo's expression and jaw "
        "(unless --expr / --jaw, or --no-photo-expression for the avatar's rest face)",
    )
    r.add_argument(
        "--photo-expression",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --camera-json, pose the face as the photo shows it (default: yes)",
    )
    add_pose_options(r)
    r.set_defaults(func=run_render)

    fp = avatar_sub.add_parser(
        "from-photo",
        help="build a talking avatar from one photo of a face (offline, CPU)",
        description="Fit the built-in head and a camera to the face-mesh landmarks of PHOTO (MediaPipe models "
        "run offline with LiteRT), colour the default avatar's splats from the photo and refine them "
        "photometrically. Photos over 1024 px are downscaled, unless the face would then have fewer than 40 px "
        "between the eyes: then a 1024-px window around it is taken at full resolution. Writes an avatar folder "
        "with fit.json (the photo's camera) and photo.png (the photo as used), atomically. Needs the 'photo' extra.",
    )
    fp.add_argument("photo", metavar="PHOTO", help="a photo with a face (JPEG, PNG, ...)")
    fp.add_argument("--out", required=True, metavar="DIR", help="avatar folder to write")
    fp.add_argument("--splats", type=int, default=None, metavar="N", help="splats (default 40000)")
    fp.add_argument("--steps", type=int, default=60, metavar="N", help="photometric refinement steps (default 60)")
    fp.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    fp.add_argument("--face", type=int, default=None, metavar="INDEX", help="which face, largest first (default 0)")
    fp.add_argument(
        "--min-eye-distance", type=float, default=30.0, metavar="PX",
        help="refuse faces whose eye centres are closer than this (default 30 px)",
    )  # fmt: skip
    fp.add_argument("--name", help="avatar name (default: the output folder's name)")
    fp.set_defaults(func=run_from_photo)

    e = avatar_sub.add_parser(
        "export-ply",
        help="write one frame as a plain world-space 3DGS PLY (for generic splat viewers)",
        description="Write one frame of an avatar as a world-space INRIA 3DGS PLY without binding.",
    )
    e.add_argument("--avatar", required=True, metavar="NAME_OR_DIR", help="shipped avatar name or avatar folder")
    e.add_argument("--out", required=True, metavar="FILE.ply", help="output PLY file")
    e.add_argument(
        "--frame-params",
        metavar="FILE.npz",
        help="rig parameters (flame_param.npz layout) to pose the avatar with; default: its neutral frame",
    )
    e.add_argument("--frame", type=int, default=None, metavar="N", help="frame of --frame-params (default 0)")
    _add_dynamic_offset_option(
        e,
        "auto: ignored in a GaussianAvatars export (flame_param.npz beside point_cloud.ply), added from "
        "other motion files (VHAP-style)",
    )
    e.add_argument(
        "--sh-degree", type=int, default=None, choices=range(4), metavar="D",
        help="pad the SH bands with zeros up to degree D (3 for readers fixed at degree 3, e.g. INRIA's); "
        "default: the avatar's own degree",
    )  # fmt: skip
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
    i.add_argument("--frame", type=int, default=0, metavar="N", help="tracked frame used as neutral (default 0)")
    i.add_argument(
        "--drop-teeth",
        action="store_true",
        help="import onto plain FLAME, discarding splats bound to GaussianAvatars' teeth triangles "
        "(default: rebuild the teeth and keep every splat)",
    )
    _add_dynamic_offset_option(i, "auto and ignore: left out, as GaussianAvatars' FLAME does; apply: added")
    i.add_argument("--name", help="avatar name (default: the output folder's name)")
    i.set_defaults(func=run_import_ga)
