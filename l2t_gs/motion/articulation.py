"""Articulation: phone segments -> smooth per-frame rig parameters of the built-in head.

Three stages, all vectorized over frames and segments (frames are processed in chunks against the
segments near them, so memory stays bounded for long clips):

1. **Segments**: phones are lower-cased, stress digits stripped (``aa1``: the digit is kept as a
   stress mark for :mod:`l2t_gs.motion.extras`, which adds blinks, brows and head motion on top:
   ``add_extras(articulate(...))``), gaps and the time before the first phone become
   ``sil``, a ``sil`` is appended after the last one, and diphthongs are split into two targets.
2. **Coarticulation** (Cohen and Massaro 1993): each parameter is the dominance-weighted mean of all
   segments' targets, with the targets and dominance functions of :mod:`l2t_gs.motion.visemes`.
3. **Contacts**: bilabial closure and labiodental contact are enforced where they must be reached.
   Each p/b/m (f/v) segment gets a contact window: 1 over the segment, widened to at least
   ``MIN_CLOSURE_S`` (``MIN_LABIODENTAL_S``) but never past halfway into a neighbour, with raised-cosine
   edges of up to ``EDGE_S`` that end by the neighbour's centre. Under the labiodental window the lower
   lip goes onto the upper incisors (``labiodental`` -> 1, jaw at most ``LABIODENTAL_JAW``). Under
   the closure window the lips close the gap that everything else opens (motor equivalence): the
   vertical lip gap is linear in the parameters, with coefficients measured on the rig, and the
   closure adds ``lip_close`` up to ``MAX_LIP_CLOSE`` (beyond it the blendshape distorts the lips)
   and raises the jaw for the rest. Bilabial closure wins over a neighbouring labiodental contact.

``articulate(segments, fps)`` returns a :class:`RigTrack` (expr [T, E], jaw/neck [T, 3], eyes [T, 6],
float32 numpy) for :class:`l2t_gs.rig.FlameRig`; frame i samples time ``i / fps``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from l2t_gs.assets import asset_path
from l2t_gs.errors import L2TError
from l2t_gs.motion.visemes import BILABIAL, DIPHTHONGS, LABIODENTAL, P_INDEX, PARAMS, viseme_arrays
from l2t_gs.rig import FlameRig, load_head_model

__all__ = [
    "RigTrack",
    "Segments",
    "articulate",
    "articulation_curves",
    "prepare_segments",
    "builtin_lip_pair",
    "lip_gap_coefficients",
    "contact_windows",
    "window_values",
    "enforce_contacts",
    "MIN_CLOSURE_S",
    "MIN_LABIODENTAL_S",
    "EDGE_S",
    "MAX_LIP_CLOSE",
    "LABIODENTAL_JAW",
    "LABIODENTAL_PUCKER",
    "CLOSURE_JAW",
]

MIN_CLOSURE_S = 0.05  # shortest visible bilabial closure
MIN_LABIODENTAL_S = 0.05
EDGE_S = 0.07  # longest raised-cosine approach/release of a contact
MAX_LIP_CLOSE = 2.5  # lip_close the closure may use before raising the jaw
LABIODENTAL_JAW = 0.02  # jaw opening (rad) at which the lower lip sits on the upper incisors
LABIODENTAL_PUCKER = 0.15  # most rounding kept during f/v (more pushes the lower lip off the teeth)
CLOSURE_JAW = 0.01  # jaw opening (rad) during a bilabial closure (more rotates the lower lip back)
TAIL_SIL_S = 0.3  # rest appended after the last phone
WINDOW_S = 3.0  # dominance is neglected beyond this distance (exp(-3 s * 5/s) < 5e-7)

_EPS = 1e-9


# ----------------------------------------------------------------------------------------------
# rig parameters over time


@dataclass
class RigTrack:
    """Per-frame FLAME rig parameters at ``fps`` (float32 numpy arrays, T frames).

    ``expr`` [T, E] in the order of ``expr_names``; ``jaw_pose``, ``neck_pose`` [T, 3] axis-angle
    (jaw x > 0 opens); ``eyes_pose`` [T, 6]. Tracks of equal length add (``speech + extras``).
    """

    expr: np.ndarray
    jaw_pose: np.ndarray
    neck_pose: np.ndarray
    eyes_pose: np.ndarray
    fps: float
    expr_names: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def zeros(cls, n_frames: int, fps: float, expr_names: Sequence[str]) -> RigTrack:
        f32 = np.float32
        return cls(
            np.zeros((n_frames, len(expr_names)), f32),
            np.zeros((n_frames, 3), f32),
            np.zeros((n_frames, 3), f32),
            np.zeros((n_frames, 6), f32),
            float(fps),
            tuple(expr_names),
        )

    @property
    def n_frames(self) -> int:
        return int(self.expr.shape[0])

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def expr_column(self, name: str) -> np.ndarray:
        """One expression coefficient over time [T]."""
        return self.expr[:, self.expr_names.index(name)]

    def __add__(self, other: RigTrack) -> RigTrack:
        if other.n_frames != self.n_frames or abs(other.fps - self.fps) > 1e-9:
            raise ValueError(f"cannot add tracks of {self.n_frames} and {other.n_frames} frames / different fps")
        if self.expr_names and other.expr_names and self.expr_names != other.expr_names:
            raise ValueError("cannot add tracks with different expression components")
        return RigTrack(
            self.expr + other.expr,
            self.jaw_pose + other.jaw_pose,
            self.neck_pose + other.neck_pose,
            self.eyes_pose + other.eyes_pose,
            self.fps,
            self.expr_names or other.expr_names,
        )

    def params(self, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> dict:
        """FlameRig keyword arguments as tensors [T, ...]."""
        return {
            k: torch.as_tensor(getattr(self, k)).to(device=device, dtype=dtype)
            for k in ("expr", "jaw_pose", "neck_pose", "eyes_pose")
        }

    def vertices(self, rig, shape: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
        """Posed vertices [T, V, 3] through ``rig`` (a FlameRig), ``chunk`` frames at a time, no grad."""
        names = list(getattr(rig.head, "expr_names", []) or [])
        if self.expr_names and names and names[: len(self.expr_names)] != list(self.expr_names):
            raise L2TError("the rig's expression components differ from the track's (built-in head expected)")
        p = self.params(device=rig.v_template.device, dtype=rig.v_template.dtype)
        out = []
        with torch.no_grad():
            for i in range(0, self.n_frames, max(1, int(chunk))):
                out.append(rig(shape=shape, **{k: v[i : i + chunk] for k, v in p.items()}))
        return torch.cat(out) if out else rig.v_template.new_zeros(0, rig.n_verts, 3)


# ----------------------------------------------------------------------------------------------
# segments


@dataclass(frozen=True)
class Segments:
    """Prepared segments (S of them, sorted, gap-free): viseme keys, phones, times (s), stress."""

    keys: np.ndarray  # [S] int, index into viseme_arrays().names
    phones: tuple[str, ...]  # [S] canonical phone of each (both diphthong parts carry the diphthong)
    start: np.ndarray  # [S] float64
    end: np.ndarray  # [S]
    stress: np.ndarray  # [S] int, -1 when unknown

    @property
    def centre(self) -> np.ndarray:
        return 0.5 * (self.start + self.end)

    @property
    def duration(self) -> np.ndarray:
        return self.end - self.start


def _parse(segments: Sequence) -> tuple[list[str], list[int], np.ndarray, np.ndarray]:
    phones, stress, starts, ends = [], [], [], []
    for s in segments:
        ph, a, b = (s.phone, s.start, s.end) if hasattr(s, "phone") else tuple(s)[:3]
        ph = str(ph).strip().lower()
        digit = ph[-1] if ph and ph[-1] in "012" else ""
        phones.append(ph[:-1] if digit else ph)
        stress.append(int(digit) if digit else -1)
        starts.append(float(a))
        ends.append(float(b))
    return phones, stress, np.asarray(starts, np.float64), np.asarray(ends, np.float64)


def prepare_segments(segments: Sequence, until: float = 0.0) -> Segments:
    """Validate, sort and fill phone segments (objects with .phone/.start/.end, or tuples).

    Gaps (and the time before the first phone) become ``sil``; a ``sil`` runs from the last end to
    ``max(until, last end) + TAIL_SIL_S``; diphthongs become two viseme keys.
    """
    va = viseme_arrays()
    phones, stress, starts, ends = _parse(segments)
    if not phones:
        raise L2TError("articulation needs at least one phone segment")
    unknown = sorted({p for p in phones if p not in va.names or p.endswith("_2")})
    if unknown:
        raise L2TError(f"unknown phones (expected canonical ARPAbet + sil): {', '.join(unknown)}")
    if not (np.isfinite(starts).all() and np.isfinite(ends).all()) or np.any(ends < starts) or starts.min() < 0:
        raise L2TError("phone segments need finite times with 0 <= start <= end")
    order = np.argsort(starts, kind="stable")
    keys: list[str] = []
    out_ph: list[str] = []
    out_st: list[int] = []
    t0: list[float] = []
    t1: list[float] = []

    def add(key: str, ph: str, st: int, a: float, b: float) -> None:
        keys.append(key), out_ph.append(ph), out_st.append(st), t0.append(a), t1.append(b)

    cursor = 0.0
    for i in order:
        a, b = max(starts[i], cursor), max(ends[i], cursor)
        if a > cursor + 1e-6:
            add("sil", "sil", -1, cursor, a)
        if b <= a:  # zero-length (or swallowed by an overlap)
            continue
        ph = phones[i]
        if ph in DIPHTHONGS:
            k1, k2, frac = DIPHTHONGS[ph]
            m = a + frac * (b - a)
            add(k1, ph, stress[i], a, m)
            add(k2, ph, stress[i], m, b)
        else:
            add(ph, ph, stress[i], a, b)
        cursor = b
    add("sil", "sil", -1, cursor, max(until, cursor) + TAIL_SIL_S)
    return Segments(
        keys=np.array([va.index(k) for k in keys], np.int64),
        phones=tuple(out_ph),
        start=np.array(t0),
        end=np.array(t1),
        stress=np.array(out_st, np.int64),
    )


# ----------------------------------------------------------------------------------------------
# rig constants


_GAP_CACHE: dict[tuple, np.ndarray] = {}
_DEFAULT_MODEL = None


def _default_model():
    global _DEFAULT_MODEL
    if _DEFAULT_MODEL is None:
        _DEFAULT_MODEL = load_head_model("builtin")
    return _DEFAULT_MODEL


@functools.cache
def builtin_lip_pair() -> tuple[int, int]:
    """The built-in head's lip-midline landmark vertices ``(upper, lower)`` (shipped in its file)."""
    with np.load(asset_path("head", "l2t_head.npz")) as z:
        return int(z["landmark_upper_lip_mid"][0]), int(z["landmark_lower_lip_mid"][0])


