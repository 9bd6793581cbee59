"""Evaluate a speech-to-motion model on a dataset split: per-clip, per-subject and overall metrics.

:func:`evaluate` runs the model on every clip, cuts prediction and ground truth to their common
length, and hands each clip to every metric of a registry (:data:`METRICS`). A metric is a
:class:`Metric` subclass: ``compute(ctx)`` gives the per-clip values, ``reduce(rows)`` the values of a
group of clips (a subject, the whole split). Metrics that need something a clip lacks (phone
segments, a lip vertex pair, audio) are skipped for that clip with a note. Later metrics (e.g.
SyncNet3D's LSE-D/LSE-C, which need audio and a network) plug in with :func:`register_metric` or by
passing instances to ``evaluate(metrics=[...])``.

Built-in metrics (definitions in :mod:`l2t_gs.training.metrics.motion`; distances are converted to mm with
the data's unit, metres by default):

- ``lve``: lip vertex error (CodeTalker ``main/cal_metric.py``), mm^2 and raw squared data units;
  groups: frame-weighted mean over all frames (cal_metric.py pools frames).
- ``fdd``: upper-face dynamics deviation (same file), mm^2 and raw; groups: mean over clips.
- ``lip_closure``: recall of lip closure on bilabial phones (p, b, m): a phone counts as closed when
  the predicted lip gap (distance of the lip vertex pair) is below ``threshold_mm`` (1 mm) at one or
  more motion frames inside the phone interval ([start, end); the frame nearest the middle for phones
  shorter than a frame). Groups pool phones (closed phones / bilabial phones). The same quantity on the
  ground truth is reported as ``closure_recall_gt`` (a ceiling and a check of the threshold).
- ``lip_corr``: Pearson correlation over time of predicted and ground-truth lip gap, per clip; groups:
  mean over clips where it is defined (both signals vary). Per clip, because identities differ in
  rest gap and pooling would reward matching those offsets rather than the motion.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from l2t_gs.errors import L2TError
from l2t_gs.training.metrics import motion
from l2t_gs.training.metrics.base import (
    METRICS,
    ClipContext,
    ClipResult,
    Column,
    Metric,
    get_metric,
    register_metric,
)
from l2t_gs.training.metrics.regions import Regions, resolve_regions
from l2t_gs.training.metrics.standard import FDD, LVE, LipClosure, LipCorrelation

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "ClipContext",
    "ClipResult",
    "Column",
    "EvalResult",
    "LOW_MOTION_FRACTION",
    "PROTOCOLS",
    "FDD",
    "LVE",
    "LipClosure",
    "LipCorrelation",
    "Metric",
    "evaluate",
    "get_metric",
    "motion_amount",
    "motion_ratio",
    "register_metric",
]

DEFAULT_METRICS: tuple[str, ...] = ("lve", "fdd", "lip_closure", "lip_corr")
Predictor = Callable[[Any], Any]  # clip -> predicted vertices [T, V, 3]
#: Evaluation protocols: ``default`` (``style`` as given) and ``faceformer`` (FaceFormer's test.py: a subject
#: seen in training is conditioned on itself, an unseen one once on every training speaker; reported per
#: condition plus their mean).
PROTOCOLS: tuple[str, ...] = ("default", "faceformer")
#: Predictions whose motion is below this fraction of the ground truth's are flagged (:func:`motion_ratio`).
LOW_MOTION_FRACTION = 0.10


# --------------------------------------------------------------------------- results
def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _fmt(value: float | None, fmt: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return format(value, fmt)


@dataclass
class EvalResult:
    """Per-clip rows and per-subject / overall aggregates of an evaluation."""

    clips: list[ClipResult]
    subjects: dict[str, dict[str, float]]
    overall: dict[str, float]
    metrics: list[Metric]
    regions: Regions
    unit_m: float
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conditions: dict[str, dict[str, float]] = field(default_factory=dict)  # style -> aggregate (faceformer)
    protocol: str = "default"
    motion_ratio: float = float("nan")  # predicted / ground-truth motion (see :func:`motion_ratio`)

    def to_dict(self, **meta: Any) -> dict[str, Any]:
        """The JSON report (NaN as ``null``); ``meta`` (model, data, split, ...) is included as given."""
        return _clean(
            {
                "format": "l2t-gs-eval",
                "version": 1,
                **meta,
                "units": {
                    "data_unit_m": self.unit_m,
                    "lve_mm2": "mm^2",
                    "fdd_mm2": "mm^2",
                    "lve_raw": "data units^2 (CodeTalker's printed value)",
                    "fdd_raw": "data units^2 (CodeTalker's printed value)",
                    "lip_gap": "mm",
                },
                "regions": self.regions.summary(),
                "metrics": {m.name: {"definition": m.description, **m.config()} for m in self.metrics},
                "overall": self.overall,
                "subjects": self.subjects,
                "clips": [c.to_dict() for c in self.clips],
                "notes": self.notes,
                "warnings": self.warnings,
                "protocol": self.protocol,
                "motion_ratio": self.motion_ratio,
                **({"conditions": self.conditions, "condition_mean": self.condition_mean()} if self.conditions else {}),
            }
        )

    def condition_mean(self) -> dict[str, float]:
        """The mean over the condition rows of every value (FaceFormer's reported number); ``clips``: distinct
        clips. With the same clips under every condition, LVE's mean equals its frame-pooled value."""
        rows = list(self.conditions.values())
        keys = [k for k in rows[0] if k != "clips"] if rows else []
        out = {}
        for k in keys:
            vals = [float(r[k]) for r in rows if r.get(k) is not None and math.isfinite(float(r[k]))]
            out[k] = sum(vals) / len(vals) if vals else math.nan
        return {"clips": len({c.name for c in self.clips}), **out}

    def table(self) -> str:
        """A plain-text table: one row per subject, then the overall row (protocol ``faceformer``: one row
        per training-speaker condition, then their mean)."""
        cols = [c for m in self.metrics for c in m.columns]
        by_condition = self.protocol == "faceformer"
        header = ["condition" if by_condition else "subject", "clips", "frames", *(c.label for c in cols)]
        body = []
        groups = (
            [*self.conditions.items(), ("mean", self.condition_mean())]
            if by_condition
            else [*self.subjects.items(), ("overall", self.overall)]
        )
        for name, vals in groups:
            body.append(
                [name, str(int(vals["clips"])), str(int(vals["frames"])), *(_fmt(vals.get(c.key), c.fmt) for c in cols)]
            )
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(row: list[str]) -> str:
            return "  ".join(
                v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(header), rule, *(line(r) for r in body[:-1]), rule, line(body[-1])])


