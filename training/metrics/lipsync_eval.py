"""The ``lipsync`` evaluation metric: :mod:`l2t_gs.training.metrics.lipsync` scores of the model, the ground truth
and the audio-energy baseline (:mod:`l2t_gs.training.metrics.energy_baseline`), per clip and per speaker.

Per clip the same phone-based scores (closure recall at 1/2 mm, mid-speech recall, false closures on
open vowels, open-vowel opening, r with the phone-openness reference, AV offset) are computed for
each *system*: ``model`` (the predicted lip gap; keys ``ls_*``), ``gt`` (the ground truth's;
``ls_gt_*``: a ceiling, and a check of the definitions) and ``energy`` (the baseline's gap from the
clip's audio; ``ls_energy_*``, only when the clip has audio). Groups (a subject, the split) reduce
with :func:`l2t_gs.training.metrics.lipsync.aggregate` (counts summed: recalls and rates micro-averaged over
segments; r mean over clips). :func:`per_speaker_systems` and :func:`markdown_report` turn an
:class:`~.evaluate.EvalResult` into the per-speaker table (subjects plus ``all``) with the systems
side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from l2t_gs.errors import L2TError
from l2t_gs.training.metrics import lipsync
from l2t_gs.training.metrics.base import METRICS, ClipContext, ClipResult, Column, Metric
from l2t_gs.training.metrics.energy_baseline import energy_gap_mm
from l2t_gs.training.metrics.evaluate import EvalResult
from l2t_gs.training.metrics.motion import as_array

__all__ = ["BASELINES", "LipSync", "markdown_report", "per_speaker_systems"]

#: Baselines the metric can score besides the model (name -> needs audio).
BASELINES = ("energy",)
_PREFIX = {"model": "ls_", "gt": "ls_gt_", "energy": "ls_energy_"}


class LipSync(Metric):
    """Phone-based lip-sync scores of the model, the ground truth and (``baseline="energy"``) the energy baseline."""

    name = "lipsync"
    requires = frozenset({"lip_pair", "phones"})

    def __init__(self, baseline: str | None = "energy", ground_truth: bool = True) -> None:
        if baseline not in (None, *BASELINES):
            raise L2TError(f"unknown lip-sync baseline {baseline!r}; known: {', '.join(BASELINES)}")
        self.baseline = baseline
        self.ground_truth = ground_truth
        cols = [
            Column("ls_recall1", "cl<1", ".3f"),
            Column("ls_recall1_mid", "mid<1", ".3f"),
            Column("ls_recall1_long", ">=40ms<1", ".3f"),
            Column("ls_false_closure_rate", "false/ov", ".3f"),
            Column("ls_open_mm", "open mm", ".1f"),
            Column("ls_r", "r open", ".3f"),
            Column("ls_offset0", "off=0", ".2f"),
        ]
        if baseline:
            tag = baseline[0].upper()
            cols += [
                Column(f"ls_{baseline}_recall1", f"{tag} cl<1", ".3f"),
                Column(f"ls_{baseline}_r", f"{tag} r", ".3f"),
            ]
        self.columns = tuple(cols)  # type: ignore[misc]

    @property
    def systems(self) -> tuple[str, ...]:
        return ("model", *(("gt",) if self.ground_truth else ()), *((self.baseline,) if self.baseline else ()))

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            "closure recall of p/b/m at <1 and <2 mm (min gap over the phone +-1 frame; also mid-speech "
            "bilabials only), false closures (<1 mm) on open vowels >= 80 ms, mean max opening on them (mm), "
            "Pearson r of the lip gap with a phone-openness reference and the AV offset (lag in +-10 frames "
            "maximising r; > 0: lips lag phones); counts pooled over segments, r mean over clips; systems: "
            + ", ".join(self.systems)
        )

    def config(self) -> dict[str, Any]:
        return {
            "systems": list(self.systems),
            "closure_thresholds_mm": list(lipsync.CLOSURE_THRESHOLDS_MM),
            "closure_widen_frames": lipsync.CLOSURE_WIDEN_FRAMES,
            "false_closure_mm": lipsync.FALSE_CLOSURE_MM,
            "open_vowels": sorted(lipsync.OPEN_VOWELS),
            "min_open_vowel_s": lipsync.MIN_OPEN_VOWEL_S,
            "reference_smooth_s": lipsync.REF_SMOOTH_S,
            "max_lag_frames": lipsync.MAX_LAG,
            "openness_mm": dict(lipsync.OPENNESS_MM),
        }

    def compute(self, ctx: ClipContext) -> dict[str, float]:
        segs = lipsync._segments(ctx.phones or ())
        ref = lipsync.openness_reference(segs, ctx.fps, ctx.frames)
        gaps = {"model": ctx.gap_pred_mm}
        if self.ground_truth:
            gaps["gt"] = ctx.gap_gt_mm
        if self.baseline == "energy" and ctx.audio is not None:
            gaps["energy"] = energy_gap_mm(as_array(ctx.audio), ctx.audio_sr, ctx.fps, ctx.frames)
        out: dict[str, float] = {}
        for system, gap in gaps.items():
            for k, v in lipsync.score_clip(gap, segs, ctx.fps, ref=ref).items():
                out[_PREFIX.get(system, f"ls_{system}_") + k] = v
        return out

    def reduce(self, rows: Sequence[ClipResult]) -> dict[str, float]:
        out: dict[str, float] = {}
        for system in self.systems:
            prefix = _PREFIX.get(system, f"ls_{system}_")
            clips = [_strip(r.values, prefix) for r in rows if prefix + "bil" in r.values]
            if not clips:
                continue
            for k, v in lipsync.aggregate(clips).items():
                out[prefix + k] = v
        return out


def _strip(values: dict[str, float], prefix: str) -> dict[str, float]:
    """The values of one system: keys with ``prefix`` (and no longer system prefix) without it."""
    others = [p for p in _PREFIX.values() if p != prefix and p.startswith(prefix)]
    return {
        k[len(prefix) :]: v
        for k, v in values.items()
        if k.startswith(prefix) and not any(k.startswith(o) for o in others)
    }


def per_speaker_systems(result: EvalResult) -> dict[str, dict[str, dict[str, float]]]:
    """{system: {subject: aggregated lip-sync values, ..., "all": overall}} of an evaluation with ``lipsync``."""
    metric = next((m for m in result.metrics if isinstance(m, LipSync)), None)
    if metric is None:
        raise L2TError("the evaluation did not include the 'lipsync' metric")
    out: dict[str, dict[str, dict[str, float]]] = {}
    groups = [*result.subjects.items(), ("all", result.overall)]
    for system in metric.systems:
        prefix = _PREFIX.get(system, f"ls_{system}_")
        tab = {}
        for subject, vals in groups:
            got = _strip(vals, prefix)
            if got:
                tab[subject] = got
        if tab:
            out[system] = tab
    return out


def markdown_report(result: EvalResult, systems: Sequence[str] | None = None) -> str:
    """The per-speaker markdown table (:func:`l2t_gs.training.metrics.lipsync.markdown_table`) of an evaluation."""
    tabs = per_speaker_systems(result)
    if systems is not None:
        tabs = {s: tabs[s] for s in systems if s in tabs}
    if not tabs:
        return "(no lip-sync scores: no clip had phone segments and a lip vertex pair)"
    return lipsync.markdown_table(tabs)


METRICS.add("lipsync", LipSync)


def card_table(report: dict[str, Any], systems: Sequence[str] = ("model", "energy")) -> str:
    """The compact per-speaker markdown table (:data:`~.lipsync.CARD_KEYS`) of a saved ``l2t-gs eval
    --per-speaker --json`` report, the named systems side by side (what model cards quote)."""
    tabs = report.get("lipsync", {}).get("per_speaker") if isinstance(report, dict) else None
    if not tabs:
        raise L2TError("the report has no per-speaker lip-sync table (run l2t-gs eval --per-speaker --json)")
    return lipsync.markdown_table({n: tabs[n] for n in systems if n in tabs}, keys=lipsync.CARD_KEYS)
