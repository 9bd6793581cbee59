"""Timing sources: espeak-ng (C API phoneme events), flite (-psdur), festival (Segment relation)."""

from __future__ import annotations

import numpy as np
import pytest

from l2t_gs.errors import L2TError
from l2t_gs.speech import espeak, festival, flite
from l2t_gs.speech.phones import PHONES
from l2t_gs.speech.segments import PhoneSegment, synthesize, validate_segments

needs_espeak = pytest.mark.skipif(not espeak.available(), reason="espeak-ng library (libespeak-ng1) not installed")
needs_flite = pytest.mark.skipif(not flite.available(), reason="flite not installed")
needs_festival = pytest.mark.skipif(not festival.available(), reason="festival not installed")

SENTENCE = "The quick brown fox jumps over the lazy dog."


def _speech(segs: list[PhoneSegment]) -> list[str]:
    return [s.phone for s in segs if s.phone != "sil"]


def _check_cover(audio: np.ndarray, segs: list[PhoneSegment], sr: int = 16000) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > sr // 2
    duration = audio.size / sr
    validate_segments(segs, duration=duration)
    assert segs[0].start == 0.0 and segs[-1].end == pytest.approx(duration, abs=1e-9)
    for a, b in zip(segs[:-1], segs[1:], strict=True):  # gap-free, no repeats
        assert b.start == pytest.approx(a.end, abs=1e-9) and a.phone != b.phone
    assert all(s.phone in PHONES for s in segs)


def _energy(audio: np.ndarray, sr: int, start: float, end: float) -> float:
    seg = audio[int(start * sr) : int(end * sr)]
    return float(np.sqrt(np.mean(seg**2))) if seg.size else 0.0


# ----------------------------------------------------------------------------------------------- espeak


@needs_espeak
def test_espeak_events_monotonic_and_cover_audio():
    raw = espeak.synthesize_raw(SENTENCE, "en-us")
    assert raw.sr == 22050
    starts = np.array([s for _, s, _ in raw.phones])
    ends = np.array([e for _, _, e in raw.phones])
    assert np.all(np.diff(starts) >= 0) and np.all(ends >= starts)
    assert np.allclose(starts[1:], ends[:-1])  # each phoneme lasts until the next event
    assert ends[-1] == pytest.approx(raw.duration)
    assert starts[0] < 0.05  # speech starts almost at once
    audio, segs = espeak.synthesize(SENTENCE, "en-us")
    _check_cover(audio, segs)
    assert abs(audio.size / 16000 - raw.duration) < 0.01
    assert _speech(segs)[:8] == ["dh", "ah", "k", "w", "ih", "k", "b", "r"]


@needs_espeak
def test_espeak_event_times_match_the_audio():
    """Pauses reported by the events are silent in the audio; vowels are loud."""
    raw = espeak.synthesize_raw("One, two. Three, four.", "en-us")
    pauses = [(s, e) for p, s, e in raw.phones if p.startswith("_") and e - s > 0.05]
    vowels = [(s, e) for p, s, e in raw.phones if p in ("V", "u:", "i:", "o@")]
    assert pauses and vowels
    loud = np.median([_energy(raw.audio, raw.sr, s, e) for s, e in vowels])
    voiced = np.flatnonzero(np.abs(raw.audio) > 1e-3) / raw.sr
    for s, e in pauses:
        assert _energy(raw.audio, raw.sr, s + 0.01, e - 0.01) < 0.02 * loud
        assert s - voiced[voiced < s + 0.01].max() < 0.002  # the speech stops where the pause event says


@needs_espeak
def test_espeak_voices_variants_rate_pitch():
    voices, variants = espeak.list_voices(), espeak.list_variants()
    assert {"en-us", "en-gb", "en"} <= set(voices)
    assert {"f3", "m2", "klatt", "whisper"} <= set(variants) and len(variants) > 50
    base, _ = espeak.synthesize("Hello there, how are you?", "en-us")
    fem, segs = espeak.synthesize("Hello there, how are you?", "en-us+f3", pitch=70)
    _check_cover(fem, segs)
    fast, segs = espeak.synthesize("Hello there, how are you?", "en+m2", rate=2.0)
    _check_cover(fast, segs)
    assert fast.size < 0.7 * base.size
    with pytest.raises(L2TError, match="variant"):
        espeak.synthesize("hi", "en-us+nosuchvariant")
    with pytest.raises(L2TError, match="English"):
        espeak.synthesize("hallo", "de")
    with pytest.raises(L2TError, match="rate"):
        espeak.synthesize("hi", rate=5)
    with pytest.raises(L2TError, match="pitch"):
        espeak.synthesize("hi", pitch=150)
    with pytest.raises(L2TError, match="empty"):
        espeak.synthesize("   ")
    with pytest.raises(L2TError, match="no speech"):
        espeak.synthesize("...")
    for bad in ({"rate": float("nan")}, {"pitch": float("nan")}):
        with pytest.raises(L2TError):
            synthesize("hi", "espeak", **bad)


