"""espeak-ng through its C API (ctypes on libespeak-ng.so.1): speech with real phoneme timings.

Synthesis runs in synchronous mode with phoneme events enabled; each ``espeakEVENT_PHONEME`` carries the
phoneme's mnemonic and the sample index (within the call's output, 22050 Hz) where it starts, so a
phone lasts until the next phoneme event (the last one until the end of the audio). The struct layouts
follow ``speak_lib.h`` of espeak-ng 1.51 (package libespeak-ng-dev).

The library keeps global state, so every call holds a process-wide lock. Environment overrides:
``L2T_ESPEAK_LIB`` (path of the shared library) and ``L2T_ESPEAK_DATA`` (directory holding espeak-ng-data).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

import numpy as np

from l2t_gs.audio.io import resample
from l2t_gs.errors import L2TError
from l2t_gs.speech.phones import SIL, canonical_to_cmu, map_espeak
from l2t_gs.speech.segments import EngineOutput, PhoneSegment, canonicalize

__all__ = [
    "DEFAULT_VOICE",
    "available",
    "list_voices",
    "list_variants",
    "synthesize_raw",
    "synthesize",
    "text_to_phonemes",
    "word_to_cmu",
]

DEFAULT_VOICE = "en-us"
NORMAL_WPM = 175  # espeakRATE_NORMAL
MIN_WPM, MAX_WPM = 80, 450  # espeakRATE_MINIMUM / espeakRATE_MAXIMUM

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EE_OK = 0
_STRESS_MARKS = "',%="


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``."""

    _fields_ = [
        ("type", ctypes.c_int),  # espeak_EVENT_TYPE
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample index within this synthesis call
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    """``espeak_VOICE``; ``languages`` is a list of (priority byte, name, NUL), ended by an extra NUL."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """The loaded, initialised library and the buffers its callback fills."""

    def __init__(self) -> None:
        self.lib = _load_library()
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.POINTER(_Voice)]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p

        data = os.environ.get("L2T_ESPEAK_DATA")
        sr = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data.encode() if data else None, _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT
        )
        if sr <= 0:
            raise L2TError("espeak-ng failed to initialise (is the espeak-ng-data package installed?)")
        self.sr = int(sr)
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[str, int]] = []
        self._callback = _SynthCallback(self._on_synth)  # keep a reference: the library holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.languages, self.variants = self._list_voices()

    def _on_synth(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                self.events.append((ev.id.string.decode("utf-8", "replace"), int(ev.sample)))
            i += 1
        return 0

    def _list_voices(self) -> tuple[list[str], list[str]]:
        languages: set[str] = set()
        arr = self.lib.espeak_ListVoices(None)
        for i in range(100000):
            if not arr[i]:
                break
            ptr = arr[i].contents.languages
            while ptr:
                name = ctypes.string_at(ptr + 1)  # skip the priority byte
                if not name:
                    break
                languages.add(name.decode("utf-8", "replace").lower())
                ptr += len(name) + 2
        spec = _Voice()
        spec.languages = ctypes.cast(ctypes.c_char_p(b"variant"), ctypes.c_void_p)
        arr = self.lib.espeak_ListVoices(ctypes.byref(spec))
        variants: list[str] = []
        for i in range(100000):
            if not arr[i]:
                break
            ident = arr[i].contents.identifier
            if ident:
                variants.append(ident.decode("utf-8", "replace").rsplit("/", 1)[-1])
        self.all_languages = sorted(languages)  # every installed language (non-English: any_language=True)
        english = sorted(lang for lang in languages if lang == "en" or lang.startswith("en-"))
        return english, sorted(set(variants), key=str.lower)

    def set_voice(self, voice: str, any_language: bool = False) -> None:
        language, _, variant = voice.partition("+")
        known = self.all_languages if any_language else self.languages
        if language.lower() not in known and language.lower() != "en":
            raise L2TError(
                f"unknown or non-English espeak-ng voice {language!r}; English voices: {', '.join(self.languages)}"
            )
        if variant and variant not in self.variants:
            raise L2TError(
                f"unknown espeak-ng voice variant {variant!r}; see `l2t-gs data voices --engine espeak` "
                f"(e.g. {', '.join(self.variants[:8])})"
            )
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise L2TError(f"espeak-ng could not select voice {voice!r}")


def _load_library() -> ctypes.CDLL:
    candidates = [os.environ.get("L2T_ESPEAK_LIB"), "libespeak-ng.so.1", ctypes.util.find_library("espeak-ng")]
    for name in filter(None, candidates):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise L2TError(
        "espeak-ng library not found (install the Debian package libespeak-ng1 / espeak-ng, or set L2T_ESPEAK_LIB)"
    )


_LOCK = threading.RLock()
_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    with _LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE


def available() -> bool:
    """Whether the espeak-ng library loads and initialises."""
    try:
        _engine()
    except L2TError:
        return False
    return True


def list_voices() -> list[str]:
    """English voice (language) names, e.g. ``en-us``, ``en-gb``, ``en-gb-scotland``."""
    return list(_engine().languages)


def list_variants() -> list[str]:
    """Voice variant names, usable as ``VOICE+VARIANT`` (e.g. ``en-us+f3``, ``en+m2``, ``en+klatt``)."""
    return list(_engine().variants)


def _check_text(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise L2TError("nothing to synthesize: the text is empty")
    return text


def synthesize_raw(
    text: str, voice: str = DEFAULT_VOICE, *, rate: float = 1.0, pitch: int | None = None, any_language: bool = False
) -> EngineOutput:
    """Speak ``text``: 22050 Hz float32 audio and espeak-ng phonemes with (start, end) in seconds.
    ``any_language``: allow non-English voices (their phonemes are not in ``phones.ESPEAK_TO_CANON``).

    ``rate`` scales the normal speed (175 words/min; 80-450 allowed), ``pitch`` is espeak's 0-100 scale
    (None: 50, the voice's own pitch).
    """
    text = _check_text(text)
    wpm = int(round(NORMAL_WPM * rate)) if np.isfinite(rate) else 0
    if not MIN_WPM <= wpm <= MAX_WPM:
        lo, hi = MIN_WPM / NORMAL_WPM, MAX_WPM / NORMAL_WPM
        raise L2TError(f"espeak-ng rate must be between {lo:.2f} and {hi:.2f} (x normal speed), got {rate}")
    if pitch is not None and not 0 <= pitch <= 100:
        raise L2TError(f"espeak-ng pitch must be between 0 and 100, got {pitch}")
    eng = _engine()
    data = text.encode("utf-8") + b"\0"
    with _LOCK:
        eng.set_voice(voice, any_language)
        eng.lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        eng.lib.espeak_SetParameter(_PARAM_PITCH, 50 if pitch is None else int(pitch), 0)
        eng.chunks, eng.events = [], []
        buf = ctypes.create_string_buffer(data, len(data))
        err = eng.lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        chunks, events = eng.chunks, eng.events
        eng.chunks, eng.events = [], []
    if err != _EE_OK:
        raise L2TError(f"espeak-ng synthesis failed (error {err})")
    audio = (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)).astype(np.float32) / 32768.0
    if audio.size == 0 or all(name.startswith("_") for name, _ in events):  # pauses only
        raise L2TError(f"espeak-ng produced no speech for {text[:40]!r}")
    n = audio.size
    starts = np.minimum(np.maximum.accumulate(np.array([s for _, s in events], dtype=np.int64)), n)
    ends = np.append(starts[1:], n)
    phones = [
        (name, float(a) / eng.sr, float(b) / eng.sr) for (name, _), a, b in zip(events, starts, ends, strict=True)
    ]
    return EngineOutput(audio=audio, sr=eng.sr, phones=phones, engine="espeak")


def synthesize(
    text: str, voice: str = DEFAULT_VOICE, *, rate: float = 1.0, pitch: int | None = None, sr: int = 16000
) -> tuple[np.ndarray, list[PhoneSegment]]:
    """Speak ``text``: (float32 audio at ``sr``, canonical phone segments covering it)."""
    raw = synthesize_raw(text, voice, rate=rate, pitch=pitch)
    audio = resample(raw.audio, raw.sr, sr)
    return audio, canonicalize(raw.phones, map_espeak, audio.shape[0] / sr)


def text_to_phonemes(text: str, voice: str = DEFAULT_VOICE, *, any_language: bool = False) -> list[list[str]]:
    """espeak-ng's pronunciation of ``text`` (letter-to-sound, numbers expanded): phoneme mnemonics per word,
    stress marks removed. ``any_language``: allow non-English voices."""
    text = _check_text(text)
    eng = _engine()
    data = text.encode("utf-8") + b"\0"
    words: list[list[str]] = []
    with _LOCK:
        eng.set_voice(voice, any_language)
        buf = ctypes.create_string_buffer(data, len(data))
        ptr = ctypes.c_void_p(ctypes.addressof(buf))
        mode = ord("|") << 8  # bits 8-23: separator between phoneme names
        for _ in range(len(data) + 1):  # each call consumes at least one clause
            if not ptr.value:
                break
            out = eng.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, mode)
            for word in (out or b"").decode("utf-8", "replace").split():
                names = [p.strip(_STRESS_MARKS) for p in word.split("|")]
                names = [p for p in names if p]
                if names:
                    words.append(names)
    return words


def word_to_cmu(word: str, voice: str = DEFAULT_VOICE) -> list[str]:
    """CMU dictionary phones (uppercase, no stress) for ``word`` from espeak-ng's letter-to-sound rules."""
    canon = [p for names in text_to_phonemes(word, voice) for name in names for p in map_espeak(name)]
    return canonical_to_cmu(p for p in canon if p != SIL)
