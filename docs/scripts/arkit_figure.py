"""Render the 52 ARKit shapes as defined on the built-in head (l2t_gs/assets/head/arkit_builtin.json).

    python docs/scripts/arkit_figure.py [--out docs/arkit.png] [--size 160]

One tile per shape at weight 1 (ARKit's neutral = the head's rest pose, plus the shape's rig
combination), in the Live Link Face column order; shapes the head cannot make are marked "n/a".
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from l2t_gs.render.preview import render_head
from l2t_gs.rig import FlameRig, load_head_model
from l2t_gs.rig.arkit import ARKIT_SHAPES, load_arkit_mapping

COLUMNS = 8


def _label(img: np.ndarray, text: str, grey: bool) -> np.ndarray:
    strip = np.full((14, img.shape[1], 3), 255, dtype=np.uint8)
    im = Image.fromarray(np.concatenate([strip, img], 0))
    ImageDraw.Draw(im).text((4, 1), text, fill=(160, 160, 160) if grey else (0, 0, 0))
    return np.asarray(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "arkit.png"))
    ap.add_argument("--size", type=int, default=160)
    args = ap.parse_args()
    model = load_head_model("builtin", dtype=torch.float64)
    rig = FlameRig(model)
    mapping = load_arkit_mapping(model)
    e = model.n_expr
    coeffs = torch.as_tensor(mapping.to_coefficients(np.eye(len(ARKIT_SHAPES))))  # [52, C]
    with torch.no_grad():
        verts = rig(expr=coeffs[:, :e], jaw_pose=coeffs[:, e : e + 3], eyes_pose=coeffs[:, e + 3 : e + 9])
        rest = rig(expr=torch.as_tensor(mapping.rest[:e])[None])[0]
    region = [model.masks[n] for n in ("eye_region", "lips", "eyes") if n in model.masks]
    face = rest[torch.cat(region)] if region else rest  # frame eyes and mouth
    tiles = []
    for k, name in enumerate(ARKIT_SHAPES):
        empty = not mapping.matrix[:, k].any()
        img = render_head(
            verts[k], model.faces, view="front", size=args.size, masks=model.masks, frame_verts=face, fill=0.9
        )
        tiles.append(_label(img, name + (" (n/a)" if empty else ""), empty))
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % COLUMNS)
    rows = [np.concatenate(tiles[i : i + COLUMNS], 1) for i in range(0, len(tiles), COLUMNS)]
    Image.fromarray(np.concatenate(rows, 0)).save(args.out)
    print(f"wrote {args.out}: {len(ARKIT_SHAPES)} ARKit shapes on the built-in head")


if __name__ == "__main__":
    main()
