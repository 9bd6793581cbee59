"""Forced alignment of speech to a transcript at phone level with pocketsphinx 5 (bundled US English model).

Two passes: ``set_align_text`` finds the word boundaries, ``set_alignment`` then aligns the HMM states
inside them; phone times come from ``get_alignment`` in 10 ms frames. Beams are wide
(beam 1e-80, pbeam 1e-80, wbeam 1e-60: the defaults fail on synthetic speech; 1e-120/1e-100 on retry)
and best-path rescoring is off (it can leave phones shorter than their HMM, and the second pass then
fails). Every call builds a fresh decoder (about 0.15 s): a reused one carries state from earlier
utterances and gives different boundaries for the same input.

Words missing from the CMU dictionary get a pronunciation from espeak-ng's letter-to-sound rules
mapped to CMU phones (``lts=True``), or from ``pronunciations``; otherwise an L2TError names them.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from l2t_gs.audio.io import load_audio, resample, to_mono
from l2t_gs.errors import L2TError
from l2t_gs.speech import espeak
from l2t_gs.speech.phones import SIL, map_cmu
from l2t_gs.speech.segments import PhoneSegment, canonicalize

__all__ = [
    "ALIGN_CONFIG",
    "WordSegment",
    "ForcedAlignment",
    "normalize_transcript",
    "force_align",
    "align",
    "align_file",
]

SAMPLE_RATE = 16000
FRAME_RATE = 100  # pocketsphinx frames per second
ALIGN_CONFIG: dict = {"beam": 1e-80, "pbeam": 1e-80, "wbeam": 1e-60, "bestpath": False}
WIDE_CONFIG: dict = {"beam": 1e-120, "pbeam": 1e-120, "wbeam": 1e-100, "bestpath": False}  # retry
MIN_SECONDS = 0.1

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_ALT = re.compile(r"\(\d+\)$")  # "hours(2)": the dictionary's second pronunciation
_FILLERS = {"<s>", "</s>", "<sil>", "[noise]", "[speech]"}


@dataclass(frozen=True)
class WordSegment:
    """A transcript word from ``start`` to ``end`` (seconds) and the CMU phones it was aligned with."""

    word: str
    start: float
    end: float
    phones: tuple[str, ...] = ()


@dataclass
class ForcedAlignment:
    """Canonical phone segments covering the audio, and the aligned words."""

    phones: list[PhoneSegment]
    words: list[WordSegment] = field(default_factory=list)
    duration: float = 0.0


def normalize_transcript(text: str) -> list[str]:
    """Lower-case words of ``text``: letters/digits with inner apostrophes; punctuation and hyphens split."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    return _WORD.findall(text)


def _decoder(config: Mapping):
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise L2TError(
            'forced alignment needs pocketsphinx: pip install "l2t-gs[align]" (with your constraints file)'
        ) from None
    return Decoder(lm=None, loglevel="FATAL", **config)


@functools.lru_cache(maxsize=4096)
def _lts(word: str) -> tuple[str, ...]:

    return tuple(espeak.word_to_cmu(word))


def _pronunciations(
    words: Sequence[str], lts: bool, extra: Mapping[str, tuple[str, ...]], lookup
) -> dict[str, tuple[str, ...] | None]:
    """Per distinct word: phones to add to the dictionary, or None when the dictionary has it."""
    out: dict[str, tuple[str, ...] | None] = {}
    for word in dict.fromkeys(words):
        if word in extra:
            out[word] = extra[word]
        elif lookup(word) is not None:
            out[word] = None
        elif not lts:
            raise L2TError(
                f"word {word!r} is not in the pronunciation dictionary (enable letter-to-sound or give a pronunciation)"
            )
        else:
            try:
                phones = _lts(word)
            except L2TError as exc:
                raise L2TError(
                    f"word {word!r} is not in the pronunciation dictionary and espeak-ng failed: {exc}"
                ) from None
            if not phones:
                raise L2TError(f"word {word!r} is not in the pronunciation dictionary and has no spoken form")
            out[word] = phones
    return out


def _run(decoder, pcm: bytes, text: str) -> tuple[list, list]:
    """The two alignment passes; RuntimeError when either finds no path."""
    decoder.set_align_text(text)
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    if decoder.hyp() is None:
        raise RuntimeError("no word alignment")
    decoder.set_alignment()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    al = decoder.get_alignment()
    if al is None:
        raise RuntimeError("no phone alignment")
    words = [(w.name, w.start, w.duration, tuple(p.name for p in w)) for w in al]
    phones = [(p.name, p.start, p.duration) for p in al.phones()]
    return words, phones


