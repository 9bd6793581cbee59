"""Vertex-motion metrics for speech-driven 3D faces (vectorised numpy, float64 accumulation).

LVE and FDD follow CodeTalker's reference evaluation (``CodeTalker/main/cal_metric.py`` in
github.com/Doubiiu/CodeTalker, the script behind its BIWI numbers):

- **LVE** (lip vertex error): for every frame, the maximum over lip vertices of the *squared* L2
  error ``||pred - gt||^2``; the mean over frames. cal_metric.py concatenates the frames of all test
  sequences before taking the mean, so the dataset value is a frame-weighted (pooled) mean, not a
  mean of per-sequence means. The prediction is cut to the ground truth's length first.
- **FDD** (upper-face dynamics deviation): per sequence, with ``d = vertices - template``, the
  population standard deviation (``np.std``, ddof 0) over time of the squared norm ``||d||^2`` of
  every upper-face vertex, averaged over those vertices; FDD = ground truth minus prediction
  (signed: positive means the prediction moves the upper face too little); the dataset value is the
  plain mean over sequences.

Both are in squared data units (metres^2 for FLAME/VOCASET and the built-in head). Multiply by
``(1000 * metres_per_unit)**2`` for mm^2. Papers quote the raw value with a power-of-ten factor
(e.g. FaceFormer/CodeTalker tables: VOCASET LVE "x 10^-5", BIWI LVE "x 10^-4") and label it "mm"
although it is a squared length.

The lip-gap metrics are this project's additions (documented where defined): the lip gap is the
distance between one upper-lip and one lower-lip midline vertex (the "lip pair"), in data units.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "BILABIALS",
    "as_array",
    "bilabial_segments",
    "closure_flags",
    "false_closures",
    "fdd",
    "lip_gap",
    "lip_max_sq_error",
    "lve",
    "OPEN_VOWELS",
    "open_vowel_segments",
    "pearson",
    "segment_frames",
    "upper_face_dynamics",
]

#: Phones whose articulation closes the lips (p, b, m), lower-case without stress marks.
BILABIALS = frozenset({"p", "b", "m"})
#: Vowels during which the lips are open (low, mid and diphthong-onset vowels; not the high/rounded
#: iy, uw, whose aperture may be small): a lip closure there is a false closure.
#: Vowels whose lips must be visibly open (the false-closure test); iy, ih, uw, uh may legitimately be
#: nearly closed.
OPEN_VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay", "eh", "ey", "ow", "oy", "er"})


def as_array(x: Any, dtype: Any = None) -> np.ndarray:
    """A numpy view/copy of ``x`` (numpy array, torch tensor on any device, or nested lists)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _region(verts: Any, idx: np.ndarray) -> np.ndarray:
    """``verts[..., idx, :]`` as float64 (only the region is cast)."""
    return as_array(verts)[..., idx, :].astype(np.float64, copy=False)


