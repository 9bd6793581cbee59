"""The corpus' sentence generator covers every English phoneme in many contexts."""

from __future__ import annotations

from collections import Counter

import pytest

from l2t_gs.speech import espeak
from l2t_gs.speech.phones import PHONES, SIL, map_espeak
from l2t_gs.training.data.sentences import generate_sentences


def test_deterministic_and_distinct():
    a = generate_sentences(200, seed=3)
    assert a == generate_sentences(200, seed=3) and len(set(a)) == 200
    assert a != generate_sentences(200, seed=4)


@pytest.mark.skipif(not espeak.available(), reason="espeak-ng is needed to phonemize (apt)")
def test_every_phone_occurs_often():
    text = " ".join(generate_sentences(400, seed=0))
    phones = [p for word in espeak.text_to_phonemes(text, "en-us") for name in word for p in map_espeak(name)]
    counts = Counter(phones)
    prev_next: dict[str, set[str]] = {}
    for a, b in zip(phones, phones[1:], strict=False):
        prev_next.setdefault(b, set()).add(a)
    missing = [p for p in PHONES if p != SIL and counts[p] < 10]
    assert not missing, {p: counts[p] for p in missing}
    # many contexts: every phone follows at least 4 different phones
    narrow = [p for p in PHONES if p != SIL and len(prev_next.get(p, ())) < 4]
    assert not narrow, {p: sorted(prev_next.get(p, ())) for p in narrow}
