"""Viseme targets and dominance functions of the canonical phones on the built-in head.

Each phone has, per articulatory parameter (:data:`PARAMS`), a **target** and a **dominance function**
in the manner of Cohen and Massaro (1993): ``D(t) = alpha * exp(-theta * d(t))`` where ``d`` is the
time from the segment centre, less a plateau of ``plateau * duration / 2`` (so a long segment
holds its own targets; plateau 0 is the original formulation), with separate rates before the
centre (``theta_back``: anticipation) and after it (``theta_fwd``: carry-over). A parameter's value is
the dominance-weighted mean of all segments' targets (:mod:`l2t_gs.motion.articulation`).

Parameters: ``jaw`` (jaw_pose x, radians; 0.2 opens the lips by about 2 cm) and the speech expression
coefficients of the built-in head (1 = full articulation; see README). Targets:

====================  =====  =====  =====  ======  ======  =====  =====  =====
phone                 jaw    close  press  pucker  spread  ulr    lld    labio
====================  =====  =====  =====  ======  ======  =====  =====  =====
sil (rest)            0      1      0      0       0       0      0      0
p b / m               0.01   1 [C]  .6/.3  ~       ~       0      0      0
f v                   0.02   0      0      ~       ~       .3     0      1 [L]
aa ae ah ao           .20-.26  0    0      ao .35  ae .3   .2-.3  .1-.2  0
aw ay oy (diphthong)  .24/.22/.2 -> .09/.07/.07 (second part: uh / ih / iy shape)
er                    0.10   0      0      .3      0       .1     0      0
uw uh ow w            .03-.13  0    0      .7-1.0  0       0      0      0
iy ih ey eh y         .04-.13  0    0      0       .5-.8   .1     0      0
sh ch jh zh           0.05   0      0      .45     0       .2     .5     0
th dh                 0.07   0      0      ~       ~       .1     .1     0
r                     0.06   0      0      .35     ~       .05    0      0
t d n s z l k g ng    .04-.08  0    0      ~       ~       .05    0      0
hh                    ~      0      0      ~       ~       0      0      0
====================  =====  =====  =====  ======  ======  =====  =====  =====

``ulr`` upper_lip_raise (shows the upper teeth), ``lld`` lower_lip_drop, ``labio`` labiodental; ``~``
is a low dominance: the parameter follows its context (consonants are transparent to rounding and
spreading, ``hh`` takes the jaw of its vowel). ``[C]``: bilabial closure and ``[L]``: labiodental
contact are *dominant*: besides high dominance in the blend they are enforced as contact
constraints, see :mod:`l2t_gs.motion.articulation`. Rounding dominance decays slowly before a rounded
segment (``theta_back`` 5/s against 20-30/s for the rest), so it starts over the preceding
consonants (anticipatory rounding). Diphthongs are split into two targets (60% / 40% of the segment).
The tongue is not modelled: ``th``/``dh`` only get a small jaw opening.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PARAMS",
    "BILABIAL",
    "LABIODENTAL",
    "OPEN_VOWELS",
    "ROUNDED",
    "DIPHTHONGS",
    "Viseme",
    "VisemeArrays",
    "viseme_table",
    "viseme_arrays",
]

#: Articulatory parameters: jaw opening (radians) then expression coefficients of the built-in head.
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
P_INDEX: dict[str, int] = {p: i for i, p in enumerate(PARAMS)}

BILABIAL = frozenset({"p", "b", "m"})
LABIODENTAL = frozenset({"f", "v"})
OPEN_VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay"})
ROUNDED = frozenset({"uw", "uh", "ow", "oy", "w", "ao"})

#: Diphthongs: (first part, second part, fraction of the segment for the first part); the parts are
#: keys of the viseme table.
DIPHTHONGS: dict[str, tuple[str, str, float]] = {
    "ay": ("ay", "ay_2", 0.6),
    "aw": ("aw", "aw_2", 0.6),
    "oy": ("oy", "oy_2", 0.6),
    "ey": ("ey", "ey_2", 0.6),
    "ow": ("ow", "ow_2", 0.6),
}

# default dominance: magnitude and rates (1/s) before and after the plateau
_ALPHA = 0.5
_BACK = 25.0
_FWD = 25.0
_ROUND_BACK = 5.0  # anticipatory rounding: slow decay before rounded segments
_ROUND_FWD = 14.0


@dataclass
class Viseme:
    """Target and dominance of one phone; all arrays are [P] in :data:`PARAMS` order."""

    target: np.ndarray
    alpha: np.ndarray
    theta_back: np.ndarray
    theta_fwd: np.ndarray
    plateau: float = 0.5  # fraction of the half-duration around the centre at full dominance

    def describe(self) -> dict[str, float]:
        return {p: float(self.target[i]) for i, p in enumerate(PARAMS)}


def _v(
    target: dict[str, float],
    alpha: dict[str, float] | None = None,
    *,
    a0: float = _ALPHA,
    back: float = _BACK,
    fwd: float = _FWD,
    plateau: float = 0.5,
    rounding: bool = False,
) -> Viseme:
    n = len(PARAMS)
    t = np.zeros(n)
    a = np.full(n, a0)
    tb, tf = np.full(n, back), np.full(n, fwd)
    for k, val in target.items():
        t[P_INDEX[k]] = val
    for k, val in (alpha or {}).items():
        a[P_INDEX[k]] = val
    if rounding:
        tb[P_INDEX["pucker"]], tf[P_INDEX["pucker"]] = _ROUND_BACK, _ROUND_FWD
        tb[P_INDEX["spread"]], tf[P_INDEX["spread"]] = _ROUND_BACK, _ROUND_FWD
    return Viseme(t, a, tb, tf, plateau)


# consonants are nearly transparent to the lip shape of their vowels
_TRANSPARENT = {"pucker": 0.08, "spread": 0.1}


def viseme_table() -> dict[str, Viseme]:
    """Viseme of every canonical phone (CMU ARPAbet lowercase + ``sil``) and of the diphthong parts."""
    t: dict[str, Viseme] = {}
    # rest: closed lips, jaw at rest; a long silence holds it everywhere (plateau 1)
    t["sil"] = _v({"lip_close": 1.0}, a0=1.0, back=15.0, fwd=15.0, plateau=1.0)

    for ph, press in (("p", 0.6), ("b", 0.6), ("m", 0.3)):
        t[ph] = _v(
            {"jaw": 0.01, "lip_close": 1.0, "lip_press": press},
            {"jaw": 2.5, "lip_close": 8.0, "lip_press": 2.0, "upper_lip_raise": 3.0, "lower_lip_drop": 3.0,
             "labiodental": 6.0, **_TRANSPARENT},
            back=30.0, fwd=30.0, plateau=1.0,
        )  # fmt: skip
    for ph in ("f", "v"):
        t[ph] = _v(
            {"jaw": 0.02, "labiodental": 1.0, "upper_lip_raise": 0.3},
            {"jaw": 2.5, "labiodental": 8.0, "lip_close": 3.0, "lower_lip_drop": 3.0, "upper_lip_raise": 1.5,
             **_TRANSPARENT},
            back=30.0, fwd=30.0, plateau=1.0,
        )  # fmt: skip

    vowel_alpha = {"jaw": 1.0, "lip_close": 1.0, "upper_lip_raise": 0.8, "lower_lip_drop": 0.8}
    lips = {"pucker": 1.2, "spread": 1.2}
    # open vowels (and the open first parts of diphthongs)
    for ph, jaw, ulr, lld, extra in (
        ("aa", 0.26, 0.3, 0.2, {}),
        ("ae", 0.22, 0.3, 0.15, {"spread": 0.3}),
        ("ah", 0.20, 0.2, 0.1, {}),
        ("ao", 0.22, 0.2, 0.15, {"pucker": 0.35}),
        ("ay", 0.22, 0.3, 0.15, {}),
        ("aw", 0.24, 0.3, 0.2, {}),
    ):
        t[ph] = _v({"jaw": jaw, "upper_lip_raise": ulr, "lower_lip_drop": lld, **extra}, {**vowel_alpha, **lips},
                   rounding=ph == "ao", plateau=0.6)  # fmt: skip
    t["oy"] = _v({"jaw": 0.20, "pucker": 0.6, "upper_lip_raise": 0.1}, {**vowel_alpha, **lips}, rounding=True,
                 plateau=0.6)  # fmt: skip
    t["er"] = _v({"jaw": 0.10, "pucker": 0.3, "upper_lip_raise": 0.1}, {**vowel_alpha, **lips}, plateau=0.6)
    # rounded vowels and w
    for ph, pk, jaw in (("uw", 1.0, 0.05), ("uh", 0.7, 0.09), ("ow", 0.75, 0.13), ("w", 1.0, 0.03)):
        t[ph] = _v({"jaw": jaw, "pucker": pk}, {**vowel_alpha, "pucker": 2.0, "spread": 2.0}, rounding=True,
                   plateau=0.6)  # fmt: skip
    # spread vowels and y
    for ph, sp, jaw in (("iy", 0.8, 0.05), ("ih", 0.55, 0.08), ("ey", 0.6, 0.10), ("eh", 0.5, 0.13), ("y", 0.5, 0.04)):
        t[ph] = _v({"jaw": jaw, "spread": sp, "upper_lip_raise": 0.1}, {**vowel_alpha, "pucker": 1.5, "spread": 1.5},
                   plateau=0.6)  # fmt: skip
    # second parts of diphthongs
    t["ay_2"] = _v({"jaw": 0.07, "spread": 0.5, "upper_lip_raise": 0.1}, {**vowel_alpha, **lips}, plateau=0.6)
    t["ey_2"] = _v({"jaw": 0.06, "spread": 0.7, "upper_lip_raise": 0.1}, {**vowel_alpha, **lips}, plateau=0.6)
    t["oy_2"] = _v({"jaw": 0.07, "spread": 0.5, "upper_lip_raise": 0.1}, {**vowel_alpha, **lips}, plateau=0.6)
    t["aw_2"] = _v({"jaw": 0.09, "pucker": 0.8}, {**vowel_alpha, **lips}, rounding=True, plateau=0.6)
    t["ow_2"] = _v({"jaw": 0.07, "pucker": 1.0}, {**vowel_alpha, **lips}, rounding=True, plateau=0.6)

    for ph in ("sh", "ch", "jh", "zh"):
        t[ph] = _v({"jaw": 0.05, "pucker": 0.45, "lower_lip_drop": 0.5, "upper_lip_raise": 0.2},
                   {"jaw": 1.5, "pucker": 1.2, "spread": 1.0, "lower_lip_drop": 1.5, "upper_lip_raise": 1.0},
                   back=15.0)  # fmt: skip
    for ph in ("th", "dh"):
        t[ph] = _v({"jaw": 0.07, "upper_lip_raise": 0.1, "lower_lip_drop": 0.1}, {"jaw": 1.5, **_TRANSPARENT})
    t["r"] = _v({"jaw": 0.06, "pucker": 0.35, "upper_lip_raise": 0.05}, {"jaw": 1.0, "pucker": 0.6, "spread": 0.1})
    for ph, jaw in (("t", 0.04), ("d", 0.045), ("n", 0.045), ("s", 0.035), ("z", 0.035), ("l", 0.08),
                    ("k", 0.07), ("g", 0.07), ("ng", 0.06)):  # fmt: skip
        t[ph] = _v({"jaw": jaw, "upper_lip_raise": 0.05}, {"jaw": 1.0, **_TRANSPARENT})
    t["hh"] = _v({"jaw": 0.1}, {"jaw": 0.1, "lip_close": 0.3, **_TRANSPARENT})
    return t


@dataclass(frozen=True)
class VisemeArrays:
    """The viseme table as arrays over keys (``names``): targets, dominance magnitudes and rates [K, P]."""

    names: tuple[str, ...]
    target: np.ndarray
    alpha: np.ndarray
    theta_back: np.ndarray
    theta_fwd: np.ndarray
    plateau: np.ndarray  # [K]

    def index(self, name: str) -> int:
        return self.names.index(name)


_ARRAYS: VisemeArrays | None = None


def viseme_arrays() -> VisemeArrays:
    """:func:`viseme_table` stacked into arrays (cached)."""
    global _ARRAYS
    if _ARRAYS is None:
        tab = viseme_table()
        names = tuple(tab)
        _ARRAYS = VisemeArrays(
            names=names,
            target=np.stack([tab[n].target for n in names]),
            alpha=np.stack([tab[n].alpha for n in names]),
            theta_back=np.stack([tab[n].theta_back for n in names]),
            theta_fwd=np.stack([tab[n].theta_fwd for n in names]),
            plateau=np.array([tab[n].plateau for n in names]),
        )
    return _ARRAYS
