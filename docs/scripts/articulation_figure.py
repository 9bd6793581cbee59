"""Plot the phone segments of one clip against the lip opening of the articulated built-in head.

    python docs/scripts/articulation_figure.py [--text "..."] [--fps 30] [--out docs/articulation-lip-opening.png]

The clip is spoken with espeak-ng through ``l2t_gs.speech`` when it is installed, otherwise a
hand-made segment list of the same sentence is used. Motion: :func:`l2t_gs.motion.articulation.articulate`;
lip opening: distance between the ``landmark_upper_lip_mid`` and ``landmark_lower_lip_mid`` vertices
of the rig (mm), mouth width: distance between the mouth corners. Drawn with Pillow.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from l2t_gs.assets import asset_path
from l2t_gs.motion.articulation import articulate
from l2t_gs.motion.visemes import BILABIAL, LABIODENTAL, OPEN_VOWELS
from l2t_gs.rig import FlameRig, load_head_model

TEXT = "Bob found five maps of the moon by the bay."
# the same sentence by hand (ms), used without espeak-ng
FALLBACK = (
    "sil:150 b:60 aa:140 b:100 f:80 aw:140 n:90 d:60 f:80 ay:160 v:70 m:70 ae:120 p:80 s:70 ah:70 v:60 "
    "dh:50 ah:60 m:80 uw:120 n:120 b:60 ay:110 dh:50 ah:50 b:100 ey:260 sil:300"
)
ROUNDED = {"uw", "uh", "ow", "oy", "w", "ao"}
COLOURS = {
    "bilabial": (214, 48, 49),
    "labiodental": (240, 140, 20),
    "open vowel": (52, 120, 200),
    "rounded": (140, 80, 180),
    "other vowel": (110, 175, 225),
    "consonant": (170, 170, 170),
    "silence": (235, 235, 235),
}
VOWELS = {"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"}


def phone_class(p: str) -> str:
    if p in BILABIAL:
        return "bilabial"
    if p in LABIODENTAL:
        return "labiodental"
    if p in OPEN_VOWELS and p != "ao":
        return "open vowel"
    if p in ROUNDED:
        return "rounded"
    if p in VOWELS:
        return "other vowel"
    return "silence" if p == "sil" else "consonant"


def clip(text: str) -> tuple[list[tuple[str, float, float]], np.ndarray | None, int, str]:
    """(segments, audio or None, sample rate, source description)."""
    try:
        from l2t_gs.speech import espeak
        from l2t_gs.speech.segments import synthesize

        if espeak.available():
            audio, segs = synthesize(text, "espeak", sr=16000)
            return [(s.phone, s.start, s.end) for s in segs], audio, 16000, "espeak-ng"
    except ImportError:
        pass
    out, t = [], 0.0
    for item in FALLBACK.split():
        ph, ms = item.split(":")
        out.append((ph, t, t + int(ms) / 1000))
        t += int(ms) / 1000
    return out, None, 16000, "hand-made segments"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "articulation-lip-opening.png"))
    args = ap.parse_args()

    segs, audio, sr, source = clip(args.text)
    model = load_head_model("builtin")
    rig = FlameRig(model)
    track = articulate(segs, fps=args.fps, model=model)
    v = track.vertices(rig)
    with np.load(asset_path("head", "l2t_head.npz")) as z:
        up, lo = int(z["landmark_upper_lip_mid"][0]), int(z["landmark_lower_lip_mid"][0])
        c0, c1 = (int(i) for i in z["landmark_mouth_corners"])
    gap = (v[:, up] - v[:, lo]).norm(dim=-1).numpy() * 1000
    width = (v[:, c0] - v[:, c1]).norm(dim=-1).numpy() * 1000
    rest_width = float((rig(expr=torch.zeros(1, model.n_expr))[0, c0] - rig()[0, c1]).norm()) * 1000
    t = np.arange(track.n_frames) / args.fps
    duration = max(segs[-1][2], t[-1])

    W, H = 1800, 900
    L, R = 110, 40
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=20)
    small = ImageFont.load_default(size=16)
    title = ImageFont.load_default(size=24)

    def x_of(sec: float) -> float:
        return L + (W - L - R) * sec / duration

    d.text((L, 12), f'"{args.text}"  ({source}, {args.fps:g} fps, built-in head)', fill=(0, 0, 0), font=title)
    # waveform
    wave_top, wave_bot = 55, 125
    if audio is not None:
        n_px = int(W - L - R)
        idx = np.linspace(0, len(audio), n_px + 1).astype(int)
        amp = np.array([np.abs(audio[a:b]).max() if b > a else 0.0 for a, b in zip(idx[:-1], idx[1:], strict=True)])
        amp = amp / max(amp.max(), 1e-9)
        mid = 0.5 * (wave_top + wave_bot)
        for i, a in enumerate(amp):
            h = a * 0.5 * (wave_bot - wave_top)
            d.line([(L + i, mid - h), (L + i, mid + h)], fill=(120, 120, 120))
        d.text((10, mid - 10), "audio", fill=(0, 0, 0), font=small)
    # phone segments
    seg_top, seg_bot = 135, 195
    for ph, a, b in segs:
        col = COLOURS[phone_class(ph)]
        d.rectangle([x_of(a), seg_top, x_of(b), seg_bot], fill=col, outline=(255, 255, 255))
        if ph != "sil" and x_of(b) - x_of(a) > 14:
            tw = d.textlength(ph, font=font)
            tcol = (255, 255, 255) if phone_class(ph) in ("bilabial", "open vowel", "rounded") else (0, 0, 0)
            d.text((0.5 * (x_of(a) + x_of(b)) - tw / 2, seg_top + 18), ph, fill=tcol, font=font)
    d.text((10, seg_top + 18), "phones", fill=(0, 0, 0), font=small)

    def panel(top: int, bot: int, values: np.ndarray, lo_v: float, hi_v: float, step: float, label: str, colour):
        def y_of(val: float) -> float:
            return bot - (bot - top) * (val - lo_v) / (hi_v - lo_v)

        # bilabial bands behind the curve
        for ph, a, b in segs:
            if ph in BILABIAL:
                d.rectangle([x_of(a), top, x_of(b), bot], fill=(250, 222, 222))
            elif ph in LABIODENTAL:
                d.rectangle([x_of(a), top, x_of(b), bot], fill=(253, 236, 210))
        for k in np.arange(lo_v, hi_v + 1e-9, step):
            y = y_of(k)
            d.line([(L, y), (W - R, y)], fill=(225, 225, 225))
            d.text((L - 45, y - 9), f"{k:g}", fill=(0, 0, 0), font=small)
        d.rectangle([L, top, W - R, bot], outline=(0, 0, 0))
        d.text((10, top - 28), label, fill=(0, 0, 0), font=font)
        pts = [(x_of(tt), y_of(float(val))) for tt, val in zip(t, values, strict=True)]
        d.line(pts, fill=colour, width=3)
        for p in pts:
            d.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=colour)
        return y_of

    y_gap = panel(240, 560, gap, 0.0, 25.0, 5.0, "lip opening (mm)", (20, 20, 20))
    d.line([(L, y_gap(1.0)), (W - R, y_gap(1.0))], fill=(214, 48, 49), width=1)
    d.text((W - R - 150, y_gap(1.0) - 22), "1 mm (closed)", fill=(214, 48, 49), font=small)
    y_w = panel(620, 800, width, 38.0, 62.0, 6.0, "mouth width (mm)", (140, 80, 180))
    d.line([(L, y_w(rest_width)), (W - R, y_w(rest_width))], fill=(120, 120, 120), width=1)
    d.text((W - R - 90, y_w(rest_width) - 22), "rest", fill=(120, 120, 120), font=small)
    # time axis
    for k in np.arange(0.0, duration + 1e-9, 0.25):
        x = x_of(float(k))
        d.line([(x, 800), (x, 806)], fill=(0, 0, 0))
        d.text((x - 14, 810), f"{k:.2f}", fill=(0, 0, 0), font=small)
    d.text((W - R - 60, 832), "time (s)", fill=(0, 0, 0), font=small)
    # legend
    x = L
    for name, col in COLOURS.items():
        d.rectangle([x, 862, x + 22, 884], fill=col, outline=(0, 0, 0))
        d.text((x + 30, 862), name, fill=(0, 0, 0), font=small)
        x += 50 + d.textlength(name, font=small)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    bil = [gap[min(int(round((a + b) / 2 * args.fps)), len(gap) - 1)] for p, a, b in segs if p in BILABIAL]
    print(f"wrote {out}: {len(segs)} segments ({source}), {track.n_frames} frames; lip gap at bilabial centres "
          f"max {max(bil):.2f} mm, peak opening {gap.max():.1f} mm")  # fmt: skip


if __name__ == "__main__":
    main()
