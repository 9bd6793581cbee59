"""Lip-sync scores of a lip-gap curve against phone segments (pure numpy; evaluation on human speech).

Inputs per clip: a lip gap ``gap`` [T] in **mm** at ``fps`` (frame ``t`` is the pose at ``t / fps``; the
distance of the upper/lower-lip midline vertex pair, see :func:`l2t_gs.training.metrics.motion.lip_gap`) and the
clip's phone segments (objects with ``.phone/.start/.end`` seconds or ``(phone, start, end)`` tuples;
labels compared lower-case without ARPAbet stress digits). Definitions:

- **Segment frames** (:func:`segment_window`): the frames of ``[start, end)`` as in
  :func:`l2t_gs.training.metrics.motion.segment_frames` (the frame nearest the middle for a phone shorter than
  a frame), optionally widened by ``widen`` frames on each side (clamped to the clip).
- **Closure recall at X mm** (``recall1``, ``recall2`` for X = 1, 2): the fraction of bilabial
  segments (p, b, m) whose minimum gap over the segment frames widened by +-1 frame
  (:data:`CLOSURE_WIDEN_FRAMES`) is below X mm. ``recall1_mid``/``recall2_mid``: the same over the
  *mid-speech* bilabials only: both neighbouring segments (previous and next in time order) exist,
  are speech phones (not in :data:`PAUSES`) and touch the bilabial (no gap over
  :data:`ADJACENT_TOL_S` between them), i.e. closures that are not helped by a neighbouring rest.
- **False closures** (``false_closures``, ``false_closure_rate``): open-vowel segments
  (:data:`OPEN_VOWELS`) lasting at least :data:`MIN_OPEN_VOWEL_S` (80 ms) whose minimum gap over the
  frames of their central half (``[start + d/4, end - d/4)``, :data:`VOWEL_CORE`; the nearest frame
  if none) is below 1 mm; the rate is per such open vowel. Only the core counts because a closure
  legitimately spills into the edge frame of a vowel next to p/b/m (coarticulation: the ground truth
  of the synthetic corpus does that on about 1 open vowel in 7).
- **Open-vowel opening** (``open_mm``): the maximum gap over each such open vowel's frames (all of
  them), averaged over the open vowels (micro-average when clips are pooled).
- **Openness reference** (:func:`openness_reference`): per frame, the openness (mm) of the phone
  sounding at the frame time, from :data:`OPENNESS_MM`, smoothed with a Gaussian of standard
  deviation :data:`REF_SMOOTH_S` (40 ms) converted to frames (coarticulation/jaw inertia).
  ``r``: Pearson correlation of gap and reference at lag 0.
- **AV offset** (:func:`av_offset`): the lag ``k`` in [-10, 10] frames maximising the Pearson r of
  ``gap[t]`` and ``ref[t - k]`` over the overlapping frames. **Sign**: ``k > 0`` means the lips lag
  the phones by k frames (a gap curve delayed as ``gap[t] = ref[t - k]`` gives ``+k``), the same
  convention as :mod:`l2t_gs.training.metrics.lse`. Ties go to the smaller ``|k|``, then to the negative lag.
  Groups report ``offset0`` (fraction of clips whose offset is 0) and ``offset_abs`` (mean |offset|).

Aggregation (:func:`aggregate`): counts are summed, so recalls and the false-closure rate are
micro-averaged over segments and ``open_mm`` over open vowels; ``r`` is the mean over the clips where
it is defined (a constant curve has none). :func:`per_speaker` gives one row per subject plus
``"all"``; :func:`markdown_table` puts several systems (model, ground truth, a baseline) side by side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from l2t_gs.motion.articulation import lip_gap_coefficients
from l2t_gs.motion.visemes import BILABIAL, DIPHTHONGS, viseme_table
from l2t_gs.speech.phones import PHONES
from l2t_gs.training.metrics.motion import BILABIALS, OPEN_VOWELS, open_vowel_segments, pearson, segment_frames
from l2t_gs.training.metrics.motion import false_closures as motion_false_closures

__all__ = [
    "ADJACENT_TOL_S",
    "CLOSURE_THRESHOLDS_MM",
    "CLOSURE_WIDEN_FRAMES",
    "FALSE_CLOSURE_MM",
    "MAX_LAG",
    "MIN_OPEN_VOWEL_S",
    "OPENNESS_MM",
    "OPEN_VOWELS",
    "PAUSES",
    "REF_SMOOTH_S",
    "CARD_KEYS",
    "SUMMARY_KEYS",
    "VOWEL_CORE",
    "aggregate",
    "av_offset",
    "bilabials",
    "closure_counts",
    "false_closures",
    "lagged_pearson",
    "markdown_table",
    "openness_from_rig",
    "openness_reference",
    "per_speaker",
    "phone_label",
    "score_clip",
    "segment_window",
]

#: Closure thresholds (mm) of the recall columns.
CLOSURE_THRESHOLDS_MM: tuple[float, ...] = (1.0, 2.0)
#: Bilabial windows are widened by this many frames on each side (timing slack of one frame).
CLOSURE_WIDEN_FRAMES = 1
#: Bilabials aligned at least this long (seconds) are also counted apart (``bil_long``, ``recall1_long``):
#: a forced aligner's shortest segments (pocketsphinx: 3 states of 10 ms) are where its timing is least sure.
LONG_BILABIAL_S = 0.04
#: A gap below this (mm) during an open vowel is a false closure.
FALSE_CLOSURE_MM = 1.0
#: Open vowels counted for false closures and the opening (diphthongs and r-coloured included).
#: Only open vowels at least this long (seconds) count: short ones may legitimately be reduced.
MIN_OPEN_VOWEL_S = 0.08
#: Fraction of an open vowel's duration cut from each end for the false-closure test (its central half).
VOWEL_CORE = 0.25
#: Labels that are not speech (silence, pauses, noise markers of common aligners), after lower-casing.
PAUSES = frozenset({"sil", "sp", "spn", "pau", "pause", "silence", "<sil>", "<s>", "</s>", "", "noise", "nsn"})
#: Neighbours further apart than this (seconds) count as separated by a pause.
ADJACENT_TOL_S = 0.01
#: Standard deviation (seconds) of the Gaussian smoothing the openness reference.
REF_SMOOTH_S = 0.04
#: Lags searched for the AV offset (frames, each side).
MAX_LAG = 10

#: Per-phone lip opening (mm): the static viseme target of each canonical phone
#: (:func:`l2t_gs.motion.visemes.viseme_table`) through the built-in rig's midline lip-gap
#: coefficients (:func:`l2t_gs.motion.articulation.lip_gap_coefficients`: rest gap + coefficients .
#: target, clipped at 0), diphthongs as 60/40 mixes of their two parts, rounded to 0.1 mm;
#: :func:`openness_from_rig` recomputes it. p/b/m are 0 (the articulation enforces their contact; the
#: static target leaves the 0.9 mm of their 0.01 rad jaw), ``sil`` is 0 (lips at rest, closed).
OPENNESS_MM: dict[str, float] = {
    "aa": 26.6, "ae": 23.0, "ah": 20.6, "ao": 23.6, "aw": 19.8, "ay": 17.2, "b": 0.0, "ch": 10.9, "d": 6.2,
    "dh": 9.0, "eh": 13.7, "er": 12.0, "ey": 9.8, "f": 3.6, "g": 8.3, "hh": 10.7, "ih": 9.4, "iy": 6.8,
    "jh": 10.9, "k": 8.3, "l": 9.2, "m": 0.0, "n": 6.2, "ng": 7.5, "ow": 13.7, "oy": 16.3, "p": 0.0,
    "r": 8.5, "s": 5.3, "sh": 10.9, "t": 5.8, "th": 9.0, "uh": 11.9, "uw": 9.4, "v": 3.6, "w": 7.7,
    "y": 6.0, "z": 5.3, "zh": 10.9, "sil": 0.0,
}  # fmt: skip
#: Openness of a speech label missing from the table (a middling consonant).
UNKNOWN_OPENNESS_MM = 8.0

#: Per-system summary keys of :func:`aggregate` (what :func:`markdown_table` shows), with labels and formats.
SUMMARY_KEYS: tuple[tuple[str, str, str], ...] = (
    ("recall1", "close<1mm", ".3f"),
    ("recall2", "close<2mm", ".3f"),
    ("recall1_mid", "mid<1mm", ".3f"),
    ("recall2_mid", "mid<2mm", ".3f"),
    ("recall1_long", ">=40ms<1mm", ".3f"),
    ("false_closures", "false cl.", ".0f"),
    ("false_closure_rate", "false/ov", ".3f"),
    ("open_mm", "open mm", ".1f"),
    ("r", "r(open)", ".3f"),
    ("offset0", "off=0", ".2f"),
)

#: The compact column set of model cards: closures (< 1 mm, < 2 mm, mid-speech), false closures per open
#: vowel, opening, correlation, offset.
CARD_KEYS: tuple[tuple[str, str, str], ...] = tuple(
    k
    for k in SUMMARY_KEYS
    if k[0] in ("recall1", "recall2", "recall1_mid", "false_closure_rate", "open_mm", "r", "offset0")
)


# --------------------------------------------------------------------------- phones
def phone_label(seg: Any) -> str:
    """Lower-case label without ARPAbet stress digits (``"AH0"`` -> ``"ah"``)."""
    label = seg.phone if hasattr(seg, "phone") else seg[0]
    return str(label).strip().lower().rstrip("012")


def _times(seg: Any) -> tuple[float, float]:
    if hasattr(seg, "start"):
        return float(seg.start), float(seg.end)
    return float(seg[1]), float(seg[2])


def _segments(phones: Iterable[Any]) -> list[tuple[str, float, float]]:
    """(label, start, end) sorted by start, empty/reversed intervals dropped."""
    out = [(phone_label(s), *_times(s)) for s in phones]
    return sorted(((p, a, b) for p, a, b in out if b > a), key=lambda s: (s[1], s[2]))


def bilabials(phones: Iterable[Any]) -> list[tuple[float, float, bool]]:
    """(start, end, mid_speech) of each p/b/m segment; ``mid_speech``: both neighbours are touching speech phones."""
    segs = _segments(phones)
    out = []
    for i, (p, a, b) in enumerate(segs):
        if p not in BILABIALS:
            continue
        mid = 0 < i < len(segs) - 1
        if mid:
            prev, nxt = segs[i - 1], segs[i + 1]
            mid = (
                prev[0] not in PAUSES
                and nxt[0] not in PAUSES
                and a - prev[2] <= ADJACENT_TOL_S
                and nxt[1] - b <= ADJACENT_TOL_S
            )
        out.append((a, b, mid))
    return out


def segment_window(start: float, end: float, fps: float, n_frames: int, widen: int = 0) -> np.ndarray:
    """Frames of ``[start, end)`` (see :func:`.motion.segment_frames`) widened by ``widen`` each side."""
    f = segment_frames(start, end, fps, n_frames)
    if f.size == 0 or widen <= 0:
        return f
    return np.arange(max(int(f[0]) - widen, 0), min(int(f[-1]) + widen + 1, n_frames))


# --------------------------------------------------------------------------- closures
def closure_counts(
    gap: Any,
    phones: Iterable[Any],
    fps: float,
    thresholds: Sequence[float] = CLOSURE_THRESHOLDS_MM,
    widen: int = CLOSURE_WIDEN_FRAMES,
) -> dict[str, int]:
    """Bilabial counts: ``bil``, ``bil_mid``, ``bil_long`` and per threshold X (formatted ``:g``)
    ``closed{X}``, ``closed{X}_mid``, ``closed{X}_long`` (mid-speech ones; ones aligned at least
    :data:`LONG_BILABIAL_S` long).

    A bilabial is closed at X when the minimum of ``gap`` (mm) over its frames widened by ``widen`` is
    below X. Bilabials without any frame in the clip are left out.
    """
    g = np.asarray(gap, dtype=np.float64).ravel()
    out = {"bil": 0, "bil_mid": 0, "bil_long": 0}
    for x in thresholds:
        out[f"closed{x:g}"] = out[f"closed{x:g}_mid"] = out[f"closed{x:g}_long"] = 0
    for a, b, mid in bilabials(phones):
        f = segment_window(a, b, fps, g.size, widen)
        if f.size == 0:
            continue
        low = float(g[f].min())
        long = int(b - a >= LONG_BILABIAL_S - 1e-9)
        out["bil"] += 1
        out["bil_mid"] += int(mid)
        out["bil_long"] += long
        for x in thresholds:
            hit = int(low < x)
            out[f"closed{x:g}"] += hit
            out[f"closed{x:g}_mid"] += hit * int(mid)
            out[f"closed{x:g}_long"] += hit * long
    return out


def false_closures(
    gap: Any,
    phones: Iterable[Any],
    fps: float,
    threshold: float = FALSE_CLOSURE_MM,
    min_duration: float = MIN_OPEN_VOWEL_S,
) -> dict[str, float]:
    """Open-vowel counts: ``ov`` (open vowels >= ``min_duration`` with frames), ``fc`` (their false closures,
    :func:`l2t_gs.training.metrics.motion.false_closures` over the central half, :data:`VOWEL_CORE`),
    ``ov_max_sum`` (sum of their maximum gaps over all their frames, mm)."""
    g = np.asarray(gap, dtype=np.float64).ravel()
    frames = [segment_window(a, b, fps, g.size) for a, b in open_vowel_segments(phones, min_duration)]
    frames = [f for f in frames if f.size]
    fc = motion_false_closures(g, phones, fps, threshold, min_duration, core=1.0 - 2.0 * VOWEL_CORE)
    return {"ov": len(frames), "fc": fc, "ov_max_sum": float(sum(g[f].max() for f in frames))}


# --------------------------------------------------------------------------- openness reference and offset
def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or x.size < 2:
        return x
    half = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, half, mode="edge")
    return np.convolve(padded, k, mode="valid")


def openness_reference(
    phones: Iterable[Any],
    fps: float,
    n_frames: int,
    table: Mapping[str, float] | None = None,
    smooth_s: float = REF_SMOOTH_S,
) -> np.ndarray:
    """Expected lip opening per frame (mm) from the phones: [n_frames].

    Frame ``t`` takes the openness (``table``, default :data:`OPENNESS_MM`) of the segment with
    ``start <= t / fps < end``; frames outside every segment and pause labels take ``table["sil"]``
    (0), unknown speech labels :data:`UNKNOWN_OPENNESS_MM`. The step curve is then smoothed with a
    Gaussian of standard deviation ``smooth_s * fps`` frames (edges padded with the end values).
    """
    tab = OPENNESS_MM if table is None else table
    rest = float(tab.get("sil", 0.0))
    ref = np.full(int(n_frames), rest, dtype=np.float64)
    for p, a, b in _segments(phones):
        f0 = max(int(math.ceil(a * fps - 1e-9)), 0)
        f1 = min(int(math.ceil(b * fps - 1e-9)), ref.size)
        if f0 < f1:
            ref[f0:f1] = rest if p in PAUSES else float(tab.get(p, UNKNOWN_OPENNESS_MM))
    return _gaussian_smooth(ref, smooth_s * fps)


def lagged_pearson(gap: Any, ref: Any, lag: int) -> float:
    """Pearson r of ``gap[t]`` and ``ref[t - lag]`` over the frames where both exist (NaN if under 2)."""
    g = np.asarray(gap, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    n = min(g.size, r.size)
    g, r = g[:n], r[:n]
    if abs(lag) >= n - 1:
        return math.nan
    if lag >= 0:
        return pearson(g[lag:], r[: n - lag])
    return pearson(g[: n + lag], r[-lag:])


def av_offset(gap: Any, ref: Any, max_lag: int = MAX_LAG) -> tuple[int | None, float]:
    """(offset, r at the offset): the lag in [-max_lag, max_lag] maximising :func:`lagged_pearson`.

    ``offset > 0``: the gap lags the reference (``gap[t] = ref[t - k]`` gives ``k``). Ties: smaller
    ``|lag|`` first, then the negative lag. ``(None, nan)`` when r is undefined at every lag.
    """
    best: tuple[int | None, float] = (None, -math.inf)
    for k in sorted(range(-max_lag, max_lag + 1), key=lambda k: (abs(k), k)):
        r = lagged_pearson(gap, ref, k)
        if math.isfinite(r) and r > best[1] + 1e-12:
            best = (k, r)
    return best if best[0] is not None else (None, math.nan)


# --------------------------------------------------------------------------- per clip and groups
def score_clip(
    gap: Any,
    phones: Iterable[Any],
    fps: float,
    ref: np.ndarray | None = None,
    max_lag: int = MAX_LAG,
) -> dict[str, float]:
    """All per-clip counts and values of one gap curve (mm): the counts of :func:`closure_counts` and
    :func:`false_closures`, ``r`` (lag-0 r with the openness reference), ``offset``/``r_offset`` of
    :func:`av_offset` (``offset`` NaN when undefined). ``ref``: a precomputed reference (else built)."""
    segs = _segments(phones)
    g = np.asarray(gap, dtype=np.float64).ravel()
    if ref is None:
        ref = openness_reference(segs, fps, g.size)
    off, r_off = av_offset(g, ref, max_lag)
    return {
        **{k: float(v) for k, v in closure_counts(g, segs, fps).items()},
        **{k: float(v) for k, v in false_closures(g, segs, fps).items()},
        "r": lagged_pearson(g, ref, 0),
        "offset": float(off) if off is not None else math.nan,
        "r_offset": r_off,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def aggregate(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Group values of :func:`score_clip` rows: summed counts, micro-averaged recalls / false-closure rate /
    open-vowel opening, mean ``r`` over clips where defined, ``offset0`` and ``offset_abs`` over clips with
    an offset, ``clips``."""
    counts = ("bil", "bil_mid", "bil_long", "ov", "fc", "ov_max_sum")
    tot = {k: float(sum(r.get(k, 0.0) for r in rows)) for k in counts}
    closed = sorted({k for r in rows for k in r if k.startswith("closed")})
    for k in closed:
        tot[k] = float(sum(r.get(k, 0.0) for r in rows))
    out: dict[str, float] = {
        "clips": float(len(rows)),
        "bilabials": tot["bil"],
        "bilabials_mid": tot["bil_mid"],
        "bilabials_long": tot["bil_long"],
    }
    for x in CLOSURE_THRESHOLDS_MM:
        out[f"recall{x:g}"] = _ratio(tot.get(f"closed{x:g}", 0.0), tot["bil"])
        out[f"recall{x:g}_mid"] = _ratio(tot.get(f"closed{x:g}_mid", 0.0), tot["bil_mid"])
        out[f"recall{x:g}_long"] = _ratio(tot.get(f"closed{x:g}_long", 0.0), tot["bil_long"])
    out["open_vowels"] = tot["ov"]
    out["false_closures"] = tot["fc"]
    out["false_closure_rate"] = _ratio(tot["fc"], tot["ov"])
    out["open_mm"] = _ratio(tot["ov_max_sum"], tot["ov"])
    rs = np.array([r.get("r", math.nan) for r in rows], dtype=np.float64)
    rs = rs[np.isfinite(rs)]
    out["r"] = float(rs.mean()) if rs.size else math.nan
    offs = np.array([r.get("offset", math.nan) for r in rows], dtype=np.float64)
    offs = offs[np.isfinite(offs)]
    out["offset0"] = float(np.mean(offs == 0)) if offs.size else math.nan
    out["offset_abs"] = float(np.abs(offs).mean()) if offs.size else math.nan
    return out


