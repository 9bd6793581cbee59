"""Calibrate the contact threshold of an Audio2Mesh model with a contact head, on a validation split.

The contact loss weighs contact frames up (``pos_weight`` w), which inflates the predicted odds by about
w: a frame the head calls 50 % is rarer than that. ``l2t-gs train contact-threshold`` runs the model once
per clip of the split (raw rig parameters and contact probabilities), then for every threshold, lip-gap
gate, closure hold and peak radius of a grid (the gate: a contact frame closes only where the decoder's own
lip gap is under it, 0: no gate; the hold: each run of contact frames is cut to that long around its most
probable frame, 0: whole runs; the peak radius: with a hold, every local maximum of the probability within
it keeps a closure, 0: one per run) applies the contacts exactly as inference does
(:func:`l2t_gs.motion.contacts.apply_contacts`),
skins the lip pair (:func:`l2t_gs.motion.contacts.lip_gap_mm`) and scores the lip gap against the
clip's phones (:mod:`l2t_gs.training.metrics.lipsync`):
closure recall (< 1 mm) and false closures per open vowel. It picks the setting with the highest recall
whose false-closure rate stays within ``--max-false`` (else the one with the fewest false closures) and
writes a copy of the checkpoint with ``contact_threshold``, ``contact_gate_mm``, ``contact_hold_s`` and
``contact_peak_s`` set,
plus the whole sweep as JSON beside it::

    l2t-gs train contact-threshold --model runs/default12 --data runs/human --split val --out runs/default12/model.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import output_parent, write_text_atomic
from l2t_gs.models.checkpoint import load_model, save_checkpoint
from l2t_gs.motion.contacts import apply_contacts, lip_gap_mm
from l2t_gs.training.data.datasets import load_dataset, phone_clips
from l2t_gs.training.metrics import lipsync
from l2t_gs.training.metrics.regions import builtin_regions
from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS, Trainer

GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Lip-gap gates swept (mm; 0: no gate).
GATES = (0.0, 2.0, 3.0, 4.0)
#: Closure holds swept (seconds; 0: whole runs; 0.04 and 0.07 are one and two frames at 25 and 30 fps).
HOLDS = (0.0, 0.04, 0.07)
#: Peak radii swept (seconds; 0: one closure per contact run; 0.07: two frames at 25 and 30 fps).
PEAKS = (0.0, 0.07)


def sweep(
    model: Any,
    clips: list[Any],
    thresholds: tuple[float, ...],
    pair: tuple[int, int],
    gates: tuple[float, ...] = (0.0,),
    holds: tuple[float, ...] = (0.0,),
    peaks: tuple[float, ...] = (0.0,),
) -> list[dict[str, float]]:
    """Aggregated lip-sync scores (:func:`lipsync.aggregate`) of ``model`` on ``clips`` for each
    (threshold, gate, hold, peak radius), one row each with ``threshold``, ``gate_mm``, ``hold_s`` and
    ``peak_s`` (a peak radius matters only with a hold: without one only the smallest radius is scored)."""
    grid = [(t, g, h, r) for r in peaks for h in holds for g in gates for t in thresholds if h > 0 or r == min(peaks)]
    rows: dict[tuple[float, float, float, float], list[dict[str, float]]] = {k: [] for k in grid}
    for clip in clips:
        params = model.predict_params(clip.audio, fps=clip.fps, contacts=False)
        probs = params.pop("contacts")
        for t, g, h, r in grid:
            p = apply_contacts(params, probs, model.head, t, fps=clip.fps, gate_mm=g, hold_s=h, peak_s=r)
            gap = lip_gap_mm(p["expr"], p["jaw_pose"], model.head, pair)  # the lip pair skinned alone
            rows[t, g, h, r].append(lipsync.score_clip(gap, clip.phones, clip.fps))
    return [
        {"threshold": t, "gate_mm": g, "hold_s": h, "peak_s": r, **lipsync.aggregate(rows[t, g, h, r])}
        for t, g, h, r in grid
    ]


def choose(table: list[dict[str, float]], max_false: float) -> dict[str, float]:
    """The row with the highest closure recall whose false-closure rate is within ``max_false`` (ties: the
    fewer false closures, then the higher threshold); when none is, the row with the fewest false closures."""
    ok = [r for r in table if r["false_closure_rate"] <= max_false]
    if ok:
        return max(ok, key=lambda r: (r["recall1"], -r["false_closure_rate"], r["threshold"]))
    return min(table, key=lambda r: (r["false_closure_rate"], -r["recall1"]))


def calibrate(
    model_path: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str = "val",
    max_false: float = 0.05,
    limit: int | None = None,
    subjects: list[str] | None = None,
    thresholds: tuple[float, ...] = GRID,
    gates: tuple[float, ...] = GATES,
    holds: tuple[float, ...] = HOLDS,
    peaks: tuple[float, ...] = PEAKS,
) -> dict[str, Any]:
    """Sweep, choose, write ``out`` (the checkpoint with ``contact_threshold``) and ``out``.json."""
    out = Path(out)
    if out.suffix != ".pt":
        raise L2TError(f"--out must end in .pt, got {out}")
    output_parent(out, writable=False)
    if not all(0.0 < t < 1.0 for t in thresholds):
        raise L2TError(f"thresholds must lie in (0, 1), got {thresholds}")
    if not gates or not all(0.0 <= g < 100.0 for g in gates):
        raise L2TError(f"--gates must be lip gaps in [0, 100) mm, got {list(gates)}")
    if not holds or not all(0.0 <= h <= 1.0 for h in holds):
        raise L2TError(f"--holds must be closure lengths in [0, 1] s, got {list(holds)}")
    if not peaks or not all(0.0 <= r <= 1.0 for r in peaks):
        raise L2TError(f"--peaks must be peak radii in [0, 1] s, got {list(peaks)}")
    model = load_model(model_path)
    if not model.config.contact_head:
        raise L2TError(f"{model_path}: the model has no contact head (contact_head = true in [model])")
    dataset = load_dataset(data, split=split)
    clips = [  # what the sweep needs of each clip (its meshes are not kept)
        SimpleNamespace(audio=c.audio, fps=c.fps, phones=c.phones, subject=c.subject)
        for c in phone_clips(dataset, subjects, limit)
    ]
    if not clips:
        raise L2TError(f"{data}: no clip of split {split!r} has phone segments to score contacts against")
    table = sweep(
        model,
        clips,
        tuple(sorted(set(thresholds))),
        builtin_regions().lip_pair,
        tuple(sorted(set(gates))),
        tuple(sorted(set(holds))),
        tuple(sorted(set(peaks))),
    )
    best = choose(table, max_false)
    model.config.contact_threshold = float(best["threshold"])
    model.config.contact_gate_mm = float(best["gate_mm"])
    model.config.contact_hold_s = float(best["hold_s"])
    model.config.contact_peak_s = float(best["peak_s"]) if best["hold_s"] > 0 else 0.0
    save_checkpoint(out, model)
    report = {
        "model": str(model_path),
        "data": str(data),
        "split": split,
        "clips": len(clips),
        "subjects": sorted({c.subject for c in clips}),
        "max_false": max_false,
        "chosen": best,
        "sweep": table,
    }
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=2, default=float) + "\n")
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="RUN", help="Audio2Mesh run folder or checkpoint")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset with phone segments")
    p.add_argument("--out", required=True, metavar="FILE.pt", help="calibrated checkpoint (+ FILE.json sweep)")
    p.add_argument("--split", default="val", help="split to calibrate on (default val)")
    p.add_argument("--max-false", type=float, default=0.05, help="false closures per open vowel allowed (0.05)")
    p.add_argument("--limit", type=int, help="first N clips with phones of the split only")
    p.add_argument("--subjects", nargs="+", metavar="PATTERN", help="only these subjects (fnmatch patterns)")
    grids = (
        ("--thresholds", GRID, "P", "contact probabilities to sweep (default 0.3 0.4 ... 0.9)"),
        ("--gates", GATES, "MM", "lip-gap gates to sweep, mm (0: none; default 0 2 3 4)"),
        ("--holds", HOLDS, "S", "closure holds to sweep, seconds (0: whole contact runs; default 0 0.04 0.07)"),
        ("--peaks", PEAKS, "S", "peak radii to sweep with a hold, seconds (0: one closure per run; default 0 0.07)"),
    )
    for flag, default, metavar, text in grids:
        p.add_argument(flag, nargs="+", type=float, default=list(default), metavar=metavar, help=text)


def run(args: argparse.Namespace) -> int:
    report = calibrate(
        args.model,
        args.data,
        args.out,
        split=args.split,
        max_false=args.max_false,
        limit=args.limit,
        subjects=args.subjects,
        thresholds=tuple(args.thresholds),
        gates=tuple(args.gates),
        holds=tuple(args.holds),
        peaks=tuple(args.peaks),
    )
    for row in report["sweep"]:
        print(
            f"threshold {row['threshold']:.2f} gate {row['gate_mm']:g} mm hold {row['hold_s']:g} s "
            f"peaks {row['peak_s']:g} s: "
            f"closure<1mm {row['recall1']:.3f}  "
            f"mid {row['recall1_mid']:.3f}  "
            f"false/ov {row['false_closure_rate']:.3f}  r {row['r']:.3f}",
            file=sys.stderr,
        )
    chosen = report["chosen"]
    print(
        f"chose threshold {chosen['threshold']:.2f}, gate {chosen['gate_mm']:g} mm, hold {chosen['hold_s']:g} s, "
        f"peaks {chosen['peak_s']:g} s; "
        f"wrote {args.out}",
        file=sys.stderr,
    )
    return 0


TRAINERS.add("contact-threshold", Trainer(add_arguments, run), help=TRAINER_HELP["contact-threshold"])

__all__ = ["GATES", "GRID", "HOLDS", "PEAKS", "calibrate", "choose", "sweep"]
