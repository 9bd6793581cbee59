"""flite (the Debian ``flite`` binary): speech plus the synthesizer's own phone end times (``-psdur``).

Text goes in with ``-t``, which synthesizes it as one utterance, so ``-psdur`` prints one line of
``phone:end`` pairs whose times run from the start of the wave. Diphone voices (kal, kal16) end the
wave in the middle of the final pause; segments are clipped to the audio.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

import numpy as np
import soundfile as sf

from l2t_gs.audio.io import resample
from l2t_gs.errors import L2TError
from l2t_gs.io.tempfiles import temp_dir
from l2t_gs.speech.phones import map_flite
from l2t_gs.speech.segments import EngineOutput, PhoneSegment, canonicalize

__all__ = ["DEFAULT_VOICE", "available", "list_voices", "parse_psdur", "synthesize_raw", "synthesize"]

DEFAULT_VOICE = "kal16"
MAX_TEXT = 100_000  # characters; the text travels as one command-line argument
TIMEOUT_S = 300


def _binary() -> str:
    exe = shutil.which("flite")
    if exe is None:
        raise L2TError("flite is not installed (Debian package: flite)")
    return exe


def available() -> bool:
    """Whether the flite binary is on PATH."""
    return shutil.which("flite") is not None


@functools.lru_cache(maxsize=1)
def _voices() -> tuple[str, ...]:
    out = subprocess.run([_binary(), "-lv"], capture_output=True, text=True, timeout=60).stdout
    _, _, names = out.partition(":")
    # *_time voices (awb_time) only speak clock times
    return tuple(v for v in names.split() if not v.endswith("_time"))


def list_voices() -> list[str]:
    """Voices compiled into flite that speak general text (Debian: kal, kal16, awb, rms, slt)."""
    return list(_voices())


def parse_psdur(text: str) -> list[tuple[str, float, float]]:
    """Parse ``-psdur`` output (``pau:0.220 hh:0.295 ...``, end times) into (phone, start, end) tuples.

    Several lines are several utterances; each later one is placed after the previous one ends.
    """
    phones: list[tuple[str, float, float]] = []
    offset = 0.0
    for line in text.splitlines():
        prev = 0.0
        for token in line.split():
            name, sep, end_text = token.rpartition(":")
            try:
                end = float(end_text)
            except ValueError:
                end = float("nan")
            if not sep or not name or not np.isfinite(end) or end < prev - 1e-6:
                raise ValueError(f"unexpected flite -psdur token {token!r}")
            phones.append((name, offset + prev, offset + end))
            prev = end
        offset += prev
    return phones


def synthesize_raw(
    text: str, voice: str = DEFAULT_VOICE, *, rate: float = 1.0, pitch: float | None = None
) -> EngineOutput:
    """Speak ``text`` with flite: audio at the voice's rate (kal: 8 kHz, others 16 kHz) and flite's phones.

    ``rate`` scales the speed (``duration_stretch = 1 / rate``), ``pitch`` sets the mean F0 in Hz
    (``int_f0_target_mean``; None keeps the voice's).
    """
    text = " ".join(text.split())
    if not text:
        raise L2TError("nothing to synthesize: the text is empty")
    if len(text) > MAX_TEXT:
        raise L2TError(f"text too long for flite ({len(text)} characters, at most {MAX_TEXT})")
    if not 0.25 <= rate <= 4.0:
        raise L2TError(f"flite rate must be between 0.25 and 4 (x normal speed), got {rate}")
    if pitch is not None and not 40 <= pitch <= 500:
        raise L2TError(f"flite pitch is a mean F0 in Hz between 40 and 500, got {pitch}")
    exe = _binary()
    if voice not in _voices():
        raise L2TError(f"unknown flite voice {voice!r}; available: {', '.join(_voices())}")
    cmd = [exe, "-voice", voice, "-psdur"]
    if rate != 1.0:
        cmd += ["--setf", f"duration_stretch={1.0 / rate:.6f}"]
    if pitch is not None:
        cmd += ["--setf", f"int_f0_target_mean={float(pitch):.3f}"]
    with temp_dir(label="flite") as tmp:
        wav = tmp / "out.wav"
        try:
            proc = subprocess.run([*cmd, "-t", text, "-o", str(wav)], capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise L2TError(f"flite timed out after {TIMEOUT_S} s") from None
        if proc.returncode != 0 or not wav.is_file():
            detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise L2TError(f"flite failed (exit {proc.returncode}): {detail}")
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    try:
        phones = parse_psdur(proc.stdout)
    except ValueError as exc:
        raise L2TError(f"flite: {exc}") from None
    audio = audio.mean(axis=1, dtype=np.float32)
    if audio.size == 0 or not phones:
        raise L2TError(f"flite produced no speech for {text[:40]!r}")
    return EngineOutput(audio=audio, sr=int(sr), phones=phones, engine="flite")


def synthesize(
    text: str, voice: str = DEFAULT_VOICE, *, rate: float = 1.0, pitch: float | None = None, sr: int = 16000
) -> tuple[np.ndarray, list[PhoneSegment]]:
    """Speak ``text``: (float32 audio at ``sr``, canonical phone segments covering it)."""
    raw = synthesize_raw(text, voice, rate=rate, pitch=pitch)
    audio = resample(raw.audio, raw.sr, sr)
    return audio, canonicalize(raw.phones, map_flite, audio.shape[0] / sr)