# --------------------------------------------------------------------------- evaluation
def _first_attr(obj: Any, names: Iterable[str]) -> Any:
    for n in names:
        v = getattr(obj, n, None)
        if v is not None:
            return v
    return None


def model_vertex_count(model: Any) -> int | None:
    """Vertex count a model predicts (its ``n_verts``), when it says."""
    v = getattr(model, "n_verts", None)
    return int(v) if v is not None else None


def model_subjects(model: Any) -> tuple[str, ...]:
    """Speaker styles a model knows (``subjects``, ``train_subjects`` or ``speakers``)."""
    v = _first_attr(model, ("subjects", "train_subjects", "speakers"))
    return tuple(str(s) for s in v) if v is not None else ()


def _styles(clip_subject: str, style: str | None, subjects: tuple[str, ...], uses_style: bool) -> list[str | None]:
    if not uses_style:
        return [None]
    if style == "faceformer":  # FaceFormer's test.py: seen subjects as themselves, unseen ones under every style
        if not subjects:
            raise L2TError("--protocol faceformer needs a model that lists its training subjects")
        return [clip_subject] if clip_subject in subjects else list(subjects)
    if style in (None, "auto"):
        return [clip_subject if clip_subject in subjects else None]
    if style == "all":
        if not subjects:
            raise L2TError("--style all needs a model that lists its training subjects")
        return list(subjects)
    if subjects and style not in subjects:
        raise L2TError(f"style {style!r} is not a subject of the model; known: {', '.join(subjects)}")
    return [style]


def _predict(model: Any, clip: Any, style: str | None) -> Any:
    if hasattr(model, "predict"):
        import torch

        with torch.no_grad():
            return model.predict(clip.audio, clip.template, style=style, fps=clip.fps)
    return model(clip)


def _resolve_metrics(metrics: Sequence[str | Metric] | None) -> list[Metric]:
    chosen = [get_metric(m) if isinstance(m, str) else m for m in (metrics or DEFAULT_METRICS)]
    names = [m.name for m in chosen]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise L2TError(f"metric given twice: {', '.join(sorted(dup))}")
    return chosen


def _vertices(x: Any, what: str) -> np.ndarray:
    a = motion.as_array(x)
    if a.ndim == 2 and a.shape[1] % 3 == 0:  # FaceFormer's flat [T, V*3] layout
        a = a.reshape(a.shape[0], -1, 3)
    if a.ndim != 3 or a.shape[-1] != 3 or a.dtype.kind not in "fiu":
        raise L2TError(f"{what} must be [frames, vertices, 3] numbers, got {a.dtype} {list(a.shape)}")
    return a


