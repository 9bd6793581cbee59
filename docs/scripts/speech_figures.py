"""Figures for the speech docs, drawn with Pillow from the project's own outputs.

    python docs/scripts/speech_figures.py    # docs/render-stills.png (needs the shipped model)

Frames rendered from the shipped sample clip by the default model and avatar, above the clip's phone
timeline and the predicted lip opening. (The articulation picture is docs/scripts/articulation_figure.py.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

DOCS = Path(__file__).resolve().parents[1]
COLORS = {"bilabial": (220, 60, 60), "labiodental": (150, 80, 200), "open": (60, 110, 220), "rounded": (40, 160, 90)}


def phone_class(ph: str) -> str | None:
    if ph in ("p", "b", "m"):
        return "bilabial"
    if ph in ("f", "v"):
        return "labiodental"
    if ph in ("aa", "ae", "ah", "ao", "aw", "ay"):
        return "open"
    if ph in ("uw", "uh", "ow", "oy", "w"):
        return "rounded"
    return None


def lip_gap(verts: torch.Tensor) -> np.ndarray:
    from l2t_gs.assets import asset_path

    with np.load(asset_path("head", "l2t_head.npz")) as z:
        up, lo = int(z["landmark_upper_lip_mid"][0]), int(z["landmark_lower_lip_mid"][0])
    return ((verts[:, up] - verts[:, lo]).norm(dim=-1) * 1000).numpy()


def timeline(segments, curve: np.ndarray, fps: float, width: int, title: str, marks=()) -> Image.Image:
    """Phone spans (coloured by class) over the lip-opening curve (mm)."""
    dur = max(s.end for s in segments)
    h, top, strip = 260, 24, 40
    img = Image.new("RGB", (width, h), "white")
    d = ImageDraw.Draw(img)
    d.text((6, 4), title, fill=(0, 0, 0))
    x = lambda t: int(40 + (width - 50) * t / dur)  # noqa: E731
    for s in segments:
        col = COLORS.get(phone_class(s.phone) or "", (200, 200, 200))
        fill = col if s.phone != "sil" else "white"
        d.rectangle([x(s.start), top, max(x(s.end) - 1, x(s.start)), top + strip], fill=fill, outline=(120, 120, 120))
        if x(s.end) - x(s.start) > 12 and s.phone != "sil":
            d.text((x(s.start) + 2, top + 12), s.phone, fill=(255, 255, 255))
    y0, y1 = top + strip + 20, h - 20
    vmax = max(20.0, float(curve.max()))
    y = lambda v: int(y1 - (y1 - y0) * v / vmax)  # noqa: E731
    d.line([(40, y(1.0)), (width - 10, y(1.0))], fill=(220, 180, 180))
    d.text((2, y(1.0) - 6), "1mm", fill=(200, 80, 80))
    d.text((2, y0 - 4), f"{vmax:.0f}mm", fill=(0, 0, 0))
    pts = [(x(i / fps), y(v)) for i, v in enumerate(curve)]
    d.line(pts, fill=(0, 0, 0), width=2)
    for t in marks:
        d.line([(x(t), top), (x(t), y1)], fill=(255, 150, 0), width=1)
    legend = "  ".join(f"{k}" for k in COLORS)
    d.text((40, h - 16), f"lip opening (mm) under phone spans; colours: {legend}", fill=(60, 60, 60))
    for i, (_k, c) in enumerate(COLORS.items()):
        d.rectangle([width - 330 + i * 80, h - 15, width - 320 + i * 80, h - 5], fill=c)
    return img


def stills_figure() -> None:
    from l2t_gs.assets import asset_path
    from l2t_gs.audio.io import load_audio
    from l2t_gs.gaussians import load_avatar
    from l2t_gs.models.checkpoint import load_model
    from l2t_gs.pipeline import default_model_path
    from l2t_gs.render import head_camera, rasterize, to_uint8
    from l2t_gs.speech.segments import read_segments

    audio = load_audio(asset_path("samples", "hello.wav"))
    segs = read_segments(asset_path("samples", "hello.json"))
    avatar = load_avatar("default")
    model = load_model(default_model_path())
    fps = 25.0
    neutral = avatar.neutral_vertices()
    verts = model.predict(audio, neutral, fps=fps)
    gap = lip_gap(verts)
    picks = [s for s in segs if phone_class(s.phone)][:: max(1, len([s for s in segs if phone_class(s.phone)]) // 8)][
        :8
    ]
    view, ks = head_camera("front", neutral, 256, 256, fill=0.95)
    tiles, marks = [], []
    for s in picks:
        t = 0.5 * (s.start + s.end)
        i = min(int(round(t * fps)), len(verts) - 1)
        rgb, _, _ = rasterize(**avatar.splat_params(verts[i]), viewmats=view, Ks=ks, width=256, height=256,
                              backgrounds=torch.ones(1, 3))  # fmt: skip
        tile = Image.fromarray(to_uint8(rgb[0]))
        crop = tile.crop((64, 120, 192, 248)).resize((150, 150))
        ImageDraw.Draw(crop).text((4, 4), f"{s.phone} @ {t:.2f}s ({gap[i]:.1f}mm)", fill=(0, 0, 0))
        tiles.append(crop)
        marks.append(t)
    width = 150 * len(tiles)
    top = Image.new("RGB", (width, 150), "white")
    for k, tile in enumerate(tiles):
        top.paste(tile, (150 * k, 0))
    title = "sample clip (festival kal_diphone, unseen engine): default model's lip opening"
    tl = timeline(segs, gap, fps, width, title, marks)
    out = Image.new("RGB", (width, 150 + tl.height), "white")
    out.paste(top, (0, 0))
    out.paste(tl, (0, 150))
    out.save(DOCS / "render-stills.png")
    print("wrote", DOCS / "render-stills.png")


if __name__ == "__main__":
    stills_figure()
