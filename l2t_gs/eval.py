"""Evaluate a speech-to-motion model on a dataset split: per-clip, per-subject and overall metrics.

:func:`evaluate` runs the model on every clip, cuts prediction and ground truth to their common
length, and hands each clip to every metric of a registry (:data:`METRICS`). A metric is a
:class:`Metric` subclass: ``compute(ctx)`` gives the per-clip values, ``reduce(rows)`` the values of a
group of clips (a subject, the whole split). Metrics that need something a clip lacks (phone
segments, a lip vertex pair, audio) are skipped for that clip with a note. Later metrics (e.g.
SyncNet3D's LSE-D/LSE-C, which need audio and a network) plug in with :func:`register_metric` or by
passing instances to ``evaluate(metrics=[...])``.

Built-in metrics (definitions in :mod:`l2t_gs.metrics.motion`; distances are converted to mm with
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
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from l2t_gs.errors import L2TError
from l2t_gs.metrics import motion
from l2t_gs.metrics.regions import Regions, resolve_regions

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "ClipContext",
    "ClipResult",
    "Column",
    "EvalResult",
    "FDD",
    "LVE",
    "LipClosure",
    "LipCorrelation",
    "Metric",
    "evaluate",
    "get_metric",
    "register_metric",
]

Predictor = Callable[[Any], Any]  # clip -> predicted vertices [T, V, 3]


# --------------------------------------------------------------------------- per-clip context
@dataclass
class ClipContext:
    """What a metric sees of one evaluated clip (arrays cut to the common length ``frames``).

    ``pred``/``gt`` are [T, V, 3] and ``template`` [V, 3], in data units; ``mm`` is millimetres per
    data unit. ``phones`` (segments with ``.phone/.start/.end`` seconds) and ``audio`` (the clip's
    full waveform at ``audio_sr``, as the dataset gives it) may be ``None``. A sync metric (LSE-D/C)
    would embed windows of ``pred[:, regions.lips]`` and of ``audio``.
    """

    name: str
    subject: str
    style: str | None
    fps: float
    pred: np.ndarray
    gt: np.ndarray
    template: np.ndarray
    regions: Regions
    mm: float = 1000.0
    phones: Sequence[Any] | None = None
    audio: Any = None
    audio_sr: int = 16000

    @property
    def frames(self) -> int:
        return int(self.gt.shape[0])

    def available(self) -> set[str]:
        """Optional inputs this clip has: ``"lip_pair"``, ``"phones"``, ``"audio"``."""
        have = set()
        if self.regions.lip_pair is not None:
            have.add("lip_pair")
        if self.phones is not None:
            have.add("phones")
        if self.audio is not None:
            have.add("audio")
        return have

    @cached_property
    def gap_pred_mm(self) -> np.ndarray:
        """Predicted lip gap per frame, mm."""
        return motion.lip_gap(self.pred, self.regions.lip_pair) * self.mm

    @cached_property
    def gap_gt_mm(self) -> np.ndarray:
        """Ground-truth lip gap per frame, mm."""
        return motion.lip_gap(self.gt, self.regions.lip_pair) * self.mm


@dataclass
class ClipResult:
    """Metric values of one clip (one style): ``values`` maps a value key to a float (NaN: undefined)."""

    name: str
    subject: str
    style: str | None
    frames: int
    frames_pred: int
    frames_gt: int
    values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subject": self.subject,
            "style": self.style,
            "frames": self.frames,
            "frames_pred": self.frames_pred,
            "frames_gt": self.frames_gt,
            **self.values,
            **({"skipped": dict(self.skipped)} if self.skipped else {}),
        }


# --------------------------------------------------------------------------- metric registry
@dataclass(frozen=True)
class Column:
    """A table column: value ``key``, header ``label``, number format ``fmt``."""

    key: str
    label: str
    fmt: str = ".4g"


class Metric:
    """Base class of an evaluation metric.

    Subclasses set ``name``, ``description``, ``columns`` (what the table shows), ``requires`` (optional
    clip inputs it needs, see :meth:`ClipContext.available`) and implement :meth:`compute`; the default
    :meth:`reduce` averages every key over the clips that have it.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset()
    columns: ClassVar[tuple[Column, ...]] = ()

    def compute(self, ctx: ClipContext) -> dict[str, float]:
        raise NotImplementedError

    def reduce(self, rows: Sequence[ClipResult]) -> dict[str, float]:
        out = {}
        for key in sorted({c.key for c in self.columns}):
            vals = [r.values[key] for r in rows if key in r.values]
            out[key] = float(np.nanmean(vals)) if vals and not np.all(np.isnan(vals)) else math.nan
        return out

    def config(self) -> dict[str, Any]:
        """Parameters worth recording in the JSON report."""
        return {}


