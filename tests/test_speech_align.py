"""Forced alignment with pocketsphinx: agreement with the synthesizers' own phone times, unknown words, errors."""

from __future__ import annotations

import numpy as np
import pytest

from l2t_gs.audio.io import resample, save_wav
from l2t_gs.errors import L2TError
from l2t_gs.speech import align as al
from l2t_gs.speech import espeak, flite
from l2t_gs.speech.segments import boundary_errors, validate_segments

pytest.importorskip("pocketsphinx")
needs_espeak = pytest.mark.skipif(not espeak.available(), reason="espeak-ng library (libespeak-ng1) not installed")
needs_flite = pytest.mark.skipif(not flite.available(), reason="flite not installed")

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "These days a chicken leg is a rare dish.",
    "Four hours of steady work faced us.",
    "Please call Stella and ask her to bring these things with her from the store.",
)


def test_normalize_transcript():
    assert al.normalize_transcript("Hello, World! It\u2019s a well-known 'fact'.") == [
        "hello",
        "world",
        "it's",
        "a",
        "well",
        "known",
        "fact",
    ]
    assert al.normalize_transcript(" ... !? ") == []


@needs_flite
@pytest.mark.parametrize("voice", ["kal16", "slt"])
def test_alignment_matches_flite_times(voice):
    """pocketsphinx boundaries agree with flite's own phone times (mean error < 30 ms)."""
    errors, n_ref = [], 0
    for text in SENTENCES:
        audio, ref = flite.synthesize(text, voice)
        result = al.force_align(audio, text)
        validate_segments(result.phones, duration=audio.size / 16000)
        assert result.phones[-1].end == pytest.approx(audio.size / 16000)
        errors.append(boundary_errors(ref, result.phones))
        n_ref += sum(s.phone != "sil" for s in ref)
    err = np.concatenate(errors)
    mean, median, p90 = (1000 * v for v in (err.mean(), np.median(err), np.percentile(err, 90)))
    matched = f"{err.size // 2}/{n_ref} phones matched"
    print(f"\n{voice}: {matched}; boundary error mean {mean:.1f} ms, median {median:.1f}, p90 {p90:.1f}")
    assert err.size // 2 >= 0.9 * n_ref
    assert err.mean() < 0.030
    assert np.median(err) < 0.020


@needs_espeak
def test_alignment_matches_espeak_events():
    """espeak-ng's phoneme event times are real: the aligner finds the same boundaries (looser: robotic voice)."""
    text = "The quick brown fox jumps over the lazy dog. She sells sea shells."
    audio, ref = espeak.synthesize(text, "en-us")
    err = boundary_errors(ref, al.align(audio, text))
    print(f"\nespeak en-us: {err.size // 2} phones matched, boundary error mean {err.mean() * 1000:.1f} ms")
    assert err.size // 2 >= 35 and err.mean() < 0.040


@needs_espeak
def test_wide_beam_retry():
    """This espeak clip finds no path with the reference beams; the wider retry aligns it."""
    text = "The birch canoe slid on the smooth planks."
    audio, ref = espeak.synthesize(text, "en-us")
    result = al.force_align(audio, text)
    assert [w.word for w in result.words] == al.normalize_transcript(text)
    assert boundary_errors(ref, result.phones).mean() < 0.040


@needs_flite
def test_words_and_resampled_input(tmp_path):
    text = "Four hours of steady work faced us."
    raw = flite.synthesize_raw(text, "kal")  # 8 kHz voice
    stereo = np.stack([raw.audio, raw.audio], axis=1)
    result = al.force_align(stereo, text, sr=raw.sr)
    assert [w.word for w in result.words] == ["four", "hours", "of", "steady", "work", "faced", "us"]
    assert all(a.end <= b.start + 1e-9 for a, b in zip(result.words[:-1], result.words[1:], strict=True))
    assert result.words[0].phones == ("F", "AO", "R")
    save_wav(tmp_path / "clip.wav", resample(raw.audio, raw.sr, 44100), 44100)
    from_file = al.align_file(tmp_path / "clip.wav", text)
    assert [w.word for w in from_file.words] == [w.word for w in result.words]


@needs_flite
@needs_espeak
def test_unknown_words():
    text = "The blorptastic zibber waggled 42 times."
    audio, ref = flite.synthesize(text, "kal16")
    result = al.force_align(audio, text)  # blorptastic, zibber, 42 from espeak-ng letter-to-sound
    words = {w.word: w for w in result.words}
    assert words["blorptastic"].phones[:4] == ("B", "L", "AO", "R")
    assert words["42"].phones[:3] == ("F", "AO", "R")  # "forty two"
    assert boundary_errors(ref, result.phones).mean() < 0.040
    with pytest.raises(L2TError, match="'blorptastic'"):
        al.force_align(audio, text, lts=False)
    prons = {
        "blorptastic": "B L AO R P T AE S T IH K",
        "zibber": ["Z", "IH", "B", "ER"],
        "42": "F AO R T IY T UW",
        "waggled": "W AE G AH L D",
    }
    custom = al.force_align(audio, text, lts=False, pronunciations=prons)
    assert {w.word: w.phones for w in custom.words}["zibber"] == ("Z", "IH", "B", "ER")
    # a pronunciation overrides a dictionary word too
    over = al.force_align(audio, text, pronunciations={"times": "T AY M Z"})
    assert over.words[-1].word == "times"
    with pytest.raises(L2TError, match="CMU phones"):
        al.force_align(audio, text, pronunciations={"zibber": "zz ib"})


@needs_flite
def test_alignment_errors():
    audio, _ = flite.synthesize("The quick brown fox.", "kal16")
    with pytest.raises(L2TError, match="no words"):
        al.align(audio, " ?! ")
    with pytest.raises(L2TError, match="silent"):
        al.align(np.zeros(16000, np.float32), "hello world")
    with pytest.raises(L2TError, match="too short"):
        al.align(audio[:800], "hello")
    many = " ".join(["seventeen"] * 20)
    with pytest.raises(L2TError, match="could not align"):
        al.align(audio, many)
    # the aligner recovers after a failure
    assert al.align(audio, "The quick brown fox.")[1].phone == "dh"
