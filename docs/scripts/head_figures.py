"""Render the built-in head's documentation pictures with the project's own mesh renderer.

    python docs/scripts/head_figures.py [--out docs]

Writes head-neutral.png (front, three-quarter, side) and head-mouth-shapes.png (one tile per
speech mouth shape, each labelled).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from l2t_gs.render.preview import render_head
from l2t_gs.rig import FlameRig, load_head_model

SHAPES: list[tuple[str, dict]] = [
    ("neutral", {}),
    ("jaw open 0.3", {"jaw": 0.3}),
    ("lip_close + press", {"lip_close": 1.0, "lip_press": 1.0}),
    ("pucker", {"pucker": 1.0}),
    ("spread", {"spread": 1.0}),
    ("upper_lip_raise", {"upper_lip_raise": 1.0}),
    ("lower_lip_drop + jaw 0.1", {"lower_lip_drop": 1.0, "jaw": 0.1}),
    ("labiodental", {"labiodental": 1.0}),
    ("open vowel (jaw .25, raise)", {"jaw": 0.25, "upper_lip_raise": 0.5}),
    ("round vowel (pucker, jaw .12)", {"pucker": 1.0, "jaw": 0.12}),
    ("blink + brow_raise", {"blink_left": 1.0, "blink_right": 1.0, "brow_raise": 1.0}),
    ("brow_lower + corners down", {"brow_lower": 1.0, "mouth_corners_down": 1.0}),
]


def _label(img: np.ndarray, text: str) -> np.ndarray:
    im = Image.fromarray(img)
    ImageDraw.Draw(im).text((6, 4), text, fill=(20, 20, 20))
    return np.asarray(im)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args()
    out = Path(args.out)
    model = load_head_model("builtin", dtype=torch.float64)
    rig = FlameRig(model)
    v0 = rig()[0]
    tiles = [
        render_head(v0, model.faces, view=v, size=384, masks=model.masks) for v in ("front", "three-quarter", "side")
    ]
    Image.fromarray(np.concatenate(tiles, 1)).save(out / "head-neutral.png")

    lips = v0[model.masks["lips"]]
    frame = torch.cat([lips, lips + torch.tensor([0.0, -0.03, 0.0], dtype=torch.float64)])
    row, rows = [], []
    for title, spec in SHAPES:
        expr = torch.zeros(1, model.n_expr, dtype=torch.float64)
        for k, val in spec.items():
            if k != "jaw":
                expr[0, model.expr_names.index(k)] = val
        jaw = torch.tensor([[spec.get("jaw", 0.0), 0.0, 0.0]], dtype=torch.float64)
        v = rig(expr=expr, jaw_pose=jaw)[0]
        if "blink" in title or "brow" in title:
            img = render_head(v, model.faces, view="front", size=256, masks=model.masks, frame_verts=v0, fill=0.95)
        else:
            img = render_head(v, model.faces, view="front", size=256, masks=model.masks, frame_verts=frame, fill=0.7)
        row.append(_label(img, title))
        if len(row) == 4:
            rows.append(np.concatenate(row, 1))
            row = []
    Image.fromarray(np.concatenate(rows, 0)).save(out / "head-mouth-shapes.png")
    print(f"wrote {out / 'head-neutral.png'} and {out / 'head-mouth-shapes.png'}")


if __name__ == "__main__":
    main()
