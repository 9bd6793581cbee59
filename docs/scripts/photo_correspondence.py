"""Build the shipped face-mesh -> built-in head correspondence and draw docs/photo-correspondence.png.

Usage: python docs/scripts/photo_correspondence.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from l2t_gs.assets import asset_path
from l2t_gs.authoring.photo.correspondence import ANCHORS, CORRESPONDENCE_FILE, build_correspondence
from l2t_gs.io.atomic import atomic_path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    corr, diag = build_correspondence()
    with atomic_path(asset_path(*CORRESPONDENCE_FILE)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, face=corr.face.astype(np.int32), bary=corr.bary.astype(np.float32))
    img = diag["image"].copy()
    for (x0, y0), (x1, y1) in zip(diag["raw"], diag["warped"], strict=True):
        cv2.line(img, (round(x0), round(y0)), (round(x1), round(y1)), (120, 120, 255), 1, cv2.LINE_AA)
    for i, (x, y) in enumerate(diag["warped"]):
        colour = (220, 0, 0) if i in ANCHORS else (0, 150, 0)
        cv2.circle(img, (round(x), round(y)), 3 if i in ANCHORS else 1, colour, -1, cv2.LINE_AA)
    out = ROOT / "docs" / "photo-correspondence.png"
    with atomic_path(out) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    print(f"wrote {asset_path(*CORRESPONDENCE_FILE)} and {out}")


if __name__ == "__main__":
    main()
