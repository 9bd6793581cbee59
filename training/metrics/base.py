"""The metric interface: per-clip context, results, columns, :class:`Metric` and the ``METRICS`` registry.

A metric is a :class:`Metric` subclass registered under its name (``@METRICS.register("lve")``) in a
module listed in ``METRICS.modules``; ``compute(ctx)`` gives the per-clip values, ``reduce(rows)`` the
values of a group of clips. :mod:`.evaluate` runs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from l2t_gs.core.registry import Registry
from l2t_gs.training.metrics import motion
from l2t_gs.training.metrics.regions import Regions

__all__ = ["METRICS", "ClipContext", "ClipResult", "Column", "Metric", "get_metric", "register_metric"]


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


#: Metric name -> factory (a class or a zero-argument callable returning a :class:`Metric`).
METRICS: Registry[Callable[[], Metric]] = Registry(
    "metric",
    modules=(
        "l2t_gs.training.metrics.standard",
        "l2t_gs.training.metrics.lse",
        "l2t_gs.training.metrics.lipsync_eval",
    ),
)


def register_metric(name: str, factory: Callable[[], Metric]) -> None:
    """Make ``name`` usable in ``evaluate(metrics=[...])`` (a plug-in metric outside the built-in modules)."""
    METRICS.add(name, factory)


def get_metric(name: str) -> Metric:
    """A new instance of the registered metric ``name``."""
    return METRICS.get(name)()