class LVE(Metric):
    name = "lve"
    description = (
        "lip vertex error: per frame the max over lip vertices of the squared L2 error, mean over all "
        "frames (pooled over clips, as CodeTalker main/cal_metric.py)"
    )
    columns = (Column("lve_mm2", "LVE mm^2"),)

    def compute(self, ctx: ClipContext) -> dict[str, float]:
        raw = motion.lve(ctx.pred, ctx.gt, ctx.regions.lips)
        return {"lve_mm2": raw * ctx.mm**2, "lve_raw": raw}

    def reduce(self, rows: Sequence[ClipResult]) -> dict[str, float]:
        rows = [r for r in rows if "lve_raw" in r.values]
        w = np.array([r.frames for r in rows], dtype=np.float64)
        if not rows or w.sum() == 0:
            return {"lve_mm2": math.nan, "lve_raw": math.nan}
        return {k: float(np.dot(w, [r.values[k] for r in rows]) / w.sum()) for k in ("lve_mm2", "lve_raw")}


class FDD(Metric):
    name = "fdd"
    description = (
        "upper-face dynamics deviation: per clip, mean over upper-face vertices of the std over time of "
        "||vertices - template||^2, ground truth minus prediction; mean over clips (CodeTalker "
        "main/cal_metric.py)"
    )
    columns = (Column("fdd_mm2", "FDD mm^2"),)

    def compute(self, ctx: ClipContext) -> dict[str, float]:
        raw = motion.fdd(ctx.pred, ctx.gt, ctx.template, ctx.regions.upper_face)
        return {"fdd_mm2": raw * ctx.mm**2, "fdd_raw": raw}

    def reduce(self, rows: Sequence[ClipResult]) -> dict[str, float]:
        out = {}
        for key in ("fdd_mm2", "fdd_raw"):
            vals = [r.values[key] for r in rows if key in r.values]
            out[key] = float(np.mean(vals)) if vals else math.nan
        return out


class LipClosure(Metric):
    name = "lip_closure"
    requires = frozenset({"lip_pair", "phones"})
    columns = (Column("closure_recall", "closure", ".3f"), Column("closure_recall_gt", "closure GT", ".3f"))

    def __init__(self, threshold_mm: float = 1.0) -> None:
        if not threshold_mm > 0:
            raise L2TError(f"the lip-closure threshold must be positive, got {threshold_mm} mm")
        self.threshold_mm = float(threshold_mm)

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"fraction of bilabial phones (p, b, m) during which the lip gap falls below "
            f"{self.threshold_mm:g} mm at one or more frames in [start, end) (nearest frame for phones "
            "shorter than a frame); pooled over phones"
        )

    def config(self) -> dict[str, Any]:
        return {"threshold_mm": self.threshold_mm}

    def compute(self, ctx: ClipContext) -> dict[str, float]:
        segs = motion.bilabial_segments(ctx.phones or ())
        pred = motion.closure_flags(ctx.gap_pred_mm, segs, ctx.fps, self.threshold_mm)
        gt = motion.closure_flags(ctx.gap_gt_mm, segs, ctx.fps, self.threshold_mm)
        n = int(pred.size)
        return {
            "bilabials": n,
            "closed": int(pred.sum()),
            "closed_gt": int(gt.sum()),
            "closure_recall": float(pred.mean()) if n else math.nan,
            "closure_recall_gt": float(gt.mean()) if n else math.nan,
        }

    def reduce(self, rows: Sequence[ClipResult]) -> dict[str, float]:
        tot = {k: int(sum(r.values.get(k, 0) for r in rows)) for k in ("bilabials", "closed", "closed_gt")}
        n = tot["bilabials"]
        return {
            **tot,
            "closure_recall": tot["closed"] / n if n else math.nan,
            "closure_recall_gt": tot["closed_gt"] / n if n else math.nan,
        }