def lip_gap_coefficients(model=None) -> np.ndarray:
    """Vertical lip gap at the midline (metres): [rest gap, change per unit of each of PARAMS] -> [1 + P].

    Measured on the rig (finite differences; jaw per radian); the lip_close entry is about minus the
    rest gap. Cached per model.
    """

    model = model if model is not None else _default_model()
    key = (model.name, model.source, model.n_verts, model.n_expr)
    if key not in _GAP_CACHE:
        up, lo = builtin_lip_pair()
        m64 = model.to(dtype=torch.float64)
        names = list(m64.expr_names)
        n = len(PARAMS) + 1
        expr = torch.zeros(n, m64.n_expr, dtype=torch.float64)
        jaw = torch.zeros(n, 3, dtype=torch.float64)
        jaw[1, 0] = 0.05
        for i, p in enumerate(PARAMS[1:], start=2):
            expr[i, names.index(p)] = 1.0
        with torch.no_grad():
            v = FlameRig(m64)(expr=expr, jaw_pose=jaw)
        gap = (v[:, up, 1] - v[:, lo, 1]).numpy()
        coef = gap[1:] - gap[0]
        coef[0] /= 0.05
        _GAP_CACHE[key] = np.concatenate([[gap[0]], coef])
    return _GAP_CACHE[key]


