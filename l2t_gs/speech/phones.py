"""The canonical phone set (CMU ARPAbet, lowercase, no stress, plus ``sil``), phone classes, and
mappings from the phone names of espeak-ng, flite, festival and CMU/pocketsphinx to it.

A source phone maps to a tuple of canonical phones: usually one, two for r-coloured or syllabic
sounds (espeak ``A@`` -> ``aa r``, festival ``el`` -> ``ah l``), none for zero-length marks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "SIL",
    "PHONES",
    "VOWELS",
    "CONSONANTS",
    "PHONE_CLASSES",
    "PHONE_TO_ID",
    "ESPEAK_TO_CANON",
    "FESTIVAL_TO_CANON",
    "FLITE_TO_CANON",
    "phone_classes",
    "map_phone",
    "map_espeak",
    "map_flite",
    "map_festival",
    "map_cmu",
    "canonical_to_cmu",
]

SIL = "sil"

#: The 39 CMU ARPAbet phones (lowercase, no stress) followed by ``sil``; the order fixes phone ids.
PHONES: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh", "ih", "iy", "jh",
    "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v", "w", "y", "z", "zh",
    SIL,
)  # fmt: skip
PHONE_TO_ID: dict[str, int] = {p: i for i, p in enumerate(PHONES)}

VOWELS = frozenset({"aa", "ae", "ah", "ao", "aw", "ay", "eh", "er", "ey", "ih", "iy", "ow", "oy", "uh", "uw"})
CONSONANTS = frozenset(PHONES) - VOWELS - {SIL}

#: Articulatory classes of the canonical phones (a phone can be in several); ``silence`` is just ``sil``.
PHONE_CLASSES: dict[str, frozenset[str]] = {
    "silence": frozenset({SIL}),
    "vowel": VOWELS,
    "consonant": CONSONANTS,
    # vowels
    "open_vowel": frozenset({"aa", "ae", "ah", "ao", "aw", "ay"}),
    "close_vowel": frozenset({"iy", "ih", "uw", "uh"}),
    "front_vowel": frozenset({"iy", "ih", "ey", "eh", "ae"}),
    "back_vowel": frozenset({"aa", "ao", "ow", "uh", "uw"}),
    "central_vowel": frozenset({"ah", "er"}),
    "diphthong": frozenset({"aw", "ay", "ey", "ow", "oy"}),
    "rounded": frozenset({"uw", "uh", "ow", "oy", "w", "ao"}),
    "spread": frozenset({"iy", "ih", "ey", "eh"}),
    "rhotic": frozenset({"er", "r"}),
    # place of articulation
    "bilabial": frozenset({"p", "b", "m"}),
    "labiodental": frozenset({"f", "v"}),
    "labial": frozenset({"p", "b", "m", "f", "v", "w"}),
    "dental": frozenset({"th", "dh"}),
    "alveolar": frozenset({"t", "d", "s", "z", "n", "l", "r"}),
    "postalveolar": frozenset({"sh", "zh", "ch", "jh"}),
    "palatal": frozenset({"y"}),
    "velar": frozenset({"k", "g", "ng"}),
    "glottal": frozenset({"hh"}),
    # manner of articulation
    "stop": frozenset({"p", "b", "t", "d", "k", "g"}),
    "fricative": frozenset({"f", "v", "th", "dh", "s", "z", "sh", "zh", "hh"}),
    "affricate": frozenset({"ch", "jh"}),
    "nasal": frozenset({"m", "n", "ng"}),
    "liquid": frozenset({"l", "r"}),
    "glide": frozenset({"w", "y"}),
    "sibilant": frozenset({"s", "z", "sh", "zh", "ch", "jh"}),
    "voiced": frozenset({"b", "d", "g", "v", "dh", "z", "zh", "jh", "m", "n", "ng", "l", "r", "w", "y"}) | VOWELS,
}


def phone_classes(phone: str) -> frozenset[str]:
    """Names of the classes in PHONE_CLASSES that contain ``phone``."""
    if phone not in PHONE_TO_ID:
        raise ValueError(f"not a canonical phone: {phone!r}")
    return frozenset(name for name, members in PHONE_CLASSES.items() if phone in members)


def _table(spec: str) -> dict[str, tuple[str, ...]]:
    """Parse ``src=dst dst2, src2=dst, ...`` (an empty right side maps to no phone)."""
    table: dict[str, tuple[str, ...]] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        src, _, dst = item.strip().partition("=")
        phones = tuple(dst.split())
        assert all(p in PHONE_TO_ID for p in phones), item
        table[src] = phones
    return table


# espeak-ng English phoneme mnemonics (tables base1, en, en-us, en-rp, en-sc, en-n, en-wm, en-wi and
# the other English dialects), as reported by phoneme events and espeak_TextToPhonemes without stress
# marks. Pauses become sil, zero-length marks (";" palatalise, ":" lengthen) nothing.
ESPEAK_TO_CANON: dict[str, tuple[str, ...]] = _table(
    # pauses and marks
    "_=sil, _:=sil, _::=sil, _!=sil, _|=sil, _;_=sil, _^_=sil, _X1=sil, ||=sil, -=sil, ;=, :=, #X1=, *=, **=,"
    # schwas and central vowels
    "@=ah, @-=ah, @2=ah, @5=ah, @#=ah, #@=ah, a#=ah, a#2=ah, V=ah, @L=ah l,"
    "3=er, 3:=er, IR=er, VR=er,"
    # front vowels
    "a=ae, a2=ae, aa=ae, #a=ae, E=eh, E2=eh, E3=eh, E#=eh, e#=eh, e=ey, #e=ey, e:=ey, eI=ey,"
    "I=ih, I2=ih, I#=ih, I2#=ih, i=iy, #i=iy, i:=iy, i::=iy,"
    # back vowels
    "A:=aa, A#=aa, A~=aa, 0=aa, 0#=aa, 02=aa, O=ao, O:=ao, O2=ao, O~=ao, o=ow, #o=ow, o:=ow, oU=ow, oU#=ow,"
    "U=uh, u=uw, #u=uw, u:=uw,"
    # diphthongs and r-coloured vowels
    "aI=ay, aI2=ay, aU=aw, OI=oy, aI@=ay er, aI3=ay er, aU@=aw er,"
    "A@=aa r, e@=eh r, i@=iy ah, i@3=ih r, O@=ao r, o@=ao r, U@=uh r,"
    # plosives, affricates
    "p=p, b=b, t=t, t#=t, t2=t, t[=t, ?=t, d=d, d#=d, d[=d, k=k, c=k, q=k, g=g, Q=g,"
    "tS=ch, tS;=ch, dZ=jh, dZ;=jh,"
    # fricatives
    "f=f, v=v, v#=v, B=v, T=th, D=dh, s=s, s.=s, s;=s, z=z, z#=z, z/2=z, z.=z, z;=z,"
    'S=sh, S;=sh, Z=zh, Z;=zh, h=hh, x=k, X=hh, C=hh, Q^=g, Q"=g,'
    # nasals
    "m=m, n=n, n.=n, n^=n, J=n y, J^=jh, N=ng, m-=ah m, n-=ah n, N-=ng,"
    # approximants
    "l=l, l/=l, l/2=l, l/3=l, l#=l, l^=l y, l.=l, L=l, L/=l, l-=ah l,"
    'r=r, r-=r, r/=r, r.=r, r"=r, R=r, R2=r, R3=r, w=w, w#=w, j=y'
)

#: festival's radio phone set (kal_diphone) and flite's US English set (a subset of it).
FESTIVAL_TO_CANON: dict[str, tuple[str, ...]] = {
    **{p: (p,) for p in PHONES if p != SIL},
    **_table(
        "pau=sil, h#=sil, brth=sil, sil=sil, ssil=sil,"
        "ax=ah, axr=er, ix=ih, ux=uw, dx=d, nx=n, hv=hh, el=ah l, em=ah m, en=ah n, eng=ah ng"
    ),
}
FLITE_TO_CANON: dict[str, tuple[str, ...]] = FESTIVAL_TO_CANON

_CMU_STRESS = re.compile(r"[0-2]$")
_SOURCES = ("espeak", "flite", "festival", "cmu")


def map_espeak(name: str, *, strict: bool = False) -> tuple[str, ...]:
    """Canonical phones of an espeak-ng phoneme mnemonic (stress marks ``' , % =`` are ignored).

    Unknown names raise KeyError when ``strict``; otherwise trailing variant marks (``#2/;.^-``...) are
    stripped until a known name remains.
    """
    key = name.strip().lstrip("',%=")
    if key in ESPEAK_TO_CANON:
        return ESPEAK_TO_CANON[key]
    if not strict:
        while len(key) > 1:
            key = key[:-1]
            if key in ESPEAK_TO_CANON:
                return ESPEAK_TO_CANON[key]
    raise KeyError(f"unmapped espeak-ng phoneme {name!r}")


def map_festival(name: str) -> tuple[str, ...]:
    """Canonical phones of a festival (radio phone set) or flite phone name."""
    try:
        return FESTIVAL_TO_CANON[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unmapped festival/flite phone {name!r}") from None


map_flite = map_festival


def map_cmu(name: str) -> tuple[str, ...]:
    """Canonical phones of a CMU dictionary / pocketsphinx phone: ``AH0`` -> ah; SIL, ``+NSN+``... -> sil."""
    key = name.strip()
    if key.upper() == "SIL" or (key.startswith("+") and key.endswith("+")) or key in ("<s>", "</s>", "<sil>"):
        return (SIL,)
    key = _CMU_STRESS.sub("", key).lower()
    if key in PHONE_TO_ID:
        return (key,)
    raise KeyError(f"unmapped CMU phone {name!r}")


def map_phone(name: str, source: str) -> tuple[str, ...]:
    """Canonical phones of ``name`` in ``source``'s phone set: espeak, flite, festival or cmu."""
    if source == "espeak":
        return map_espeak(name)
    if source in ("flite", "festival"):
        return map_festival(name)
    if source == "cmu":
        return map_cmu(name)
    raise ValueError(f"unknown phone source {source!r}; known: {', '.join(_SOURCES)}")


def canonical_to_cmu(phones: Iterable[str]) -> list[str]:
    """CMU dictionary phones (uppercase, sil dropped, repeats collapsed) for canonical phones."""
    out: list[str] = []
    for p in phones:
        if p == SIL:
            continue
        if p not in PHONE_TO_ID:
            raise ValueError(f"not a canonical phone: {p!r}")
        up = p.upper()
        if not out or out[-1] != up:
            out.append(up)
    return out