def per_speaker(rows: Sequence[tuple[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """``(subject, score_clip row)`` pairs -> {subject: :func:`aggregate`, ..., "all": over every row}."""
    by: dict[str, list[Mapping[str, float]]] = {}
    for subject, row in rows:
        by.setdefault(str(subject), []).append(row)
    out = {s: aggregate(rs) for s, rs in sorted(by.items())}
    out["all"] = aggregate([row for _, row in rows])
    return out


def _cell(v: Any, fmt: str) -> str:
    if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
        return "-"
    return format(v, fmt)


def markdown_table(
    systems: Mapping[str, Mapping[str, Mapping[str, float]]],
    keys: Sequence[tuple[str, str, str]] = SUMMARY_KEYS,
) -> str:
    """A markdown table: one row per subject (``"all"`` last), per summary key one column per system.

    ``systems``: {system name: {subject: aggregated values}} (e.g. ``{"model": per_speaker(...),
    "energy": per_speaker(...)}``); subjects are the union, in the first system's order.
    """
    names = list(systems)
    subjects: list[str] = []
    for tab in systems.values():
        subjects += [s for s in tab if s not in subjects]
    if "all" in subjects:
        subjects = [s for s in subjects if s != "all"] + ["all"]
    first = systems[names[0]] if names else {}
    header = ["subject", "clips", "p/b/m"] + [f"{label} {n}" for _, label, _ in keys for n in names]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for s in subjects:
        base = first.get(s, {})
        row = [f"**{s}**" if s == "all" else s, _cell(base.get("clips"), ".0f"), _cell(base.get("bilabials"), ".0f")]
        row += [_cell(systems[n].get(s, {}).get(k), fmt) for k, _, fmt in keys for n in names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def openness_from_rig(model: Any = None) -> dict[str, float]:
    """Recompute :data:`OPENNESS_MM` from the viseme targets and the rig (loads the built-in head; needs torch)."""

    coef = lip_gap_coefficients(model)
    tab = viseme_table()

    def gap(key: str) -> float:
        return max(0.0, float(coef[0] + coef[1:] @ tab[key].target) * 1000.0)

    out = {}
    for p in PHONES:
        if p in BILABIAL or p == "sil":
            out[p] = 0.0
        elif p in DIPHTHONGS:
            a, b, frac = DIPHTHONGS[p]
            out[p] = round(frac * gap(a) + (1 - frac) * gap(b), 1)
        else:
            out[p] = round(gap(p), 1)
    return out