class LipCorrelation(Metric):
    name = "lip_corr"
    description = (
        "Pearson correlation over time of predicted and ground-truth lip gap per clip; mean over clips where both vary"
    )
    requires = frozenset({"lip_pair"})
    columns = (Column("lip_corr", "lip r", ".3f"),)

    def compute(self, ctx: ClipContext) -> dict[str, float]:
        return {"lip_corr": motion.pearson(ctx.gap_pred_mm, ctx.gap_gt_mm)}

    def reduce(self, rows: Sequence[ClipResult]) -> dict[str, float]:
        vals = np.array([r.values["lip_corr"] for r in rows if "lip_corr" in r.values], dtype=np.float64)
        ok = vals[np.isfinite(vals)]
        return {"lip_corr": float(ok.mean()) if ok.size else math.nan, "lip_corr_clips": int(ok.size)}


#: Metric name -> factory (a class or a zero-argument callable returning a :class:`Metric`).
METRICS: dict[str, Callable[[], Metric]] = {}
DEFAULT_METRICS: tuple[str, ...] = ("lve", "fdd", "lip_closure", "lip_corr")


def register_metric(name: str, factory: Callable[[], Metric]) -> None:
    """Make ``name`` usable in ``evaluate(metrics=[...])`` (e.g. a later ``"lse"`` for LSE-D/LSE-C)."""
    METRICS[name] = factory


def get_metric(name: str) -> Metric:
    """A new instance of the registered metric ``name``."""
    if name not in METRICS:
        raise L2TError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]()


for _cls in (LVE, FDD, LipClosure, LipCorrelation):
    register_metric(_cls.name, _cls)


def _lipsync() -> Metric:
    """``lipsync``: phone-based lip-sync scores of model, ground truth and energy baseline (metrics.lipsync_eval)."""
    from l2t_gs.metrics.lipsync_eval import LipSync

    return LipSync()


register_metric("lipsync", _lipsync)


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
            }
        )

    def table(self) -> str:
        """A plain-text table: one row per subject, then the overall row."""
        cols = [c for m in self.metrics for c in m.columns]
        header = ["subject", "clips", "frames", *(c.label for c in cols)]
        body = []
        for name, vals in [*self.subjects.items(), ("overall", self.overall)]:
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
    """Vertex count a model predicts, when it says (``n_verts``, ``n_vertices``, ``num_vertices``)."""
    v = _first_attr(model, ("n_verts", "n_vertices", "num_vertices", "vertex_count"))
    return int(v) if v is not None else None


def model_subjects(model: Any) -> tuple[str, ...]:
    """Speaker styles a model knows (``subjects``, ``train_subjects`` or ``speakers``)."""
    v = _first_attr(model, ("subjects", "train_subjects", "speakers"))
    return tuple(str(s) for s in v) if v is not None else ()


def _styles(clip_subject: str, style: str | None, subjects: tuple[str, ...], uses_style: bool) -> list[str | None]:
    if not uses_style:
        return [None]
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
) -> EvalResult:
    """Run ``model`` on every clip of ``dataset`` and score it.

    ``model``: an Audio2Mesh-like object with ``predict(audio, template, style=, fps=)`` (and
    optionally ``n_verts``/``subjects``), or any callable ``clip -> vertices [T, V, 3]``. ``dataset``:
    an iterable of clips with ``name, subject, audio, vertices [T,V,3], template [V,3], fps, phones``.
    ``regions``: :class:`Regions`, a regions file, or ``None`` (see
    :func:`l2t_gs.metrics.regions.resolve_regions`; ``data_root``, by default ``dataset.root``, is
    searched). ``style``: the speaker style to condition on: ``None``/``"auto"`` (the clip's subject
    when the model knows it, else ``style=None``, Audio2Mesh's mean style), ``"all"`` (every training
    subject, as FaceFormer tests unseen VOCASET speakers; one row per clip and style), or a name.
    ``unit_m``: metres per data unit (1.0 for FLAME/VOCASET and the built-in head).
    """
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
    for r in rows:
        by_subject.setdefault(r.subject, []).append(r)
    return EvalResult(
        clips=rows,
        subjects={s: _group(chosen, rs) for s, rs in sorted(by_subject.items())},
        overall=_group(chosen, rows),
        metrics=chosen,
        regions=resolved,
        unit_m=unit_m,
        notes=notes,
    )
