"""Audio2Mesh inference speed and memory on long audio: compute seconds per second of audio.

Models have random weights (speed does not depend on training): the built-in encoder (log-mel + conv
+ 4-layer banded transformer, 128 wide) and a wav2vec2-base-sized encoder built from a config
(hidden 768, 12 layers, 7-layer CNN; what FaceFormer uses), each with the default decoder (64 wide,
2 layers) predicting 5023 vertices (VOCASET/FLAME topology) or, for ``--rig``, built-in head rig
coefficients decoded through the FLAME rig (7931 vertices). Decoders: ``nar`` (non-autoregressive,
the default), ``ar`` (autoregressive with a key/value cache) and ``ar-nocache`` (FaceFormer's
inference: the whole prefix re-decoded for every new frame; only run on short clips).

Frames are consumed from :meth:`Audio2Mesh.predict_stream` and dropped, as a renderer streaming them
would do; holding all frames (``predict``) adds ``T x V x 12`` bytes (600 s at 30 fps, 5023 vertices:
1.1 GB), which is the output, not working memory.

Memory: peak resident set size during the call minus the resident size before it, read from
``VmHWM``/``VmRSS`` in ``/proc/self/status`` after resetting the peak with ``/proc/self/clear_refs``
(Linux). This counts every allocation (torch's C++ allocator included, which tracemalloc does not see).

    python benchmarks/audio2mesh.py                    # 10 s, 60 s, 600 s; builtin + wav2vec2-base
    python benchmarks/audio2mesh.py --lengths 10 --encoders builtin --decoders nar,ar,ar-nocache
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import torch

from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
from l2t_gs.models.encoders import SAMPLE_RATE, HFEncoder

WAV2VEC2_BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "feat_extract_norm": "group",
    "do_stable_layer_norm": False,
}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def build(encoder: str, decoder: str, rig: bool) -> Audio2Mesh:
    torch.manual_seed(0)
    cfg = Audio2MeshConfig(decoder="ar" if decoder.startswith("ar") else "nar", dropout=0.0)
    enc = None
    if encoder == "wav2vec2-base":
        from transformers import Wav2Vec2Config

        cfg.encoder = "wav2vec2"
        enc = HFEncoder.from_config("wav2vec2", Wav2Vec2Config(**WAV2VEC2_BASE).to_dict(), normalize=True)
    if rig:
        cfg.output = "rig"
    n_verts = 7931 if rig else 5023
    model = Audio2Mesh(cfg, ["speaker"], n_verts, encoder=enc).eval()
    for p in model.decoder.out.parameters():  # non-zero motion (the trained-from-scratch init is all zeros)
        torch.nn.init.normal_(p, std=0.01)
    return model


def _nocache_ar(model: Audio2Mesh, audio: torch.Tensor) -> None:
    """FaceFormer-style inference: re-decode the whole prefix for each new frame (O(T^2))."""
    with torch.inference_mode():
        t = model.n_frames(audio.shape[0], model.fps)
        feats = model.encode(audio[None], t)
        style = model.decoder.style_vector(torch.tensor([0]))
        prev = feats.new_zeros(1, 1, model.decoder.out_dim)
        for i in range(t):
            out = model.decoder(feats[:, : i + 1], style, 0, prev)
            prev = torch.cat([prev, out[:, -1:]], dim=1)


def measure(model: Audio2Mesh, decoder: str, seconds: float, chunk_s: float) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(1)
    audio = 0.1 * torch.randn(int(seconds * SAMPLE_RATE), generator=gen)
    template = torch.zeros(model.n_verts, 3)
    rss0 = _status_kb("VmRSS")
    exact = _reset_peak()
    t0 = time.perf_counter()
    frames = 0
    if decoder == "ar-nocache":
        _nocache_ar(model, audio)
        frames = model.n_frames(audio.shape[0], model.fps)
    else:
        for chunk in model.predict_stream(audio, template, style=0, chunk_seconds=chunk_s):
            frames += chunk.shape[0]
    dt = time.perf_counter() - t0
    peak = _status_kb("VmHWM") if exact else _status_kb("VmRSS")
    return {
        "seconds": seconds,
        "frames": frames,
        "compute_s": dt,
        "s_per_s": dt / seconds,
        "x_realtime": seconds / dt,
        "peak_mb": max(0, peak - rss0) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="10,60,600", help="clip lengths in seconds")
    ap.add_argument("--encoders", default="builtin,wav2vec2-base")
    ap.add_argument("--decoders", default="nar,ar", help="nar, ar, ar-nocache (ar-nocache: clips <= 30 s)")
    ap.add_argument("--rig", action="store_true", help="also the built-in head rig output (nar)")
    ap.add_argument("--chunk", type=float, default=10.0, help="chunk_seconds of predict_stream")
    ap.add_argument("--ar-max", type=float, default=600.0, help="longest clip for the AR decoder")
    ap.add_argument("--repeat", type=int, default=3, help="runs per clip up to 60 s (the fastest is shown; 1 above)")
    args = ap.parse_args()
    lengths = [float(x) for x in args.lengths.split(",")]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}; chunk {args.chunk:g} s; memory = peak RSS delta (VmHWM); "
        f"load average {os.getloadavg()[0]:.2f}; fastest of {args.repeat} runs up to 60 s"
    )
    print(
        f"{'encoder':<14} {'decoder':<11} {'output':<14} {'audio s':>8} {'compute s':>10} {'s per s':>9} "
        f"{'x realtime':>11} {'peak MB':>8}"
    )
    runs = [(e, d, False) for e in args.encoders.split(",") for d in args.decoders.split(",")]
    if args.rig:
        runs += [("builtin", "nar", True)]  # rig decoding cost does not depend on the encoder
    for enc, dec, rig in runs:
        if enc != "builtin" and dec != "nar":
            continue  # the decoder comparison does not depend on the encoder
        model = build(enc, dec, rig)
        measure(model, dec, 1.0, args.chunk)  # warm-up
        out = f"rig {model.n_verts}v" if rig else f"vertices {model.n_verts}"
        for sec in lengths:
            if (dec == "ar-nocache" and sec > 30) or (dec == "ar" and sec > args.ar_max):
                continue
            runs_here = [measure(model, dec, sec, args.chunk) for _ in range(args.repeat if sec <= 60 else 1)]
            r = min(runs_here, key=lambda x: x["compute_s"]) | {"peak_mb": max(x["peak_mb"] for x in runs_here)}
            print(
                f"{enc:<14} {dec:<11} {out:<14} {sec:>8.0f} {r['compute_s']:>10.2f} {r['s_per_s']:>9.4f} "
                f"{r['x_realtime']:>11.1f} {r['peak_mb']:>8.1f}",
                flush=True,
            )
        del model
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