def lip_max_sq_error(pred: Any, gt: Any, lips: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per frame, the maximum over lip vertices of the squared L2 error: [T] (data units^2).

    ``pred`` and ``gt`` are [T, V, 3] with equal T.
    """
    idx = np.asarray(lips, dtype=np.int64)
    diff = _region(pred, idx) - _region(gt, idx)
    return np.einsum("tvc,tvc->tv", diff, diff).max(axis=1)


def lve(pred: Any, gt: Any, lips: Sequence[int] | np.ndarray) -> float:
    """Lip vertex error of one sequence: mean over frames of :func:`lip_max_sq_error`."""
    return float(lip_max_sq_error(pred, gt, lips).mean())


def upper_face_dynamics(verts: Any, template: Any, upper: Sequence[int] | np.ndarray) -> float:
    """Mean over upper-face vertices of the std over time (ddof 0) of ``||verts - template||^2``."""
    idx = np.asarray(upper, dtype=np.int64)
    d = _region(verts, idx) - _region(template, idx)[None]
    sq = np.einsum("tvc,tvc->tv", d, d)
    return float(sq.std(axis=0).mean())


def fdd(pred: Any, gt: Any, template: Any, upper: Sequence[int] | np.ndarray) -> float:
    """Upper-face dynamics deviation of one sequence: dynamics(gt) - dynamics(pred) (signed)."""
    return upper_face_dynamics(gt, template, upper) - upper_face_dynamics(pred, template, upper)


def lip_gap(verts: Any, pair: tuple[int, int] | Sequence[int]) -> np.ndarray:
    """Distance per frame between the upper-lip and lower-lip vertex of ``pair``: [T] (data units)."""
    v = _region(verts, np.asarray(pair, dtype=np.int64))
    return np.linalg.norm(v[:, 0] - v[:, 1], axis=-1)


def _phone_label(seg: Any) -> str:
    """A phone label lower-cased without ARPAbet stress digits (``"B"`` -> ``"b"``, ``"AH0"`` -> ``"ah"``)."""
    label = seg.phone if hasattr(seg, "phone") else seg[0]
    return str(label).strip().lower().rstrip("012")


def _seg_times(seg: Any) -> tuple[float, float]:
    if hasattr(seg, "start"):
        return float(seg.start), float(seg.end)
    return float(seg[1]), float(seg[2])


def bilabial_segments(phones: Iterable[Any]) -> list[tuple[float, float]]:
    """(start, end) seconds of the p/b/m phones among ``phones``.

    A phone is an object with ``.phone``, ``.start``, ``.end`` or a tuple ``(phone, start, end)``;
    labels are compared lower-cased with stress digits removed, so ARPAbet ``P``/``B``/``M`` and
    IPA/espeak ``p``/``b``/``m`` all count. Empty or reversed intervals are ignored.
    """
    out = []
    for seg in phones:
        if _phone_label(seg) in BILABIALS:
            start, end = _seg_times(seg)
            if end > start:
                out.append((start, end))
    return out


def segment_frames(start: float, end: float, fps: float, n_frames: int) -> np.ndarray:
    """Indices of the motion frames that lie in the phone interval ``[start, end)``.

    Frame ``t`` is the pose at time ``t / fps``. When no frame time falls inside the interval (a
    phone shorter than one frame period), the single frame nearest the interval's midpoint is used.
    Frames past the end of the motion are dropped; an interval entirely after it gives no frames.
    """
    eps = 1e-9
    first = max(int(np.ceil(start * fps - eps)), 0)
    stop = min(int(np.ceil(end * fps - eps)), n_frames)  # frames with t / fps < end
    if first < stop:
        return np.arange(first, stop)
    mid = int(np.floor(0.5 * (start + end) * fps + 0.5))
    return np.array([mid], dtype=np.int64) if 0 <= mid < n_frames else np.zeros(0, dtype=np.int64)


def closure_flags(gap: np.ndarray, segments: Sequence[tuple[float, float]], fps: float, threshold: float) -> np.ndarray:
    """For each (start, end) segment with frames, whether ``gap`` drops below ``threshold`` at one of them.

    Segments without any frame inside the motion (see :func:`segment_frames`) are left out, so the
    result may be shorter than ``segments``.
    """
    gap = np.asarray(gap, dtype=np.float64)
    flags = []
    for start, end in segments:
        frames = segment_frames(start, end, fps, gap.shape[0])
        if frames.size:
            flags.append(bool(gap[frames].min() < threshold))
    return np.asarray(flags, dtype=bool)


def open_vowel_segments(phones: Iterable[Any], min_s: float = 0.08) -> list[tuple[float, float]]:
    """(start, end) seconds of the :data:`OPEN_VOWELS` among ``phones`` lasting at least ``min_s``
    (phones as in :func:`bilabial_segments`)."""
    out = []
    for seg in phones:
        if _phone_label(seg) in OPEN_VOWELS:
            start, end = _seg_times(seg)
            if end - start >= min_s - 1e-9:
                out.append((start, end))
    return out


def false_closures(
    gap_mm: np.ndarray,
    phones: Iterable[Any],
    fps: float,
    threshold_mm: float = 1.0,
    min_s: float = 0.08,
    core: float = 0.5,
) -> int:
    """Number of open vowels (:data:`OPEN_VOWELS` lasting >= ``min_s``, 80 ms) during which the lip gap
    ``gap_mm`` [T] (millimetres) falls below ``threshold_mm``: lips closed where they must be open.

    Only the central ``core`` fraction of each vowel is examined (at least its middle frame; frames as
    in :func:`segment_frames`): its first and last frames are coarticulated with the neighbours, and
    a bilabial closure legitimately reaches into them (its release). ``core=1``: the whole vowel.
    """
    trim = 0.5 * (1.0 - min(max(core, 0.0), 1.0))
    segs = [(a + trim * (b - a), b - trim * (b - a)) for a, b in open_vowel_segments(phones, min_s)]
    return int(closure_flags(gap_mm, segs, fps, threshold_mm).sum())


def pearson(a: Any, b: Any, rtol: float = 1e-9) -> float:
    """Pearson correlation of two equal-length 1-D signals.

    NaN when a signal is shorter than 2 samples or constant (its spread is below ``rtol`` times its
    magnitude, so rounding noise on a constant signal does not count as variation).
    """
    x0 = as_array(a, np.float64).ravel()
    y0 = as_array(b, np.float64).ravel()
    if x0.shape != y0.shape:
        raise ValueError(f"pearson: lengths differ ({x0.size} vs {y0.size})")
    n = x0.size
    if n < 2:
        return float("nan")
    x, y = x0 - x0.mean(), y0 - y0.mean()
    sx, sy = float(np.sqrt(x @ x)), float(np.sqrt(y @ y))
    for spread, raw in ((sx, x0), (sy, y0)):
        if spread <= rtol * np.sqrt(n) * max(float(np.abs(raw).max()), np.finfo(np.float64).tiny):
            return float("nan")
    return float(np.clip((x @ y) / (sx * sy), -1.0, 1.0))
