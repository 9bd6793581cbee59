"""festival (Debian ``festival`` + ``festvox-kallpc16k`` + ``festlex-cmu``): speech and segment end times.

A generated Scheme script, run with ``festival --batch``, synthesizes the text as one utterance, saves
the wave and prints every item of the utterance's ``Segment`` relation with its ``end`` feature.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess

import numpy as np
import soundfile as sf

from l2t_gs.audio.io import resample
from l2t_gs.errors import L2TError
from l2t_gs.io.tempfiles import temp_dir
from l2t_gs.speech.phones import map_festival
from l2t_gs.speech.segments import EngineOutput, PhoneSegment, canonicalize

__all__ = ["DEFAULT_VOICE", "available", "list_voices", "synthesize_raw", "synthesize", "scheme_string"]

DEFAULT_VOICE = "kal_diphone"
TIMEOUT_S = 300
_MARK = "L2TSEG"
_VOICE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _binary() -> str:
    exe = shutil.which("festival")
    if exe is None:
        raise L2TError("festival is not installed (Debian packages: festival festlex-cmu festvox-kallpc16k)")
    return exe


def available() -> bool:
    """Whether the festival binary is on PATH."""
    return shutil.which("festival") is not None


def _run(script: str) -> subprocess.CompletedProcess:
    with temp_dir(label="festival") as tmp:
        scm = tmp / "script.scm"
        scm.write_text(script, encoding="utf-8")
        try:
            return subprocess.run(
                [_binary(), "--batch", str(scm)], capture_output=True, text=True, timeout=TIMEOUT_S, errors="replace"
            )
        except subprocess.TimeoutExpired:
            raise L2TError(f"festival timed out after {TIMEOUT_S} s") from None


@functools.lru_cache(maxsize=1)
def _voices() -> tuple[str, ...]:
    out = _run('(format t "%l\\n" (voice.list))\n').stdout
    return tuple(re.findall(r"[A-Za-z0-9_]+", out.strip().splitlines()[-1] if out.strip() else ""))


def list_voices() -> list[str]:
    """Installed festival voices (Debian's festvox-kallpc16k gives ``kal_diphone``)."""
    return list(_voices())


def scheme_string(text: str) -> str:
    """``text`` as a Scheme string literal (quotes and backslashes escaped, control characters dropped)."""
    clean = "".join(ch if ch.isprintable() else " " for ch in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synthesize_raw(
    text: str, voice: str = DEFAULT_VOICE, *, rate: float = 1.0, pitch: float | None = None
) -> EngineOutput:
    """Speak ``text`` with festival: audio at the voice's rate (kal_diphone: 16 kHz) and festival's segments.

    ``rate`` scales the speed (the voice's ``Duration_Stretch`` divided by ``rate``), ``pitch`` sets the
    target mean F0 in Hz of linear-regression intonation voices like kal_diphone (None keeps the voice's).
    """
    text = " ".join(text.split())
    if not text:
        raise L2TError("nothing to synthesize: the text is empty")
    if not 0.25 <= rate <= 4.0:
        raise L2TError(f"festival rate must be between 0.25 and 4 (x normal speed), got {rate}")
    if pitch is not None and not 40 <= pitch <= 500:
        raise L2TError(f"festival pitch is a mean F0 in Hz between 40 and 500, got {pitch}")
    if not _VOICE_NAME.match(voice) or voice not in _voices():
        raise L2TError(f"unknown festival voice {voice!r}; available: {', '.join(_voices()) or 'none'}")
    with temp_dir(label="festival") as tmp:
        wav = tmp / "out.wav"
        lines = [
            f"(voice.select '{voice})",
            "(let ((d (Parameter.get 'Duration_Stretch)))",
            f"  (Parameter.set 'Duration_Stretch (/ (if d d 1.0) {float(rate)!r})))",
        ]
        if pitch is not None:
            p = float(pitch)
            lines.append(
                "(if (symbol-bound? 'int_lr_params) (set! int_lr_params (list "
                f"(list 'target_f0_mean {p!r}) (list 'target_f0_std {p * 14.0 / 105.0!r}) "
                "(assoc 'model_f0_mean int_lr_params) (assoc 'model_f0_std int_lr_params))))"
            )
        lines += [
            f"(set! l2t_utt (utt.synth (Utterance Text {scheme_string(text)})))",
            f"(utt.save.wave l2t_utt {scheme_string(str(wav))} 'riff)",
            '(mapcar (lambda (s) (format t "' + _MARK + ' %s %f\\n" (item.name s) (item.feat s "end")))',
            "  (utt.relation.items l2t_utt 'Segment))",
        ]
        proc = _run("\n".join(lines) + "\n")
        if proc.returncode != 0 or not wav.is_file():
            detail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[0]
            status = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            raise L2TError(f"festival failed ({status}) for {text[:40]!r}: {detail}")
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)
    phones: list[tuple[str, float, float]] = []
    prev = 0.0
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == _MARK:
            end = max(float(parts[2]), prev)
            phones.append((parts[1], prev, end))
            prev = end
    audio = audio.mean(axis=1, dtype=np.float32)
    if audio.size == 0 or not phones:
        raise L2TError(f"festival produced no speech for {text[:40]!r}")
    return EngineOutput(audio=audio, sr=int(sr), phones=phones, engine="festival")


def synthesize(
    text: str, voice: str = DEFAULT_VOICE, *, rate: float = 1.0, pitch: float | None = None, sr: int = 16000
) -> tuple[np.ndarray, list[PhoneSegment]]:
    """Speak ``text``: (float32 audio at ``sr``, canonical phone segments covering it)."""
    raw = synthesize_raw(text, voice, rate=rate, pitch=pitch)
    audio = resample(raw.audio, raw.sr, sr)
    return audio, canonicalize(raw.phones, map_festival, audio.shape[0] / sr)
