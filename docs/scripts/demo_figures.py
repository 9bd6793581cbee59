"""Draw the pictures of docs/demo-videos.md: one frame of each demo layout, rendered through the public API.

    python docs/scripts/demo_figures.py [--size 160] [--at 0.6]

Audio: the first 2 s of the shipped sample (``l2t_gs/assets/samples/hello.wav``, "Hello! My name is
Ava."); its phone segments (``hello.json``) are the captions and, through the articulation module, the
"phones" motion the model is compared with. Frames are rendered at 5 fps so that the picture at
``--at`` seconds is a frame of the video; each picture is the frame ``render --layout ...`` would encode.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from l2t_gs.assets import asset_path
from l2t_gs.audio.io import load_audio
from l2t_gs.motion.articulation import articulate
from l2t_gs.pipeline import RenderConfig, default_model_path, render_frames

DOCS = Path(__file__).resolve().parents[1]
SECONDS, FPS = 2.0, 5.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=160, help="tile size in pixels (default 160)")
    ap.add_argument("--at", type=float, default=0.6, help="time of the pictured frame, seconds (default 0.6)")
    args = ap.parse_args()
    import soundfile as sf

    audio = load_audio(asset_path("samples", "hello.wav"), sr=16000)[: int(SECONDS * 16000)]
    phones = [p for p in json.loads(asset_path("samples", "hello.json").read_text()) if p["start"] < SECONDS]
    with tempfile.TemporaryDirectory() as tmp:
        wav, caps, motion = Path(tmp) / "clip.wav", Path(tmp) / "phones.json", Path(tmp) / "phones.npz"
        sf.write(wav, audio, 16000)
        caps.write_text(json.dumps(phones))
        track = articulate([(p["phone"], p["start"], p["end"]) for p in phones], fps=FPS, n_frames=int(SECONDS * FPS))
        np.savez(motion, expr=track.expr, jaw_pose=track.jaw_pose, fps=FPS)
        base = dict(size=args.size, fps=FPS, waveform=True, captions=str(caps))
        shots = {
            "demo-grid.png": RenderConfig(layout="grid", cameras=("front", "three-quarter", "side"), **base),
            "demo-compare.png": RenderConfig(compare=(f"model={default_model_path()}", f"phones={motion}"), **base),
        }
        index = int(round(args.at * FPS))
        for name, cfg in shots.items():
            for i, frame in enumerate(render_frames(wav, cfg)):
                if i == index:
                    Image.fromarray(frame).save(DOCS / name, optimize=True)
                    print(f"wrote {DOCS / name} ({frame.shape[1]}x{frame.shape[0]})")
                    break


if __name__ == "__main__":
    main()
