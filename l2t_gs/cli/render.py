"""``l2t-gs render``: speech audio -> talking avatar MP4 (the main job)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from l2t_gs.cli.avatar import parse_color
from l2t_gs.cli.prog import COMMAND_HELP
from l2t_gs.core.device import DEVICE_CHOICES
from l2t_gs.errors import L2TError
from l2t_gs.motion.life_options import add_life_arguments
from l2t_gs.render.backends import backend_choices
from l2t_gs.render.views import RENDER_CAMERAS

TEXT_FILE_MAX_BYTES = 1 << 20  # a transcript file larger than 1 MiB is refused


def read_text_file(path: str) -> str:
    """The transcript in ``path`` (UTF-8, at most :data:`TEXT_FILE_MAX_BYTES`); one-line L2TError otherwise."""
    p = Path(path)
    if not p.exists():
        raise L2TError(f"--text-file not found: {path}")
    if not p.is_file():
        raise L2TError(f"--text-file is not a file: {path}")
    size = p.stat().st_size
    if size > TEXT_FILE_MAX_BYTES:
        raise L2TError(f"--text-file is too large ({size} bytes, at most {TEXT_FILE_MAX_BYTES}): {path}")
    try:
        with p.open("rb") as fh:
            data = fh.read(TEXT_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise L2TError(f"cannot read --text-file {path}: {exc.strerror or exc}") from None
    if len(data) > TEXT_FILE_MAX_BYTES:
        raise L2TError(f"--text-file is too large (more than {TEXT_FILE_MAX_BYTES} bytes): {path}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise L2TError(f"--text-file is not UTF-8 text (byte {exc.start}): {path}") from None


def run(args: argparse.Namespace) -> int:
    from l2t_gs.pipeline import RenderConfig, render_video

    text = read_text_file(args.text_file) if args.text_file is not None else args.text

    cfg = RenderConfig(
        avatar=args.avatar,
        model=args.model,
        size=args.size,
        fps=args.fps,
        camera=args.camera,
        background=parse_color(args.background),
        backend=args.backend,
        style=args.style,
        seed=args.seed,
        export_mesh=args.export_mesh,
        export_ply=args.export_ply,
        export_arkit=args.export_arkit,
        quiet=args.quiet,
        device=args.device,
        text=text,
        motion=args.motion,
        motion_fps=args.motion_fps,
        layout=args.layout,
        cameras=tuple(c.strip() for c in args.cameras.split(",") if c.strip()) if args.cameras else (),
        compare=tuple(args.compare or ()),
        waveform=args.waveform,
        captions=args.captions,
        camera_json=args.camera_json,
        head_motion=args.head_motion,
        blinks=args.blinks,
        motion_scale=args.motion_scale,
    )
    res = render_video(args.audio, args.out, cfg)
    if not args.quiet:
        print(
            f"wrote {res.out}: {res.frames} frames, {res.audio_seconds:.2f} s of audio in {res.wall_seconds:.1f} s "
            f"({res.seconds_per_audio_second:.2f} s per audio second)",
            file=sys.stderr,
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help=COMMAND_HELP["render"],
        description="Render a talking-avatar video: Audio2Mesh motion for the audio drives the Gaussian avatar.",
    )
    p.add_argument("audio", metavar="AUDIO", help="speech: wav, flac, ogg, mp3 or m4a; any rate, mono or stereo")
    p.add_argument("-o", "--out", required=True, metavar="OUT.mp4", help="output video")
    p.add_argument(
        "--avatar", default="default", metavar="NAME_OR_DIR", help="avatar name or folder (default: default)"
    )
    p.add_argument("--model", metavar="PATH", help="Audio2Mesh checkpoint or run dir (default: the shipped model)")
    p.add_argument("--size", type=int, default=512, metavar="PX", help="frame size in pixels (default 512)")
    p.add_argument("--fps", type=float, default=25.0, help="video frame rate (default 25)")
    p.add_argument("--camera", default="front", choices=RENDER_CAMERAS)
    p.add_argument(
        "--camera-json", metavar="FIT.json",
        help="camera from a JSON (a photo avatar's fit.json): the photo's view fitted into --size; overrides --camera",
    )  # fmt: skip
    p.add_argument("--background", default="white", help="white, black, gray, #rrggbb or r,g,b in 0..1")
    p.add_argument("--backend", default="auto", choices=backend_choices(), help="rasterizer (default: auto)")
    p.add_argument("--style", help="speaking style: a training speaker of the model (default: mean style)")
    tx = p.add_mutually_exclusive_group()
    tx.add_argument(
        "--text", metavar="TRANSCRIPT",
        help="what is said: force-aligned to the audio, its phone timing closes every p/b/m and shapes the lips",
    )  # fmt: skip
    tx.add_argument("--text-file", metavar="FILE", help="--text read from a UTF-8 file")
    p.add_argument(
        "--export-mesh", metavar="OUT.npz|OUT.glb",
        help="also write the mesh animation: .npz per-frame vertices and faces, or .glb glTF 2.0 (skinned mesh, "
        "morph targets, animation at --fps; see docs/exports.md)",
    )  # fmt: skip
    p.add_argument(
        "--export-arkit", metavar="OUT.csv",
        help="also write the 52 ARKit blendshape curves + head/eye rotations as a Live Link Face CSV",
    )  # fmt: skip
    p.add_argument("--export-ply", metavar="DIR", help="also write a world-space 3DGS PLY per frame")
    p.add_argument(
        "--motion", metavar="FILE",
        help="render this motion instead of the model's: .npy vertices [T,V,3] or [T,V*3] (ground truth, "
        "eval --save-predictions) or .npz (vertices, or rig coefficients expr/jaw_pose/...; optional fps)",
    )  # fmt: skip
    p.add_argument(
        "--motion-fps", type=float, metavar="FPS",
        help="frame rate of motion files that do not record theirs (VOCASET's vertices_npy: 60)",
    )  # fmt: skip
    p.add_argument(
        "--layout", default="single", choices=["single", "grid"],
        help="grid: one tile per camera of --cameras (default single)",
    )  # fmt: skip
    p.add_argument(
        "--cameras", metavar="LIST",
        help=f"comma-separated grid cameras (default front,three-quarter,side; from {', '.join(RENDER_CAMERAS)})",
    )  # fmt: skip
    p.add_argument(
        "--compare", nargs="+", metavar="[LABEL=]SPEC",
        help="side by side with labels, one row each: motion files (.npy/.npz), models (.pt or run dirs) or "
        "avatars (names or folders); force the kind with motion:, model: or avatar:",
    )  # fmt: skip
    p.add_argument("--waveform", action="store_true", help="add a waveform strip with a moving cursor")
    p.add_argument(
        "--captions", nargs="?", const="text", metavar="SEGMENTS.json",
        help="add captions: the words of --text aligned to the audio, or word/phone segments from a JSON file "
        "(e.g. 'l2t-gs data align ... -o segments.json')",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled head motion, blinks and gaze (default 0)")
    add_life_arguments(p)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run)
