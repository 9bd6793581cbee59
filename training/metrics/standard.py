"""The built-in motion metrics: LVE and FDD (CodeTalker's definitions), lip closure on p/b/m and the
lip-opening correlation (definitions in :mod:`.motion`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from l2t_gs.errors import L2TError
from l2t_gs.training.metrics import motion
from l2t_gs.training.metrics.base import METRICS, ClipContext, ClipResult, Column, Metric


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


for _cls in (LVE, FDD, LipClosure, LipCorrelation):
    METRICS.add(_cls.name, _cls)
