"""``l2t-gs eval``: score an Audio2Mesh model on a dataset split (LVE, FDD, lip closure, lip correlation),
optionally under FaceFormer's test protocol and saving every prediction for ``l2t-gs render --motion``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from l2t_gs.cli.prog import COMMAND_HELP
from l2t_gs.core.device import resolve_device
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import output_parent

_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}


def parse_units(text: str) -> float:
    """Metres per data unit from ``m``/``cm``/``mm`` or a positive number."""
    if text in _UNITS:
        return _UNITS[text]
    try:
        value = float(text)
    except ValueError:
        raise L2TError(f"--units: expected m, cm, mm or metres per data unit, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise L2TError(f"--units must be positive, got {text!r}")
    return value


def parse_lip_pair(text: str | None) -> tuple[int, int] | None:
    """``U,L`` -> (upper-lip vertex, lower-lip vertex)."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        u, low = (int(p) for p in parts)
    except ValueError:
        raise L2TError(f"--lip-pair needs two vertex indices U,L, got {text!r}") from None
    if u < 0 or low < 0 or u == low:
        raise L2TError(f"--lip-pair needs two different non-negative vertex indices, got {text!r}")
    return u, low


def _load_model(spec: str, device: str = "cpu"):
    try:
        from l2t_gs.models.checkpoint import load_model
    except ImportError as exc:
        raise L2TError(f"Audio2Mesh models are unavailable in this installation ({exc})") from None
    try:
        return load_model(spec, device=device)
    except L2TError:
        raise
    except (OSError, EOFError, ValueError, KeyError, RuntimeError, TypeError, AttributeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise L2TError(f"cannot load model {spec}: {type(exc).__name__}: {first}") from None


#: The manifest ``--save-predictions`` writes beside the ``.npy`` files (``render --motion`` reads its fps).
PREDICTIONS_JSON = "predictions.json"


class PredictionWriter:
    """Saves each prediction as ``DIR/<clip>.npy`` (float32 ``[T, V*3]``, the layout of VOCASET's and BIWI's
    ``vertices_npy`` files, at the evaluated fps) or, when a clip is predicted under several speaker styles,
    ``DIR/<clip>_condition_<style>.npy`` (FaceFormer's names); :meth:`close` writes ``DIR/predictions.json``
    (fps, vertex count and one entry per file)."""

    def __init__(self, folder: str, multi_style: bool, meta: dict) -> None:
        self.dir = Path(folder)
        output_parent(self.dir, "--save-predictions: parent directory", writable=False)
        if self.dir.exists() and not self.dir.is_dir():
            raise L2TError(f"--save-predictions is not a directory: {self.dir}")
        self.dir.mkdir(exist_ok=True)
        self.multi, self.meta = multi_style, meta
        self.files: dict[str, dict] = {}
        self.fps: float | None = None
        self.n_verts: int | None = None

    def __call__(self, clip, style, pred) -> None:
        import numpy as np

        from l2t_gs.io.atomic import atomic_path

        name = f"{clip.name}_condition_{style}" if self.multi and style is not None else str(clip.name)
        flat = np.ascontiguousarray(np.asarray(pred, dtype=np.float32).reshape(pred.shape[0], -1))
        with atomic_path(self.dir / f"{name}.npy", suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, flat)
        self.fps, self.n_verts = float(clip.fps), int(pred.shape[1])
        self.files[f"{name}.npy"] = {
            "clip": str(clip.name), "subject": str(clip.subject), "style": style, "frames": int(pred.shape[0]),
        }  # fmt: skip

    def close(self) -> None:
        from l2t_gs.io.atomic import write_text_atomic

        manifest = {
            "format": "l2t-gs-predictions", "version": 1, "fps": self.fps, "n_verts": self.n_verts,
            "layout": "float32 [frames, n_verts * 3] per file", **self.meta, "files": self.files,
        }  # fmt: skip
        write_text_atomic(self.dir / PREDICTIONS_JSON, json.dumps(manifest, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    from l2t_gs.io.atomic import write_text_atomic
    from l2t_gs.training.data.datasets import load_dataset
    from l2t_gs.training.metrics.evaluate import LipClosure, evaluate, get_metric

    unit_m = parse_units(args.units)
    lip_pair = parse_lip_pair(args.lip_pair)
    if args.json is not None:
        output_parent(args.json, "--json: output directory", writable=False)
    if args.limit is not None and args.limit < 1:
        raise L2TError(f"--limit must be at least 1, got {args.limit}")
    names = [n.strip() for n in args.metrics.split(",") if n.strip()]
    if args.syncnet and "lse" not in names:
        names.append("lse")
    if args.per_speaker and "lipsync" not in names:
        names.append("lipsync")
    dev = str(resolve_device(args.device))

    def make(name: str):
        if name == "lip_closure":
            return LipClosure(threshold_mm=args.closure_mm)
        if name == "lse" and args.syncnet:
            from l2t_gs.training.metrics.lse import LSE

            return LSE(args.syncnet, device=dev)
        if name == "lipsync":
            from l2t_gs.training.metrics.lipsync_eval import LipSync

            return LipSync(baseline=None if args.baseline == "none" else args.baseline)
        return get_metric(name)

    metrics = [make(n) for n in names]
    if not metrics:
        raise L2TError("--metrics names no metric")

    protocol = getattr(args, "protocol", "default")
    if protocol == "faceformer" and args.style is not None:
        raise L2TError("--protocol faceformer chooses the styles itself; leave out --style")
    model = _load_model(args.model, dev)
    dataset = load_dataset(args.data, kind=args.kind, split=args.split)
    writer = None
    if getattr(args, "save_predictions", None):
        meta = {"model": str(args.model), "data": str(args.data), "split": args.split, "protocol": protocol}
        writer = PredictionWriter(args.save_predictions, protocol == "faceformer" or args.style == "all", meta)
    if args.channel != "clean":
        from l2t_gs.training.data.channels import ChannelDataset

        dataset = ChannelDataset(dataset, args.channel)

    def progress(i: int, total: int | None, name: str) -> None:
        if not args.quiet:
            print(f"[{i + 1}/{total if total is not None else '?'}] {name}", file=sys.stderr, flush=True)

    result = evaluate(
        model,
        dataset,
        args.regions,
        metrics=metrics,
        style=args.style,
        unit_m=unit_m,
        lip_pair=lip_pair,
        data_root=args.data,
        limit=args.limit,
        progress=progress,
        protocol=protocol,
        on_prediction=writer,
    )
    if writer is not None:
        writer.close()
    print(result.table())
    lipsync_report = None
    if args.per_speaker:
        from l2t_gs.training.metrics.lipsync_eval import markdown_report, per_speaker_systems

        lipsync_report = {"per_speaker": per_speaker_systems(result), "markdown": markdown_report(result)}
        print("\n" + lipsync_report["markdown"])
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if writer is not None:
        print(f"wrote {len(writer.files)} prediction(s) to {writer.dir}", file=sys.stderr)
    if args.json is not None:
        extra = {"lipsync": lipsync_report} if lipsync_report is not None else {}
        extra["channel"] = args.channel
        report = result.to_dict(model=str(args.model), data=str(args.data), split=args.split, style=args.style, **extra)
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help=COMMAND_HELP["eval"],
        description=(
            "Run an Audio2Mesh model on every clip of a dataset split and print per-subject and overall "
            "metrics: LVE and FDD in mm^2 (CodeTalker's definitions), lip-closure recall on bilabial "
            "phones and the correlation of predicted and true lip opening (lip-gap metrics need phone "
            "segments and a lip vertex pair)."
        ),
    )
    p.add_argument("--model", required=True, help="trained model: run directory or checkpoint file")
    p.add_argument("--data", required=True, help="dataset root (FaceFormer layout: wav/, vertices_npy/, templates.pkl)")
    p.add_argument("--kind", default="auto", choices=["auto", "vocaset", "biwi", "custom"], help="dataset kind")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--json", metavar="OUT", help="also write the full report (per clip) as JSON")
    p.add_argument(
        "--regions",
        metavar="FILE",
        help="lip/upper-face regions: .npz/.json ('lips', 'upper_face', optional 'lip_pair'), FLAME_masks.pkl, "
        "or a folder with CodeTalker's lve.txt + fdd.txt (default: the data root's, else the built-in head's)",
    )
    p.add_argument("--lip-pair", metavar="U,L", help="upper- and lower-lip midline vertex for the lip gap")
    p.add_argument(
        "--units", default="m", help="length unit of the data: m (default; FLAME, VOCASET), cm, mm, or metres per unit"
    )
    p.add_argument(
        "--style",
        default=None,
        help="speaker style: a training subject, 'all' (every one), or auto (default: the clip's subject "
        "if the model knows it, else the model's mean style)",
    )
    p.add_argument(
        "--protocol",
        default="default",
        choices=["default", "faceformer"],
        help="default: one row per test subject (styles as --style); faceformer: FaceFormer's test protocol, a "
        "subject seen in training conditioned on itself and an unseen one once on every training speaker, "
        "one row per condition plus their mean",
    )
    p.add_argument(
        "--save-predictions",
        metavar="DIR",
        help="also save every prediction as DIR/<clip>.npy (float32 [frames, vertices*3], like vertices_npy; "
        "<clip>_condition_<style>.npy under several styles) with DIR/predictions.json; render them with "
        "'l2t-gs render AUDIO --motion DIR/<clip>.npy'",
    )
    p.add_argument("--closure-mm", type=float, default=1.0, help="lip gap counted as closed, mm (default 1)")
    p.add_argument(
        "--metrics", default="lve,fdd,lip_closure,lip_corr", help="comma-separated metrics (default: all built-in)"
    )
    p.add_argument("--device", default="auto", help="auto (default: cuda if available), cpu or cuda[:N]")
    p.add_argument(
        "--syncnet", metavar="RUN", help="a trained SyncNet3D (run dir or checkpoint): adds LSE-D, LSE-C and offset"
    )
    p.add_argument(
        "--baseline",
        default="energy",
        choices=["energy", "none"],
        help="baseline scored beside the model by the lipsync metric (default: energy: audio loudness -> lip gap)",
    )
    p.add_argument(
        "--per-speaker",
        action="store_true",
        help="add the lipsync metric and print its per-speaker markdown table (model, ground truth, baseline)",
    )
    p.add_argument(
        "--channel",
        default="clean",
        choices=["clean", "8k", "telephone"],
        help="pass each clip's audio through a channel first: 8k (resampled through 8 kHz), telephone "
        "(300-3400 Hz band, 8 kHz, G.711 mu-law); the same utterances as clean (default clean)",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--quiet", action="store_true", help="no per-clip progress on stderr")
    p.set_defaults(func=run)