def _iter_clips(dataset: Iterable[Any]) -> Iterator[Any]:
    """Clips of a map-style dataset (``len`` + ``[i]``, e.g. a torch Dataset) or of any iterable."""
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        for i in range(len(dataset)):  # type: ignore[arg-type]
            yield dataset[i]  # type: ignore[index]
    else:
        yield from dataset


def motion_amount(vertices: np.ndarray) -> float:
    """How much a mesh sequence [T, V, 3] moves: the per-vertex standard deviation over time (the norm of
    each vertex's 3D deviation from its mean position), averaged over vertices; in data units."""
    v = np.asarray(vertices, dtype=np.float64)
    return float(np.sqrt(((v - v.mean(0, keepdims=True)) ** 2).sum(-1).mean(0)).mean())


def motion_ratio(pred_amounts: Sequence[float], gt_amounts: Sequence[float]) -> float:
    """Predicted motion as a fraction of the ground truth's, pooled over clips (sum over sum; NaN when the
    ground truth does not move)."""
    gt = float(np.sum(gt_amounts))
    return float(np.sum(pred_amounts)) / gt if gt > 0 else math.nan


def _group(metrics: list[Metric], rows: Sequence[ClipResult]) -> dict[str, float]:
    out: dict[str, float] = {
        "clips": len({r.name for r in rows}),
        "frames": sum(r.frames for r in rows),
    }
    for m in metrics:
        if any(m.name not in r.skipped for r in rows):
            out.update(m.reduce([r for r in rows if m.name not in r.skipped]))
    return out


