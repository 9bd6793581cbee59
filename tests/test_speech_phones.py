"""Phone set, classes and the engine -> canonical mappings (including every phone the engines emit)."""

from __future__ import annotations

import pytest

from l2t_gs.speech import espeak, festival, flite
from l2t_gs.speech.phones import (
    CONSONANTS,
    ESPEAK_TO_CANON,
    FESTIVAL_TO_CANON,
    PHONE_CLASSES,
    PHONE_TO_ID,
    PHONES,
    SIL,
    VOWELS,
    canonical_to_cmu,
    map_cmu,
    map_espeak,
    map_festival,
    map_flite,
    map_phone,
    phone_classes,
)

# pangrams and sentences rich in rare sounds: zh, oy, uh, r-coloured vowels, syllabic l/n, th/dh
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
    "She sells sea shells by the sea shore, measuring each beige vision.",
    "The boy's toy truck could push through thick mud.",
    "Are you sure your father bought the earring here, near the fair?",
    "Bottle, button, and little kitten sing along.",
    "How now, brown cow? I'd hire four hours of power.",
    "We were away a year ago; yes, the judge chose a usual thing at 3:45 pm.",
)
TEXT = " ".join(SENTENCES)

ESPEAK_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-029")
FLITE_VOICES = ("kal16", "kal", "awb", "rms", "slt")


def test_phone_set():
    assert len(PHONES) == 40 and PHONES[-1] == SIL and len(set(PHONES)) == 40
    assert all(p == p.lower() and p.isalpha() for p in PHONES)
    assert VOWELS | CONSONANTS | {SIL} == set(PHONES) and not VOWELS & CONSONANTS
    assert PHONE_TO_ID["aa"] == 0 and PHONE_TO_ID[SIL] == 39


def test_classes():
    assert PHONE_CLASSES["bilabial"] == {"p", "b", "m"}
    assert PHONE_CLASSES["labiodental"] == {"f", "v"}
    assert PHONE_CLASSES["open_vowel"] == {"aa", "ae", "ah", "ao", "aw", "ay"}
    assert PHONE_CLASSES["rounded"] == {"uw", "uh", "ow", "oy", "w", "ao"}
    for members in PHONE_CLASSES.values():
        assert members <= set(PHONES)
    assert {"consonant", "bilabial", "stop"} <= phone_classes("p")
    assert "vowel" in phone_classes("uw") and "rounded" in phone_classes("uw")
    with pytest.raises(ValueError):
        phone_classes("AH")


def test_tables_target_canonical_phones():
    for table in (ESPEAK_TO_CANON, FESTIVAL_TO_CANON):
        for src, dst in table.items():
            assert all(p in PHONE_TO_ID for p in dst), (src, dst)


def test_espeak_mapping():
    assert map_espeak("'aI") == ("ay",)
    assert map_espeak(",@") == ("ah",)
    assert map_espeak("A@") == ("aa", "r")
    assert map_espeak("_:") == (SIL,)
    assert map_espeak(";") == ()
    assert map_espeak("dZ") == ("jh",) and map_espeak("N") == ("ng",) and map_espeak("j") == ("y",)
    assert map_espeak("aU#") == ("aw",)  # unknown variant mark stripped
    with pytest.raises(KeyError):
        map_espeak("aU#", strict=True)


def test_flite_festival_cmu_mapping():
    assert map_festival("pau") == (SIL,) and map_festival("ax") == ("ah",) and map_festival("el") == ("ah", "l")
    assert map_cmu("AH0") == ("ah",) and map_cmu("SIL") == (SIL,) and map_cmu("+NSN+") == (SIL,)
    assert map_cmu("+SPN+") == (SIL,) and map_cmu("<sil>") == (SIL,)
    assert map_phone("ZH", "cmu") == ("zh",)
    with pytest.raises(KeyError):
        map_cmu("QQ")
    with pytest.raises(ValueError):
        map_phone("a", "klingon")
    assert canonical_to_cmu(["sil", "eh", "r", "r", "iy"]) == ["EH", "R", "IY"]


def _check_coverage(names: set[str], mapper) -> set[str]:
    canon = set()
    for name in names:
        canon.update(mapper(name))  # raises KeyError for an unmapped phone
    return canon


@pytest.mark.skipif(not espeak.available(), reason="espeak-ng library (libespeak-ng1) not installed")
@pytest.mark.parametrize("voice", ESPEAK_VOICES)
def test_espeak_emitted_phones_are_mapped(voice):
    raw = espeak.synthesize_raw(TEXT, voice)
    canon = _check_coverage({p for p, _, _ in raw.phones}, lambda n: map_espeak(n, strict=True))
    missing = set(PHONES) - canon
    assert missing <= ({"th", "dh"} if voice == "en-029" else set()), missing  # Caribbean English has no th/dh


@pytest.mark.skipif(not espeak.available(), reason="espeak-ng library (libespeak-ng1) not installed")
def test_espeak_letter_to_sound_phones_are_mapped():
    words = [w for names in espeak.text_to_phonemes(TEXT) for w in names]
    _check_coverage(set(words), lambda n: map_espeak(n, strict=True))


@pytest.mark.skipif(not flite.available(), reason="flite not installed")
@pytest.mark.parametrize("voice", FLITE_VOICES)
def test_flite_emitted_phones_are_mapped(voice):
    raw = flite.synthesize_raw(TEXT, voice)
    canon = _check_coverage({p for p, _, _ in raw.phones}, map_flite)
    assert canon == set(PHONES), set(PHONES) - canon


@pytest.mark.skipif(not festival.available(), reason="festival not installed")
def test_festival_emitted_phones_are_mapped():
    raw = festival.synthesize_raw(TEXT)
    canon = _check_coverage({p for p, _, _ in raw.phones}, map_festival)
    assert canon == set(PHONES), set(PHONES) - canon
