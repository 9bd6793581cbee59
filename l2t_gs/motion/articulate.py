"""Articulation: phone segments -> smooth per-frame rig parameters of the built-in head.

Each phone has a viseme target per articulatory parameter (jaw opening and the speech expression
components of the built-in head) and a *dominance function* per parameter, in the manner of Cohen
and Massaro (1993): the dominance is ``alpha`` inside the segment and decays as
``alpha * exp(-theta * distance)`` before (anticipation, ``theta_back``) and after (carry-over,
``theta_fwd``) it. A parameter's value at time t is the dominance-weighted mean of the targets of all
segments. Bilabial closure and labiodental contact have high dominance (they are reached); rounding
has a slow backward decay, so it starts early over preceding consonants (anticipatory rounding),
and consonants are nearly transparent to it.

Lip closure compensates the other articulators (motor equivalence): the closure target of p/b/m and
of silence is ``1 + sum_p c_p * value_p / g0``, where g0 is the rest lip gap and c_p the change of the
vertical lip gap per unit of parameter p (jaw, rounding, lip raise, ...), all measured on the rig, so
the lips meet whatever the jaw and the neighbouring vowels do.

Targets (jaw in radians; expression coefficients, 1 = full articulation):

=================  ======  =====  =====  ======  ======  =====  =====  =====
phone class         jaw    close  press  pucker  spread  ulr    lld    labio
=================  ======  =====  =====  ======  ======  =====  =====  =====
sil (rest)          0.0    1*     0.0    0.0     0.0     0.0    0.0    0.0
p b m               0.0    1*     0.6    --      --      0.0    0.0    0.0
f v                 0.03   0.0    0.0    --      --      0.35   0.0    1.0
open aa ae ah ao..  0.19-0.28  0  0.0    (ao .4) 0.1     0.3    0.2    0.0
rounded uw uh ow oy w  0.06-0.14 0   0.0  0.8-1.0 0.0    0.0    0.0    0.0
spread iy ih ey eh  0.06-0.12  0  0.0    0.0     0.6-0.8 0.1    0.0    0.0
sh ch jh zh         0.05   0.0    0.0    0.5     0.0     0.2    0.5    0.0
th dh               0.07   0.0    0.0    --      --      0.1    0.1    0.0
other consonants    0.04-0.08  0  0.0    --      --      0.05   0.0    0.0
=================  ======  =====  =====  ======  ======  =====  =====  =====

``1*`` is the jaw-compensated closure; ``--`` means low dominance (the parameter follows context).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from l2t_gs.errors import L2TError

#: Articulatory parameters, in the order of the target/dominance tables.
PARAMS: tuple[str, ...] = (
    "jaw",
    "lip_close",
    "lip_press",
    "pucker",
    "spread",
    "upper_lip_raise",
    "lower_lip_drop",
    "labiodental",
)
_P = {p: i for i, p in enumerate(PARAMS)}

OPEN = {"aa": 0.26, "ae": 0.24, "ah": 0.2, "ao": 0.24, "aw": 0.26, "ay": 0.25, "er": 0.1}
ROUNDED = {"uw": (1.0, 0.07), "uh": (0.8, 0.1), "ow": (0.9, 0.14), "oy": (0.8, 0.14), "w": (1.0, 0.05)}
SPREAD = {"iy": (0.8, 0.06), "ih": (0.6, 0.09), "ey": (0.7, 0.11), "eh": (0.6, 0.13), "y": (0.5, 0.05)}
POSTALVEOLAR = ("sh", "ch", "jh", "zh")
BILABIAL = ("p", "b", "m")
LABIODENTAL = ("f", "v")


@dataclass(frozen=True)
class _Viseme:
    target: np.ndarray  # [P]
    alpha: np.ndarray  # [P] dominance magnitude
    theta_back: np.ndarray  # [P] 1/s, decay before the segment (anticipation)
    theta_fwd: np.ndarray  # [P] 1/s, decay after the segment (carry-over)
    power: np.ndarray  # [P] exponent c of the distance: exp(-theta * d**c) (c = 2: a sharp contact)


def _viseme(targets: dict[str, float], alpha: dict[str, float], back: float = 25.0, fwd: float = 30.0) -> _Viseme:
    t = np.zeros(len(PARAMS))
    a = np.full(len(PARAMS), 0.6)
    tb = np.full(len(PARAMS), back)
    tf = np.full(len(PARAMS), fwd)
    for k, v in targets.items():
        t[_P[k]] = v
    for k, v in alpha.items():
        a[_P[k]] = v
    return _Viseme(t, a, tb, tf, np.ones(len(PARAMS)))


def _contact(v: _Viseme, params: tuple[str, ...], alpha: float = 100.0, sigma: float = 0.025) -> _Viseme:
    """Make ``params`` a dominant contact: Gaussian dominance alpha * exp(-(d / sigma)^2) around the segment."""
    for p in params:
        i = _P[p]
        v.alpha[i], v.power[i] = alpha, 2.0
        v.theta_back[i] = v.theta_fwd[i] = 1.0 / sigma**2
    return v


def viseme_table() -> dict[str, _Viseme]:
    """Viseme target and dominance per canonical phone (CMU ARPAbet + ``sil``)."""
    table: dict[str, _Viseme] = {}
    # silence: rest pose with closed lips, moderately dominant, slow onset
    table["sil"] = _viseme({"jaw": 0.0, "lip_close": 1.0}, {"jaw": 1.0, "lip_close": 1.2, "pucker": 0.6}, 12, 12)
    for ph in BILABIAL:
        v = _viseme(
            {"jaw": 0.0, "lip_close": 1.0, "lip_press": 0.6},
            {
                "jaw": 10.0,
                "lip_close": 30.0,
                "lip_press": 4.0,
                "pucker": 0.15,
                "spread": 0.15,
                "labiodental": 6.0,
                "upper_lip_raise": 4.0,
                "lower_lip_drop": 4.0,
            },
            40,
            45,
        )
        table[ph] = _contact(v, ("lip_close",))
    for ph in LABIODENTAL:
        v = _viseme(
            {"jaw": 0.03, "labiodental": 1.0, "upper_lip_raise": 0.35},
            {
                "jaw": 12.0,
                "labiodental": 25.0,
                "lip_close": 3.0,
                "upper_lip_raise": 2.0,
                "lower_lip_drop": 4.0,
                "pucker": 3.0,
                "spread": 0.2,
            },
            40,
            45,
        )
        table[ph] = _contact(v, ("labiodental", "lip_close", "lower_lip_drop"))
    for ph, jaw in OPEN.items():
        table[ph] = _viseme(
            {
                "jaw": jaw,
                "upper_lip_raise": 0.3,
                "lower_lip_drop": 0.2,
                "spread": 0.1,
                "pucker": 0.4 if ph == "ao" else 0,
            },
            {"jaw": 1.6, "lip_close": 1.0, "upper_lip_raise": 1.0, "lower_lip_drop": 1.0, "pucker": 0.8},
        )
    for ph, (pk, jaw) in ROUNDED.items():
        v = _viseme({"jaw": jaw, "pucker": pk}, {"jaw": 1.2, "pucker": 3.0, "spread": 2.0, "lip_close": 1.0})
        v.theta_back[_P["pucker"]] = 6.0  # rounding anticipated over preceding consonants
        v.theta_fwd[_P["pucker"]] = 15.0
        table[ph] = v
    for ph, (sp, jaw) in SPREAD.items():
        table[ph] = _viseme(
            {"jaw": jaw, "spread": sp, "upper_lip_raise": 0.1},
            {"jaw": 1.2, "spread": 2.0, "pucker": 1.0, "lip_close": 1.0},
        )
    for ph in POSTALVEOLAR:
        table[ph] = _viseme(
            {"jaw": 0.05, "pucker": 0.5, "lower_lip_drop": 0.5, "upper_lip_raise": 0.2},
            {"jaw": 1.5, "pucker": 1.5, "lower_lip_drop": 1.5, "lip_close": 1.0},
        )
    for ph in ("th", "dh"):
        table[ph] = _viseme(
            {"jaw": 0.07, "upper_lip_raise": 0.1, "lower_lip_drop": 0.1}, {"jaw": 1.5, "lip_close": 1.0}
        )
    other = {"t": 0.05, "d": 0.05, "n": 0.05, "l": 0.07, "s": 0.04, "z": 0.04, "k": 0.08, "g": 0.08,
             "ng": 0.07, "hh": 0.1, "r": 0.06}  # fmt: skip
    for ph, jaw in other.items():
        table[ph] = _viseme(
            {"jaw": jaw, "upper_lip_raise": 0.05, "pucker": 0.3 if ph == "r" else 0.0},
            {"jaw": 0.8, "lip_close": 1.0, "pucker": 0.25, "spread": 0.3},
        )
    return table


@dataclass
class RigTrack:
    """Per-frame rig parameters of the built-in head at ``fps``."""

    expr: np.ndarray  # [T, E] float32
    jaw_pose: np.ndarray  # [T, 3] float32 (axis-angle, x = opening)
    neck_pose: np.ndarray  # [T, 3] float32
    eyes_pose: np.ndarray  # [T, 6] float32
    fps: float

    @property
    def n_frames(self) -> int:
        return int(self.expr.shape[0])

    def __add__(self, other: RigTrack) -> RigTrack:
        if other.n_frames != self.n_frames or other.fps != self.fps:
            raise ValueError("tracks differ in length or fps")
        return RigTrack(
            self.expr + other.expr,
            self.jaw_pose + other.jaw_pose,
            self.neck_pose + other.neck_pose,
            self.eyes_pose + other.eyes_pose,
            self.fps,
        )

    def params(self) -> dict[str, torch.Tensor]:
        """Rig keyword arguments as float32 tensors ``[T, ...]``."""
        return {
            "expr": torch.as_tensor(self.expr),
            "jaw_pose": torch.as_tensor(self.jaw_pose),
            "neck_pose": torch.as_tensor(self.neck_pose),
            "eyes_pose": torch.as_tensor(self.eyes_pose),
        }

    def vertices(self, rig, shape: torch.Tensor | None = None, chunk: int = 256) -> torch.Tensor:
        """Vertices ``[T, V, 3]`` through ``rig`` (a FlameRig), ``chunk`` frames at a time."""
        p = self.params()
        out = []
        with torch.no_grad():
            for i in range(0, self.n_frames, chunk):
                out.append(rig(shape=shape, **{k: v[i : i + chunk] for k, v in p.items()}))
        return torch.cat(out) if out else torch.zeros(0, rig.n_verts, 3)


def _segments_arrays(segments: Sequence) -> tuple[list[str], np.ndarray, np.ndarray]:
    phones, starts, ends = [], [], []
    for s in segments:
        ph, a, b = (s.phone, s.start, s.end) if hasattr(s, "phone") else s
        phones.append(str(ph).lower().rstrip("012"))
        starts.append(float(a))
        ends.append(float(b))
    return phones, np.asarray(starts), np.asarray(ends)


def _gap_coefficients(model) -> np.ndarray:
    """Signed vertical lip gap per unit of each parameter [P] (metres), measured on the rig.

    Entry 0 (jaw) is per radian; the lip_close entry is minus the rest gap. The gap is linear enough
    in these parameters (checked by the tests) for the closure to compensate the others.
    """
    from l2t_gs.assets import asset_path
    from l2t_gs.rig import FlameRig

    with np.load(asset_path("head", "l2t_head.npz")) as z:
        up, lo = int(z["landmark_upper_lip_mid"][0]), int(z["landmark_lower_lip_mid"][0])
    m64 = model.to(dtype=torch.float64)
    rig = FlameRig(m64)
    names = list(m64.expr_names)
    n = len(PARAMS) + 1
    expr = torch.zeros(n, m64.n_expr, dtype=torch.float64)
    jaw = torch.zeros(n, 3, dtype=torch.float64)
    jaw[1, 0] = 0.05
    for i, p in enumerate(PARAMS[1:], start=2):
        expr[i, names.index(p)] = 1.0
    with torch.no_grad():
        v = rig(expr=expr, jaw_pose=jaw)
    gap = (v[:, up, 1] - v[:, lo, 1]).numpy()
    coef = gap[1:] - gap[0]
    coef[0] /= 0.05
    return np.concatenate([[gap[0]], coef])  # [rest gap, per-parameter change...]


_CONSTANTS: dict[str, np.ndarray] = {}


def articulate(
    segments: Sequence,
    fps: float = 30.0,
    n_frames: int | None = None,
    *,
    model=None,
    window_s: float = 2.5,
    chunk_frames: int = 512,
) -> RigTrack:
    """Rig parameters at ``fps`` for phone segments (objects with .phone/.start/.end in seconds, or tuples).

    ``n_frames`` defaults to ``round(last end * fps)``; frame i samples time ``i / fps``. Memory is
    bounded: frames are processed in chunks against the segments within ``window_s`` of them.
    """
    from l2t_gs.rig import load_head_model

    model = model if model is not None else load_head_model("builtin")
    names = list(model.expr_names)
    missing = [p for p in PARAMS[1:] if p not in names]
    if missing:
        raise L2TError(f"articulation needs the built-in head's expressions; model {model.name!r} lacks {missing}")
    key = f"{model.source}:{model.n_verts}"
    if key not in _CONSTANTS:
        _CONSTANTS[key] = _gap_coefficients(model)
    g0, coef = _CONSTANTS[key][0], _CONSTANTS[key][1:]  # coef[lip_close] == -g0

    phones, starts, ends = _segments_arrays(segments)
    table = viseme_table()
    unknown = sorted({p for p in phones if p not in table})
    if unknown:
        raise L2TError(f"unknown phones (expected canonical ARPAbet + sil): {', '.join(unknown)}")
    if len(phones) == 0:
        raise L2TError("articulation needs at least one phone segment")
    if np.any(ends < starts):
        raise L2TError("phone segments must have end >= start")
    n = int(round(ends.max() * fps)) if n_frames is None else int(n_frames)
    tgt = np.stack([table[p].target for p in phones])  # [S,P]
    alpha = np.stack([table[p].alpha for p in phones])
    tb = np.stack([table[p].theta_back for p in phones])
    tf = np.stack([table[p].theta_fwd for p in phones])
    pw = np.stack([table[p].power for p in phones])
    closes = np.array([p in BILABIAL or p == "sil" for p in phones])
    mid = 0.5 * (starts + ends)

    out = np.zeros((n, len(PARAMS)))
    times = np.arange(n) / fps
    for c0 in range(0, n, chunk_frames):
        t = times[c0 : c0 + chunk_frames]
        idx = np.nonzero((ends >= t[0] - window_s) & (starts <= t[-1] + window_s))[0]
        if idx.size == 0:  # no phone near these frames: hold the nearest one
            idx = np.array([int(np.argmin(np.abs(mid - t.mean())))])
        before = np.maximum(starts[idx][None] - t[:, None], 0.0)  # [t,S]
        after = np.maximum(t[:, None] - ends[idx][None], 0.0)
        c = pw[idx][None]
        dom = alpha[idx][None] * np.exp(-tb[idx][None] * before[..., None] ** c - tf[idx][None] * after[..., None] ** c)
        dom = np.maximum(dom, 1e-12)  # [t,S,P]
        wsum = dom.sum(1)
        vals = (dom * tgt[idx][None]).sum(1) / wsum  # [t,P]
        # closure compensates the gap the other parameters open (jaw, rounding, lip raise, ...)
        ci = _P["lip_close"]
        others = vals @ coef - vals[:, ci] * coef[ci]  # [t] gap change from everything but closure
        close_t = np.where(closes[idx][None], 1.0 + others[:, None] / g0, tgt[idx][None, :, ci])
        vals[:, ci] = (dom[..., ci] * close_t).sum(1) / wsum[:, ci]
        out[c0 : c0 + t.size] = vals

    expr = np.zeros((n, model.n_expr), np.float32)
    for p in PARAMS[1:]:
        expr[:, names.index(p)] = out[:, _P[p]]
    jaw_pose = np.zeros((n, 3), np.float32)
    jaw_pose[:, 0] = out[:, _P["jaw"]]
    return RigTrack(expr, jaw_pose, np.zeros((n, 3), np.float32), np.zeros((n, 6), np.float32), float(fps))