def _check_pronunciations(pronunciations: Mapping[str, Sequence[str] | str] | None) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for word, phones in (pronunciations or {}).items():
        seq = phones.split() if isinstance(phones, str) else list(phones)
        try:
            canon = [p for name in seq for p in map_cmu(name)]
        except KeyError:
            canon = []
        if not canon or SIL in canon:
            raise L2TError(f"pronunciation of {word!r} must be CMU phones (e.g. 'HH AH L OW'), got {phones!r}")
        out[word.lower()] = tuple(p.upper() for p in canon)
    return out


def force_align(
    audio: np.ndarray,
    transcript: str,
    *,
    sr: int = SAMPLE_RATE,
    lts: bool = True,
    pronunciations: Mapping[str, Sequence[str] | str] | None = None,
) -> ForcedAlignment:
    """Align ``audio`` ([n] or [n, channels] float at ``sr``) to ``transcript``: phones and words with times.

    Each call uses a fresh decoder (a reused one carries state between utterances and its results drift).
    If the reference beams find no path, wider ones are tried. Raises L2TError for an empty transcript,
    too little or silent audio, unknown words (without LTS) or audio that cannot be aligned to the words.
    """
    words = normalize_transcript(transcript)
    if not words:
        raise L2TError("the transcript has no words to align")
    extra = _check_pronunciations(pronunciations)
    audio = resample(to_mono(np.asarray(audio, dtype=np.float32)), sr, SAMPLE_RATE)
    duration = audio.shape[0] / SAMPLE_RATE
    if duration < MIN_SECONDS:
        raise L2TError(f"audio too short to align ({duration:.3f} s)")
    if not np.isfinite(audio).all():
        raise L2TError("audio contains NaN or infinite samples")
    if float(np.abs(audio).max()) < 1e-4:
        raise L2TError("the audio is silent: nothing to align")
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    # dictionary words align as themselves, added ones under an alias (which can override a dictionary word)
    names = {w: w for w in words}
    result = None
    for config in (ALIGN_CONFIG, WIDE_CONFIG):
        decoder = _decoder(config)
        prons = _pronunciations(words, lts, extra, decoder.lookup_word)
        for i, (word, phones) in enumerate(prons.items()):
            if phones is not None:
                names[word] = f"l2t{i}_{word}"
                try:
                    decoder.add_word(names[word], " ".join(phones), True)
                except RuntimeError as exc:
                    raise L2TError(f"cannot use pronunciation {' '.join(phones)!r} for {word!r}: {exc}") from None
        try:
            result = _run(decoder, pcm, " ".join(names[w] for w in words))
            break
        except RuntimeError:
            continue
    if result is None:
        raise L2TError(
            f"could not align the transcript ({len(words)} words) to the audio ({duration:.2f} s): "
            "does the transcript match the speech?"
        )
    raw_words, raw_phones = result
    back = {alias: word for word, alias in names.items()}
    word_segs = [
        WordSegment(back.get(name, _ALT.sub("", name)), start / FRAME_RATE, (start + n) / FRAME_RATE, phones)
        for name, start, n, phones in raw_words
        if name.lower() not in _FILLERS
    ]
    raw = [(name, start / FRAME_RATE, (start + n) / FRAME_RATE) for name, start, n in raw_phones]
    return ForcedAlignment(phones=canonicalize(raw, map_cmu, duration), words=word_segs, duration=duration)


def align(
    audio: np.ndarray,
    transcript: str,
    *,
    sr: int = SAMPLE_RATE,
    lts: bool = True,
    pronunciations: Mapping[str, Sequence[str] | str] | None = None,
) -> list[PhoneSegment]:
    """Canonical phone segments of ``audio`` aligned to ``transcript`` (see :func:`force_align`)."""
    return force_align(audio, transcript, sr=sr, lts=lts, pronunciations=pronunciations).phones


def align_file(path: str | os.PathLike, transcript: str, **kwargs) -> ForcedAlignment:
    """Load any audio file (see ``audio.io.load_audio``) and align it to ``transcript``."""
    return force_align(load_audio(path, SAMPLE_RATE), transcript, sr=SAMPLE_RATE, **kwargs)
