"""Build photo avatars and draw docs/photo-avatar.jpg: photo, re-render (the photo's expression), the rest
face it talks from (photo's view), three-quarter, side, talking (open mouth, photo's view).

Usage: python docs/scripts/photo_avatar_figure.py [--out docs/photo-avatar.jpg] [--work DIR]
Rows: scikit-image's astronaut photo (tests/data/photos/astronaut.jpg), the same photo mirrored and
turned by 12 degrees in the image plane, scikit-image's CC0 "camera" photo (tests/data/photos/camera.jpg:
grey, the head turned about 50 degrees). (The second real photo, tests/data/photos/obama.jpg, is used for
tests and measurement only: a talking avatar of a real public figure is not published; see
docs/photo-avatar.md.) Avatars already built in --work (a folder with fit.json) are reused.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from l2t_gs.authoring.photo.appearance import render_view
from l2t_gs.authoring.photo.build import PhotoAvatarConfig, build_photo_avatar, photo_expression
from l2t_gs.gaussians import load_avatar
from l2t_gs.io.atomic import atomic_path
from l2t_gs.render import head_camera
from l2t_gs.render.camera import camera_from_json

ROOT = Path(__file__).resolve().parents[2]
TILE = 256


def tiles_for(avatar_dir: Path) -> tuple[list[np.ndarray], dict]:
    fit = json.loads((avatar_dir / "fit.json").read_text())
    avatar = load_avatar(avatar_dir)
    photo = np.asarray(Image.open(avatar_dir / "photo.png").convert("RGB"))
    view, k, w, h = camera_from_json(str(avatar_dir / "fit.json"))
    neutral = avatar.neutral_vertices()  # the rest face it talks from
    shown = avatar.vertices_from_params(photo_expression(avatar_dir / "fit.json", avatar))[0]  # as in the photo
    names = list(avatar.head_model.expr_names)
    expr = avatar.neutral_params["expr"].clone()
    expr[names.index("upper_lip_raise")] += 0.3
    talking = avatar.vertices_from_params({"jaw_pose": torch.tensor([0.28, 0.0, 0.0]), "expr": expr})[0]
    out = [photo] + [(render_view(avatar, v, view[0], k[0], w, h)[0] * 255).astype(np.uint8) for v in (shown, neutral)]
    for preset in ("three-quarter", "side"):
        v, kk = head_camera(preset, neutral, TILE, TILE)
        out.append((render_view(avatar, neutral, v[0], kk[0], TILE, TILE)[0] * 255).astype(np.uint8))
    out.append((render_view(avatar, talking, view[0], k[0], w, h)[0] * 255).astype(np.uint8))
    return out, fit


def crop_face(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return cv2.resize(img[y0:y1, x0:x1], (TILE, TILE), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "photo-avatar.jpg"))
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="photo-avatar-"))
    work.mkdir(parents=True, exist_ok=True)
    astronaut = np.asarray(Image.open(ROOT / "tests" / "data" / "photos" / "astronaut.jpg").convert("RGB"))
    turned = cv2.warpAffine(
        astronaut[:, ::-1].copy(), cv2.getRotationMatrix2D((290.0, 130.0), 12.0, 1.0), (512, 512),
        borderMode=cv2.BORDER_REFLECT,
    )  # fmt: skip
    Image.fromarray(turned).save(work / "astronaut-mirrored-turned.png")
    rows = []
    photos = (
        ("astronaut", ROOT / "tests/data/photos/astronaut.jpg", PhotoAvatarConfig()),
        ("turned", work / "astronaut-mirrored-turned.png", PhotoAvatarConfig()),
        # CC0, grey, turned about 50 degrees: 17 px between the eyes as seen, so the minimum is lowered
        ("camera", ROOT / "tests/data/photos/camera.jpg", PhotoAvatarConfig(min_eye_distance=10.0)),
    )
    for name, path, cfg in photos:
        if not (work / name / "fit.json").is_file():
            build_photo_avatar(path, work / name, cfg)
        tiles, fit = tiles_for(work / name)
        print(name, json.dumps({k: fit[k] for k in ("rerender_landmark_error_iod", "face_psnr_db", "seconds")}))
        # photo-sized tiles (photo, re-render, talking) cropped around the face; preset views as rendered
        ys, xs = np.nonzero(np.abs(tiles[1].astype(int) - 255).sum(-1) > 30)
        cx, cy = int(np.median(xs)), int(np.median(ys))
        half = int(2.8 * max(fit["eye_distance_px"], 40.0))  # the head and a little around it
        cx = min(max(cx, half), fit["width"] - half) if 2 * half <= fit["width"] else cx
        cy = min(max(cy, half), fit["height"] - half) if 2 * half <= fit["height"] else cy
        box = (max(cx - half, 0), max(cy - half, 0), cx + half, cy + half)
        row = [*(crop_face(t, box) for t in tiles[:3]), tiles[3], tiles[4], crop_face(tiles[5], box)]
        rows.append(np.concatenate(row, 1))
    figure = np.concatenate(rows, 0)
    with atomic_path(args.out) as tmp:
        if Path(args.out).suffix.lower() in (".jpg", ".jpeg"):  # a JPEG keeps the docs picture small
            Image.fromarray(figure).save(tmp, format="JPEG", quality=85, optimize=True)
        else:
            Image.fromarray(figure).save(tmp, format="PNG")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