def evaluate(
    model: Any,
    dataset: Iterable[Any],
    regions: Regions | str | None = None,
    *,
    metrics: Sequence[str | Metric] | None = None,
    style: str | None = None,
    unit_m: float = 1.0,
    lip_pair: tuple[int, int] | None = None,
    data_root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    progress: Callable[[int, int | None, str], None] | None = None,
    protocol: str = "default",
    on_prediction: Callable[[Any, str | None, np.ndarray], None] | None = None,
) -> EvalResult:
    """Run ``model`` on every clip of ``dataset`` and score it.

    ``model``: an Audio2Mesh-like object with ``predict(audio, template, style=, fps=)`` (and
    optionally ``n_verts``/``subjects``), or any callable ``clip -> vertices [T, V, 3]``. ``dataset``:
    an iterable of clips with ``name, subject, audio, vertices [T,V,3], template [V,3], fps, phones``.
    ``regions``: :class:`Regions`, a regions file, or ``None`` (see
    :func:`l2t_gs.training.metrics.regions.resolve_regions`; ``data_root``, by default ``dataset.root``, is
    searched). ``style``: the speaker style to condition on: ``None``/``"auto"`` (the clip's subject
    when the model knows it, else ``style=None``, Audio2Mesh's mean style), ``"all"`` (every training
    subject, as FaceFormer tests unseen VOCASET speakers; one row per clip and style), or a name.
    ``unit_m``: metres per data unit (1.0 for FLAME/VOCASET and the built-in head). ``protocol``: one of
    :data:`PROTOCOLS`; ``faceformer`` conditions a subject seen in training on itself and an unseen one on
    every training subject (``style`` must then be ``None``), and fills :attr:`EvalResult.conditions` (one
    aggregate per condition). ``on_prediction(clip, style, vertices [T, V, 3])`` receives every full
    prediction (e.g. to save it). A warning is added when the predictions move less than
    :data:`LOW_MOTION_FRACTION` of the ground truth (:func:`motion_ratio`).
    """
    if protocol not in PROTOCOLS:
        raise L2TError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if protocol == "faceformer":
        if style not in (None, "auto"):
            raise L2TError("--protocol faceformer chooses the styles itself; leave out --style")
        style = "faceformer"
    if not unit_m > 0 or not math.isfinite(unit_m):
        raise L2TError(f"the data unit must be a positive number of metres, got {unit_m}")
    chosen = _resolve_metrics(metrics)
    n_model = model_vertex_count(model)
    subjects = model_subjects(model)
    uses_style = hasattr(model, "predict")
    total = len(dataset) if hasattr(dataset, "__len__") else None  # type: ignore[arg-type]
    if limit is not None and total is not None:
        total = min(total, limit)
    mm = 1000.0 * unit_m
    if data_root is None:
        data_root = getattr(dataset, "root", None)
    rows: list[ClipResult] = []
    notes: list[str] = []
    resolved: Regions | None = None
    n_verts: int | None = None
    mismatched = 0
    moved: list[tuple[float, float]] = []  # (predicted, ground-truth) motion per evaluated prediction
    for i, clip in enumerate(_iter_clips(dataset)):
        if limit is not None and i >= limit:
            break
        name = str(clip.name)
        if progress:
            progress(i, total, name)
        gt = _vertices(clip.vertices, f"clip {name}: ground-truth vertices")
        template = motion.as_array(clip.template).reshape(-1, 3)
        if resolved is None:
            n_verts = int(gt.shape[1])
            if n_model is not None and n_model != n_verts:
                raise L2TError(
                    f"the model predicts {n_model}-vertex meshes but the data has {n_verts} vertices "
                    "(different topology)"
                )
            resolved = resolve_regions(regions, n_verts, data_root=data_root, lip_pair=lip_pair)
        if gt.shape[1] != n_verts or template.shape[0] != n_verts:
            raise L2TError(
                f"clip {name}: {gt.shape[1]} vertices with a {template.shape[0]}-vertex template; "
                f"the split's first clip has {n_verts}"
            )
        for st in _styles(str(clip.subject), style, subjects, uses_style):
            pred = _vertices(_predict(model, clip, st), f"clip {name}: the model's prediction")
            if pred.shape[1] != n_verts:
                raise L2TError(
                    f"clip {name}: the model predicted {pred.shape[1]} vertices, the data has {n_verts} "
                    "(different topology)"
                )
            t = min(pred.shape[0], gt.shape[0])
            if t == 0:
                raise L2TError(f"clip {name}: no frames to compare ({pred.shape[0]} predicted, {gt.shape[0]} GT)")
            if not np.isfinite(pred[:t]).all():
                raise L2TError(f"clip {name}: the model predicted non-finite vertices")
            mismatched += pred.shape[0] != gt.shape[0]
            if on_prediction is not None:
                on_prediction(clip, st, pred)
            moved.append((motion_amount(pred[:t]), motion_amount(gt[:t])))
            ctx = ClipContext(
                name=name,
                subject=str(clip.subject),
                style=st,
                fps=float(clip.fps),
                pred=pred[:t],
                gt=gt[:t],
                template=template,
                regions=resolved,
                mm=mm,
                phones=getattr(clip, "phones", None),
                audio=getattr(clip, "audio", None),
                audio_sr=int(getattr(clip, "audio_sr", 16000)),
            )
            row = ClipResult(name, ctx.subject, st, t, int(pred.shape[0]), int(gt.shape[0]))
            have = ctx.available()
            for m in chosen:
                missing = sorted(m.requires - have)
                if missing:
                    row.skipped[m.name] = "no " + " and no ".join(missing).replace("_", " ")
                    continue
                row.values.update(m.compute(ctx))
            rows.append(row)
    if not rows or resolved is None:
        raise L2TError("no clips to evaluate (the split is empty)")
    for m in chosen:
        reasons = sorted({r.skipped[m.name] for r in rows if m.name in r.skipped})
        if reasons:
            n_skip = sum(m.name in r.skipped for r in rows)
            notes.append(f"{m.name} skipped on {n_skip} of {len(rows)} clip(s): {'; '.join(reasons)}")
    if mismatched:
        notes.append(
            f"prediction and ground truth differ in length on {mismatched} clip(s); metrics use the common frames"
        )
    if uses_style and style in (None, "auto") and subjects:
        unseen = sorted({r.subject for r in rows if r.subject not in subjects})
        if unseen:
            notes.append(
                f"subjects unknown to the model ({', '.join(unseen)}) used its default style (style=None; "
                "Audio2Mesh: the mean of its speaker styles)"
            )
    by_subject: dict[str, list[ClipResult]] = {}
    by_style: dict[str, list[ClipResult]] = {}
    for r in rows:
        by_subject.setdefault(r.subject, []).append(r)
        by_style.setdefault(str(r.style), []).append(r)
    ratio = motion_ratio([p for p, _ in moved], [g for _, g in moved])
    warnings = []
    if ratio < LOW_MOTION_FRACTION:
        warnings.append(
            f"the predictions barely move: their motion (per-vertex std over time) is {ratio:.1%} of the ground "
            f"truth's (under {LOW_MOTION_FRACTION:.0%}); the metrics describe little more than the ground truth "
            "(an undertrained model?)"
        )
    return EvalResult(
        clips=rows,
        subjects={s: _group(chosen, rs) for s, rs in sorted(by_subject.items())},
        overall=_group(chosen, rows),
        metrics=chosen,
        regions=resolved,
        unit_m=unit_m,
        notes=notes,
        warnings=warnings,
        conditions={s: _group(chosen, rs) for s, rs in by_style.items()} if protocol == "faceformer" else {},
        protocol=protocol,
        motion_ratio=ratio,
    )