# ----------------------------------------------------------------------------------------------
# coarticulation and contacts


def contact_windows(seg: Segments, members: frozenset[str], min_len: float) -> np.ndarray:
    """Contact windows of the segments whose phone is in ``members``: [K, 4] times (z0, p0, p1, z1).

    The window is 0 before z0, rises (raised cosine) to 1 at p0, stays 1 to p1 and falls to 0 at z1.
    Towards a neighbouring ``sil`` (closed lips anyway) it widens freely; towards a contact of the
    other kind the hand-over is centred on the shared boundary; towards any other neighbour it widens
    at most halfway into it and the edge ends by the neighbour's centre.
    """
    idx = np.array([i for i, p in enumerate(seg.phones) if p in members], np.int64)
    if idx.size == 0:
        return np.zeros((0, 4))
    contacts = BILABIAL | LABIODENTAL
    kind = np.array([1 if p in members else 2 if p in contacts else 3 if p == "sil" else 0 for p in seg.phones])
    c, s, e, d = seg.centre, seg.start, seg.end, seg.duration
    n = len(c)
    half = np.maximum(0.5 * d[idx], 0.5 * min_len)
    out = np.zeros((idx.size, 4))
    for side in (0, 1):  # 0: before the segment (z0, p0); 1: after it (p1, z1)
        sign = -1.0 if side == 0 else 1.0
        nb = idx - 1 if side == 0 else idx + 1
        valid = (nb >= 0) & (nb < n)
        nbc = np.where(valid, nb, idx)
        k = np.where(valid, kind[nbc], 3)
        edge = s[idx] if side == 0 else e[idx]
        nb_c = np.where(valid, c[nbc], c[idx] + sign * np.inf)
        # default: widen at most halfway into the neighbour; the edge ends by its centre
        plate = c[idx] + sign * half
        lim = 0.5 * (edge + nb_c)
        plate = np.maximum(plate, np.minimum(edge, lim)) if side == 0 else np.minimum(plate, np.maximum(edge, lim))
        zero = plate + sign * np.minimum(EDGE_S, np.maximum(np.abs(nb_c - plate), 1e-3))
        # silence: free widening and a full edge
        free = k == 3
        plate = np.where(free, c[idx] + sign * half, plate)
        zero = np.where(free, plate + sign * EDGE_S, zero)
        # the other contact: hand over around the shared boundary
        other = k == 2
        delta = np.minimum(0.5 * EDGE_S, 0.25 * np.minimum(d[idx], np.where(valid, d[nbc], np.inf)))
        delta = np.maximum(delta, 1e-3)
        plate = np.where(other, edge - sign * delta, plate)
        zero = np.where(other, edge + sign * delta, zero)
        # the same kind: keep the segment's own extent (the windows merge)
        same = k == 1
        plate = np.where(same, edge, plate)
        zero = np.where(same, edge + sign * np.minimum(EDGE_S, np.maximum(0.5 * d[nbc], 1e-3)), zero)
        out[:, 1 if side == 0 else 2] = plate
        out[:, 0 if side == 0 else 3] = zero
    return out