@needs_espeak
def test_espeak_letter_to_sound():
    assert espeak.word_to_cmu("blorptastic") == ["B", "L", "AO", "R", "P", "T", "EY", "S", "T", "IH", "K"]
    assert espeak.word_to_cmu("fairy") == ["F", "EH", "R", "IY"]
    words = espeak.text_to_phonemes("hello 42")
    assert len(words) == 3 and words[0] == ["h", "@", "l", "oU"]  # 42 -> forty two


# ------------------------------------------------------------------------------------------------ flite


def test_parse_psdur():
    phones = flite.parse_psdur("pau:0.220 hh:0.295 ax:0.342 pau:0.500 \n")
    assert phones == [("pau", 0.0, 0.22), ("hh", 0.22, 0.295), ("ax", 0.295, 0.342), ("pau", 0.342, 0.5)]
    two = flite.parse_psdur("pau:0.2 m:0.3\npau:0.1 b:0.4\n")
    assert two[2] == ("pau", 0.3, 0.4) and two[3] == ("b", 0.4, 0.7)
    for bad in ("pau:x", "pau:0.3 m:0.1", "justtext"):
        with pytest.raises(ValueError):
            flite.parse_psdur(bad)


@needs_flite
@pytest.mark.parametrize("voice", ["kal16", "slt"])
def test_flite_segments(voice):
    raw = flite.synthesize_raw(SENTENCE, voice)
    assert raw.sr == 16000 and raw.phones[0][0] == "pau"
    audio, segs = flite.synthesize(SENTENCE, voice)
    _check_cover(audio, segs)
    expected = "dh ah k w ih k b r aw n f aa k s jh ah m p s ow v er dh ah l ey z iy d ao g".split()
    assert _speech(segs) == expected
    assert abs(raw.phones[-1][2] - raw.duration) < 0.15  # diphone voices stop mid final pause


@needs_flite
def test_flite_options_and_errors():
    assert {"kal16", "kal", "slt", "awb", "rms"} <= set(flite.list_voices()) and "awb_time" not in flite.list_voices()
    normal = flite.synthesize_raw("Hello world", "slt")
    slow = flite.synthesize_raw("Hello world", "slt", rate=0.5, pitch=180)
    assert slow.phones[-2][2] > 1.8 * normal.phones[-2][2]
    assert flite.synthesize_raw("Hello world", "kal").sr == 8000
    with pytest.raises(L2TError, match="unknown flite voice"):
        flite.synthesize("hi", "nosuchvoice")
    with pytest.raises(L2TError, match="rate"):
        flite.synthesize("hi", rate=0)


# --------------------------------------------------------------------------------------------- festival


def test_scheme_string():
    assert festival.scheme_string('say "hi" \\ now\n') == '"say \\"hi\\" \\\\ now "'


@needs_festival
def test_festival_segments():
    raw = festival.synthesize_raw('Hello "world".')
    assert raw.sr == 16000 and [p for p, _, _ in raw.phones][:3] == ["pau", "hh", "ax"]
    audio, segs = festival.synthesize('Hello "world".')
    _check_cover(audio, segs)
    assert _speech(segs) == ["hh", "ah", "l", "ow", "w", "er", "l", "d"]
    # the segment times are the wave's: the final pause is quiet, the vowel 'ow' is loud
    ow = next(s for s in segs if s.phone == "ow")
    assert _energy(audio, 16000, segs[-1].start + 0.02, segs[-1].end) < 0.1 * _energy(audio, 16000, ow.start, ow.end)


@needs_festival
def test_festival_options_and_errors():
    assert "kal_diphone" in festival.list_voices()
    normal = festival.synthesize_raw("Hello world")
    fast = festival.synthesize_raw("Hello world", rate=2.0, pitch=150)
    assert fast.phones[-2][2] < 0.7 * normal.phones[-2][2]
    with pytest.raises(L2TError, match="unknown festival voice"):
        festival.synthesize("hi", "nosuch_voice")
    with pytest.raises(L2TError, match="unknown festival voice"):
        festival.synthesize("hi", "kal_diphone) (system 'ls'")


@needs_espeak
@needs_flite
@needs_festival
@pytest.mark.parametrize("engine", ["espeak", "flite", "festival"])
def test_dispatch(engine):
    audio, segs = synthesize("Good morning.", engine, rate=1.1, pitch=60 if engine == "espeak" else 120)
    _check_cover(audio, segs)
    assert _speech(segs)[:2] == ["g", "uh"]
