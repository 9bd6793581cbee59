"""Draw docs/architecture.png: the data flow from audio to MP4 and from corpus to checkpoint.

python docs/scripts/architecture_figure.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

W, H = 1620, 860
OUT = Path(__file__).resolve().parents[1] / "architecture.png"


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def box(d: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, sub: str, fill: str) -> tuple[int, int, int, int]:
    x, y = xy
    w, h = 210, 96
    d.rounded_rectangle([x, y, x + w, y + h], radius=12, fill=fill, outline="#333333", width=2)
    d.text((x + w / 2, y + 26), text, fill="#111111", font=_font(19), anchor="mm")
    for i, line in enumerate(sub.split("\n")):
        d.text((x + w / 2, y + 52 + 17 * i), line, fill="#333333", font=_font(13), anchor="mm")
    return x, y, x + w, y + h


def arrow(d: ImageDraw.ImageDraw, a: tuple[int, int, int, int], b: tuple[int, int, int, int], label: str = "") -> None:
    if abs(a[1] - b[1]) < 5:  # same row: right edge -> left edge
        p, q = (a[2], (a[1] + a[3]) // 2), (b[0], (b[1] + b[3]) // 2)
    elif b[1] > a[1]:  # b below a: bottom -> top
        p, q = ((a[0] + a[2]) // 2, a[3]), ((b[0] + b[2]) // 2, b[1])
    else:  # b above a: top -> bottom
        p, q = ((a[0] + a[2]) // 2, a[1]), ((b[0] + b[2]) // 2, b[3])
    d.line([p, q], fill="#444444", width=3)
    ux, uy = q[0] - p[0], q[1] - p[1]
    n = max((ux * ux + uy * uy) ** 0.5, 1e-9)
    ux, uy = ux / n, uy / n
    tip = [q, (q[0] - 14 * ux + 7 * uy, q[1] - 14 * uy - 7 * ux), (q[0] - 14 * ux - 7 * uy, q[1] - 14 * uy + 7 * ux)]
    d.polygon(tip, fill="#444444")
    if label:
        if abs(p[1] - q[1]) < 5:
            d.text(((p[0] + q[0]) / 2, p[1] - 14), label, fill="#555555", font=_font(12), anchor="mm")
        else:
            d.text((p[0] + 8, (p[1] + q[1]) / 2), label, fill="#555555", font=_font(12), anchor="lm")


def main() -> None:
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((30, 22), "l2t-gs: inference (l2t_gs/)", fill="#111111", font=_font(24))
    inf = "#dbeafe"
    row = [
        ("audio", "l2t_gs.audio\nload, resample, log-mel"),
        ("models", "l2t_gs.models\nencoders -> Audio2Mesh"),
        ("motion + rig", "l2t_gs.motion / .rig\ncontacts, FLAME LBS"),
        ("gaussians", "l2t_gs.gaussians\nsplats on triangles"),
        ("render", "l2t_gs.render\nBACKENDS: gsplat | cpu | torch"),
        ("io / pipeline", "l2t_gs.pipeline, .io\nMP4 + audio, PLY, npz"),
    ]
    boxes = [box(d, (30 + i * 265, 70), t, s, inf) for i, (t, s) in enumerate(row)]
    labels = ["16 kHz", "rig coeffs", "vertices", "splats", "frames"]
    for a, b, lab in zip(boxes, boxes[1:], labels, strict=False):
        arrow(d, a, b, lab)
    speech = box(d, (30 + 2 * 265, 210), "speech", "l2t_gs.speech\nalign --text, TTS, phones", inf)
    arrow(d, speech, boxes[2], "phone timing")
    cli = box(d, (30 + 5 * 265, 210), "cli / viewer", "l2t_gs.cli, l2t_gs.viewer\nthin over the API", "#e0e7ff")
    arrow(d, boxes[5], cli)
    auth = box(d, (30 + 3 * 265, 210), "authoring", "l2t_gs.authoring\nbuilt-in head, avatar build", "#e0e7ff")
    arrow(d, auth, boxes[3], "")

    d.text((30, 350), "training (training/, installed as l2t_gs.training)", fill="#111111", font=_font(24))
    tr = "#dcfce7"
    row2 = [
        ("corpus", "training.data\nsynth (TTS + channels)\nhuman (aligned prompts)"),
        ("dataset", "training.data.datasets\nVOCASET / BIWI layout"),
        ("trainers", "training.trainers\nTRAINERS registry"),
        ("losses", "training.losses\nLOSSES registry"),
        ("checkpoint", "l2t_gs.io.checkpoint\natomic, resumable"),
        ("evaluate", "training.metrics\nMETRICS registry"),
    ]
    b2 = [box(d, (30 + i * 265, 400), t, s, tr) for i, (t, s) in enumerate(row2)]
    for a, b, lab in zip(b2, b2[1:], ["wav + motion", "batches", "loss terms", "weights", "scores"], strict=False):
        arrow(d, a, b, lab)
    experts = box(d, (30 + 3 * 265, 530), "experts", "training.models\nSyncNet3D, lip reader", tr)
    arrow(d, experts, b2[3], "frozen")

    d.text((30, 670), "Layers, bottom to top (imports only go down; tests/test_architecture.py):", fill="#111111",
           font=_font(17))  # fmt: skip
    layers = ("errors, core, io, assets -> audio -> speech -> rig -> motion -> models -> gaussians -> render -> "
              "pipeline, catalog -> authoring -> training -> viewer -> cli")  # fmt: skip
    d.text((30, 700), layers, fill="#333333", font=_font(15))
    d.text((30, 740), "Registries (l2t_gs.core.registry.Registry): rasterizer BACKENDS, audio ENCODERS, LOSSES, "
           "METRICS, TRAINERS.", fill="#333333", font=_font(15))  # fmt: skip
    img.save(OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