def window_values(t: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Max over windows [K, 4] of the window functions at times t [n] -> [n]."""
    if win.shape[0] == 0:
        return np.zeros_like(t)
    tt = t[:, None]
    z0, p0, p1, z1 = (win[None, :, i] for i in range(4))
    rise = 0.5 - 0.5 * np.cos(np.pi * np.clip((tt - z0) / np.maximum(p0 - z0, _EPS), 0.0, 1.0))
    fall = 0.5 - 0.5 * np.cos(np.pi * np.clip((z1 - tt) / np.maximum(z1 - p1, _EPS), 0.0, 1.0))
    return np.minimum(rise, fall).max(axis=1)


def _blend(t: np.ndarray, seg: Segments, idx: np.ndarray) -> np.ndarray:
    """Dominance-weighted targets at times t [n] over segments idx -> [n, P]."""
    va = viseme_arrays()
    k = seg.keys[idx]
    c = seg.centre[idx]
    h = va.plateau[k] * 0.5 * seg.duration[idx]
    before = np.maximum(c - h - t[:, None], 0.0)[..., None]  # [n, S, 1]
    after = np.maximum(t[:, None] - c - h, 0.0)[..., None]
    dom = va.alpha[k][None] * np.exp(-va.theta_back[k][None] * before - va.theta_fwd[k][None] * after)  # [n,S,P]
    wsum = np.maximum(dom.sum(axis=1), 1e-300)
    return (dom * va.target[k][None]).sum(axis=1) / wsum


def enforce_contacts(
    vals: np.ndarray, cb: np.ndarray, cf: np.ndarray, gap_coef: np.ndarray, gap_offset: np.ndarray | None = None
) -> np.ndarray:
    """Enforce labiodental contact (weight cf [n]) then bilabial closure (cb [n]) on vals [n, P].

    ``gap_offset`` [n] (metres, optional): lip gap not explained by ``gap_coef`` (other rig parameters,
    non-linearity); the closure closes ``gap_coef[0] + vals @ gap_coef[1:] + gap_offset``.
    """
    v = vals.copy()
    j, lc, lab, pk = P_INDEX["jaw"], P_INDEX["lip_close"], P_INDEX["labiodental"], P_INDEX["pucker"]
    # labiodental: lower lip onto the upper incisors; jaw nearly closed, little protrusion, nothing
    # pulling the lower lip away
    v[:, lab] += cf * (1.0 - v[:, lab])
    v[:, j] -= cf * np.maximum(v[:, j] - LABIODENTAL_JAW, 0.0)
    v[:, pk] -= cf * np.maximum(v[:, pk] - LABIODENTAL_PUCKER, 0.0)
    for p in ("lip_close", "lower_lip_drop"):
        v[:, P_INDEX[p]] *= 1.0 - cf
    # bilabial closure: shapes that part the lips fade, the jaw rises, the lips close what remains
    for p in ("labiodental", "lower_lip_drop", "upper_lip_raise"):
        v[:, P_INDEX[p]] *= 1.0 - cb
    v[:, j] -= cb * np.maximum(v[:, j] - CLOSURE_JAW, 0.0)
    g0, coef = gap_coef[0], gap_coef[1:]
    gap = g0 + v @ coef  # [n] metres
    if gap_offset is not None:
        gap = gap + gap_offset
    need = cb * np.maximum(gap, 0.0)
    lips = np.minimum(need, g0 * np.maximum(MAX_LIP_CLOSE - v[:, lc], 0.0))
    v[:, lc] += lips / g0
    rest = need - lips
    dj = np.minimum(rest / coef[j], np.maximum(v[:, j], 0.0))
    v[:, j] -= dj
    v[:, lc] += (rest - dj * coef[j]) / g0
    return v


# private names kept for existing callers
_contact_windows, _window_values, _apply_contacts = contact_windows, window_values, enforce_contacts


def articulation_curves(
    segments: Sequence | Segments,
    fps: float = 30.0,
    n_frames: int | None = None,
    *,
    model=None,
    chunk_frames: int = 512,
) -> np.ndarray:
    """Articulatory parameters (:data:`PARAMS` order; jaw in radians) at ``fps``: [T, P] float64."""
    if not fps > 0:
        raise L2TError(f"fps must be positive, got {fps}")
    seg = segments if isinstance(segments, Segments) else prepare_segments(segments, (n_frames or 0) / fps)
    if n_frames is None:  # the appended rest starts at the last input end
        n_frames = int(round(seg.start[-1] * fps))
    n = int(n_frames)
    gap_coef = lip_gap_coefficients(model)
    win_b = contact_windows(seg, BILABIAL, MIN_CLOSURE_S)
    win_f = contact_windows(seg, LABIODENTAL, MIN_LABIODENTAL_S)
    out = np.zeros((n, len(PARAMS)))
    times = np.arange(n) / fps
    for c0 in range(0, n, max(1, int(chunk_frames))):
        t = times[c0 : c0 + chunk_frames]
        idx = np.nonzero((seg.end >= t[0] - WINDOW_S) & (seg.start <= t[-1] + WINDOW_S))[0]
        if idx.size == 0:
            idx = np.array([len(seg.phones) - 1])
        vals = _blend(t, seg, idx)
        wb = win_b[(win_b[:, 3] >= t[0]) & (win_b[:, 0] <= t[-1])]
        wf = win_f[(win_f[:, 3] >= t[0]) & (win_f[:, 0] <= t[-1])]
        cb = window_values(t, wb)
        cf = window_values(t, wf) * (1.0 - cb)
        out[c0 : c0 + t.size] = enforce_contacts(vals, cb, cf, gap_coef)
    return out


def articulate(
    segments: Sequence,
    fps: float = 30.0,
    n_frames: int | None = None,
    *,
    model=None,
    chunk_frames: int = 512,
) -> RigTrack:
    """Per-frame rig parameters of the built-in head for phone segments.

    Args:
        segments: objects with ``.phone``/``.start``/``.end`` (seconds; e.g. ``PhoneSegment``) or
            ``(phone, start, end)`` tuples; canonical phones, stress digits allowed.
        fps: frame rate; frame i is time ``i / fps``.
        n_frames: number of frames (default: ``round(last end * fps)``).
        model: the head model (default: the built-in head); it must have the built-in expressions.
    Returns:
        RigTrack with expr [T, E], jaw_pose [T, 3], zero neck_pose [T, 3] and eyes_pose [T, 6].
    """
    model = model if model is not None else _default_model()
    names = list(model.expr_names)
    missing = [p for p in PARAMS[1:] if p not in names]
    if missing:
        raise L2TError(f"articulation needs the built-in head's expressions; {model.name!r} lacks {missing}")
    seg = prepare_segments(segments, (n_frames or 0) / fps)
    curves = articulation_curves(seg, fps, n_frames, model=model, chunk_frames=chunk_frames)
    track = RigTrack.zeros(curves.shape[0], fps, names)
    for p in PARAMS[1:]:
        track.expr[:, names.index(p)] = curves[:, P_INDEX[p]]
    track.jaw_pose[:, 0] = curves[:, P_INDEX["jaw"]]
    return track
