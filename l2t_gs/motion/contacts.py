"""Lip contacts as per-frame signals: targets from phones, and exact closure of predicted rig motion.

Two contact kinds, in this column order everywhere: ``0`` bilabial closure (p, b, m), ``1``
labiodental contact (f, v).

* :func:`contact_targets`: per-frame targets [T, 2] in [0, 1] from phone segments, exactly the
  contact windows of :mod:`l2t_gs.motion.articulation` (1 over the segment, widened to the minimum
  contact length, raised-cosine edges of up to ``EDGE_S``; bilabial wins over a labiodental
  neighbour, so the labiodental column is multiplied by ``1 - bilabial``).
* :func:`apply_contacts`: given contact probabilities [T, 2] (e.g. an Audio2Mesh contact head), the
  frames with ``p > threshold`` (and, with ``gate_mm``, an incoming lip gap under it) become contact
  frames (with ``hold_s``, each run of bilabial contact frames is shortened to the ``hold_s`` around its
  most probable frame, or with ``peak_s`` around each local maximum, :func:`hold_peaks`); around them a
  raised-cosine weight falls from 1 to 0 over
  ``edge_s`` seconds (smooth approach and release). The articulation module's closure math
  (:func:`~l2t_gs.motion.articulation.enforce_contacts`) then closes the lips (bilabial weight) and
  puts the lower lip on the upper teeth (labiodental weight). The closure uses the lip gap's
  linear model (:func:`~l2t_gs.motion.articulation.lip_gap_coefficients`) plus a per-frame offset
  measured on the skinned head, iterated until the midline lip gap of every contact frame is below
  ``tol_mm`` (the parameters the linear model does not cover, e.g. ``mouth_corners_down``, and its
  non-linearity are accounted for), so closures are exact on the mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from l2t_gs.motion import articulation as art
from l2t_gs.motion.visemes import BILABIAL, LABIODENTAL, P_INDEX, PARAMS
from l2t_gs.rig import ExprJawRig, FlameRig

__all__ = [
    "CONTACT_KINDS",
    "apply_contacts",
    "contact_targets",
    "contact_weights",
    "hold_peaks",
    "lip_gap_mm",
]

#: Column names of contact targets / probabilities / logits.
CONTACT_KINDS: tuple[str, str] = ("bilabial", "labiodental")

_RIGS: dict[tuple, ExprJawRig] = {}


def contact_targets(segments: Sequence | art.Segments, fps: float, n_frames: int) -> np.ndarray:
    """Per-frame contact targets [T, 2] float32 (bilabial closure, labiodental contact) of phone segments.

    ``segments``: as :func:`~l2t_gs.motion.articulation.articulate` takes them (objects with
    ``.phone``/``.start``/``.end`` or ``(phone, start, end)`` tuples, ARPAbet with stress digits
    allowed) or prepared :class:`~l2t_gs.motion.articulation.Segments`; frame i is time ``i / fps``.
    The values are the articulation module's contact windows: 1 inside a p/b/m (f/v) window, 0 away
    from contacts, raised-cosine in between.
    """
    n = int(n_frames)
    if n <= 0:
        return np.zeros((0, 2), np.float32)
    seg = segments if isinstance(segments, art.Segments) else art.prepare_segments(segments, n / fps)
    t = np.arange(n) / float(fps)
    cb = art.window_values(t, art.contact_windows(seg, BILABIAL, art.MIN_CLOSURE_S))
    cf = art.window_values(t, art.contact_windows(seg, LABIODENTAL, art.MIN_LABIODENTAL_S)) * (1.0 - cb)
    return np.stack([cb, cf], axis=1).astype(np.float32)


def contact_weights(on: np.ndarray, fps: float, edge_s: float = art.EDGE_S) -> np.ndarray:
    """Contact weights [T] from contact frames ``on`` [T] bool: 1 on them, a raised cosine of the
    distance to the nearest one that reaches 0 at ``edge_s`` seconds (vectorised)."""
    on = np.asarray(on, dtype=bool)
    n = on.shape[0]
    if n == 0 or not on.any():
        return np.zeros(n)
    i = np.arange(n)
    last = np.maximum.accumulate(np.where(on, i, -(10**9)))  # nearest contact frame at or before i
    nxt = np.minimum.accumulate(np.where(on, i, 10**9)[::-1])[::-1]  # at or after i
    dist = np.minimum(i - last, nxt - i) / float(fps)
    x = np.clip(dist / max(edge_s, 1e-9), 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * x)


def hold_peaks(on: np.ndarray, score: np.ndarray, k: int, radius: int = 0) -> np.ndarray:
    """Contact runs cut to ``k`` frames around their peaks (vectorised).

    ``radius == 0``: each run of consecutive ``on`` [T] frames is cut to the ``k`` frames around its highest
    ``score`` [T] (first on ties): the run's peak frame and ``(k - 1) // 2`` frames before it, kept inside
    the run; runs of at most ``k`` frames stay whole. ``radius > 0``: every ``on`` frame whose score is the
    highest of the ``on`` frames within ``radius`` frames of it (the first of equal neighbours) is a peak,
    so a run over two contacts a few frames apart keeps both; each peak keeps ``k`` frames placed the same
    way inside its run. ``k <= 0`` returns ``on`` unchanged."""
    on = np.asarray(on, dtype=bool)
    if k <= 0 or not on.any():
        return on.copy()
    edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]  # run r is [starts[r], ends[r])
    idx = np.nonzero(on)[0]
    if radius <= 0:
        run = np.repeat(np.arange(starts.size), ends - starts)  # run of each on frame
        order = np.lexsort((idx, -np.asarray(score, dtype=np.float64)[idx], run))  # per run: best score, earliest
        first = np.concatenate([[0], np.cumsum(ends - starts)[:-1]])
        peak = idx[order[first]]
        lo, hi = starts, ends
    else:
        s = np.where(on, np.asarray(score, dtype=np.float64), -np.inf)
        pad = np.concatenate([np.full(radius, -np.inf), s, np.full(radius, -np.inf)])
        best = np.lib.stride_tricks.sliding_window_view(pad, 2 * radius + 1).max(axis=1)
        is_peak = on & (s == best)
        is_peak[1:] &= ~(is_peak[:-1] & (s[1:] == s[:-1]))  # a plateau: its first frame
        peak = np.nonzero(is_peak)[0]
        run = np.searchsorted(starts, peak, side="right") - 1
        lo, hi = starts[run], ends[run]
    a = np.clip(peak - (k - 1) // 2, lo, np.maximum(hi - k, lo))
    b = np.minimum(a + k, hi)
    edge = np.zeros(on.size + 1, dtype=np.int64)  # windows may touch or overlap: count them
    np.add.at(edge, a, 1)
    np.add.at(edge, b, -1)
    return np.cumsum(edge[:-1]) > 0


def _lip_rig(model: Any, pair: tuple[int, int] | None = None) -> ExprJawRig:
    """Expression + jaw skinning of two vertices only (default: the lip midline pair; cached per head
    model and pair)."""
    pair = tuple(pair) if pair is not None else art.builtin_lip_pair()
    key = (model.name, model.source, model.n_verts, model.n_expr, pair)
    if key not in _RIGS:
        rig = FlameRig(model.to(dtype=torch.float64))
        _RIGS[key] = ExprJawRig(rig, rig.n_expr, vertex_ids=pair)
    return _RIGS[key]


def _lip_vectors(rig: ExprJawRig, expr: np.ndarray, jaw: np.ndarray) -> np.ndarray:
    """Upper minus lower lip-midline vertex [n, 3] (metres) of the skinned head."""
    with torch.no_grad():
        v = rig.v_template + rig(torch.as_tensor(np.concatenate([expr, jaw], axis=1), dtype=torch.float64))
    return (v[:, 0] - v[:, 1]).numpy()


def lip_gap_mm(expr: Any, jaw: Any, model: Any = None, pair: tuple[int, int] | None = None) -> np.ndarray:
    """Midline lip gap [T] (mm) of the skinned head for ``expr`` [T, E] (its leading E expression
    components; numpy or torch) and ``jaw`` [T, 3]: the distance between the two vertices of ``pair``
    (default: the built-in lip midline pair), skinned alone in float64 instead of the whole head."""
    model = model if model is not None else art._default_model()
    ex = np.asarray(expr.detach().cpu() if isinstance(expr, torch.Tensor) else expr, dtype=np.float64)
    jw = np.asarray(jaw.detach().cpu() if isinstance(jaw, torch.Tensor) else jaw, dtype=np.float64)
    full = np.zeros((ex.shape[0], model.n_expr))
    full[:, : ex.shape[1]] = ex[:, : model.n_expr]
    return np.linalg.norm(_lip_vectors(_lip_rig(model, pair), full, jw), axis=1) * 1000.0


def apply_contacts(
    rig_params: dict[str, Any],
    probs: Any,
    model: Any = None,
    threshold: float = 0.5,
    *,
    fps: float = 30.0,
    edge_s: float = art.EDGE_S,
    tol_mm: float = 0.5,
    max_iter: int = 4,
    gate_mm: float = 0.0,
    hold_s: float = 0.0,
    peak_s: float = 0.0,
) -> dict[str, Any]:
    """Close the lips (and place f/v contacts) where contact probabilities exceed ``threshold``.

    Args:
        rig_params: ``{"expr": [T, E], "jaw_pose": [T, 3]}`` (numpy or torch; ``E`` leading expression
            components of ``model``, e.g. :meth:`Audio2Mesh.predict_params`' output); other keys pass
            through unchanged.
        probs: [T, 2] probabilities of (bilabial closure, labiodental contact).
        model: the head model (default: the built-in head); it must have the built-in expressions.
        threshold: frames with ``p > threshold`` are contact frames.
        fps: frame rate of the parameters (sets the ramp length in frames).
        edge_s: length of the raised-cosine approach/release around contact frames.
        tol_mm: the closure iterates until the skinned midline lip gap of every full-weight bilabial
            frame is below this (at most ``max_iter`` passes).
        gate_mm: when > 0, a frame is a bilabial contact frame only if, besides ``p > threshold``, the
            skinned midline lip gap of the incoming parameters is under ``gate_mm`` there (labiodental
            contacts are not gated).
        hold_s: when > 0, each run of bilabial contact frames (after the gate) keeps only the
            ``max(1, round(hold_s * fps))`` frames around its most probable one (:func:`hold_peaks`): a
            closure as long as a real one, at the head's surest frame, instead of lips shut through a
            whole stretch of moderately likely frames that spills into the neighbouring vowels.
        peak_s: with ``hold_s``, when > 0, every local maximum of the probability within
            ``max(1, round(peak_s * fps))`` frames keeps its own closure instead of one per run
            (:func:`hold_peaks` with ``radius``): two bilabials whose contact frames run together
            ("maybe", "bump") both close.
    Returns:
        A new dict of the same kind (tensors stay tensors, on their device and dtype) with
        ``expr`` and ``jaw_pose`` changed only near contact frames.
    """
    model = model if model is not None else art._default_model()
    names = list(model.expr_names)
    missing = [p for p in PARAMS[1:] if p not in names]
    if missing:
        raise ValueError(f"apply_contacts needs the built-in head's expressions; {model.name!r} lacks {missing}")
    expr_in, jaw_in = rig_params["expr"], rig_params["jaw_pose"]
    is_torch = isinstance(expr_in, torch.Tensor)
    expr = (expr_in.detach().cpu().numpy() if is_torch else np.asarray(expr_in)).astype(np.float64)
    jaw = (jaw_in.detach().cpu().numpy() if isinstance(jaw_in, torch.Tensor) else np.asarray(jaw_in)).astype(np.float64)
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    n, e = expr.shape
    if p.shape != (n, 2) or jaw.shape != (n, 3):
        raise ValueError(
            f"apply_contacts: expr [T, E], jaw_pose [T, 3] and probs [T, 2] expected, got "
            f"{list(expr.shape)}, {list(jaw.shape)}, {list(p.shape)}"
        )
    cols = [names.index(q) for q in PARAMS[1:]]
    if max(cols) >= e:
        raise ValueError(f"apply_contacts needs the first {max(cols) + 1} expression components, got {e}")
    on_b, on_f = p[:, 0] > threshold, p[:, 1] > threshold
    if gate_mm > 0 and on_b.any():
        cand = np.nonzero(on_b)[0]
        on_b[cand[lip_gap_mm(expr[cand], jaw[cand], model) >= gate_mm]] = False
    if hold_s > 0:
        radius = max(1, int(round(peak_s * fps))) if peak_s > 0 else 0
        on_b = hold_peaks(on_b, p[:, 0], max(1, int(round(hold_s * fps))), radius)
    cb = contact_weights(on_b, fps, edge_s)
    cf = contact_weights(on_f, fps, edge_s) * (1.0 - cb)
    act = np.nonzero((cb > 0) | (cf > 0))[0]
    if act.size == 0:
        return dict(rig_params)

    coef = art.lip_gap_coefficients(model)
    vals = np.zeros((act.size, len(PARAMS)))
    vals[:, P_INDEX["jaw"]] = jaw[act, 0]
    vals[:, 1:] = expr[act][:, cols]
    wb, wf = cb[act], cf[act]
    rig = _lip_rig(model)
    full = np.zeros((act.size, model.n_expr))

    def rig_inputs(v: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ex = full[rows].copy()
        ex[:, :e] = expr[act[rows]]
        ex[:, cols] = v[rows, 1:]
        jw = jaw[act[rows]].copy()
        jw[:, 0] = v[rows, P_INDEX["jaw"]]
        return ex, jw

    closing = np.nonzero(wb > 0)[0]
    offset = np.zeros(act.size)
    new = art.enforce_contacts(vals, wb, wf, coef, offset)
    if closing.size:
        # the linear gap model ignores other parameters and curvature: measure the offset on the mesh
        for _ in range(max(1, int(max_iter))):
            d = _lip_vectors(rig, *rig_inputs(new, closing))
            offset[closing] = d[:, 1] - (coef[0] + new[closing] @ coef[1:])
            new = art.enforce_contacts(vals, wb, wf, coef, offset)
            d = _lip_vectors(rig, *rig_inputs(new, closing))
            exact = wb[closing] >= 1.0 - 1e-12
            if not exact.any() or np.linalg.norm(d[exact], axis=1).max() * 1000 < tol_mm:
                break

    expr_out, jaw_out = expr.copy(), jaw.copy()
    expr_out[np.ix_(act, cols)] = new[:, 1:]
    jaw_out[act, 0] = new[:, P_INDEX["jaw"]]
    out = dict(rig_params)
    if is_torch:
        out["expr"] = torch.as_tensor(expr_out, dtype=expr_in.dtype, device=expr_in.device)
    else:
        out["expr"] = expr_out.astype(np.asarray(expr_in).dtype, copy=False)
    if isinstance(jaw_in, torch.Tensor):
        out["jaw_pose"] = torch.as_tensor(jaw_out, dtype=jaw_in.dtype, device=jaw_in.device)
    else:
        out["jaw_pose"] = jaw_out.astype(np.asarray(jaw_in).dtype, copy=False)
    return out
