"""Audio files in and out: decode any common format to float32 at a chosen rate, write WAV atomically.

WAV/FLAC/OGG/AIFF go through soundfile (libsndfile); MP3, M4A/AAC, Opus, video containers and anything
else through PyAV (FFmpeg). Each backend is the other's fallback, so an unusual extension still works.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path

__all__ = ["load_audio", "read_audio", "resample", "save_wav", "audio_duration", "to_mono"]

#: Extensions decoded by soundfile first; everything else goes to PyAV first.
SOUNDFILE_EXTS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".snd", ".w64", ".caf"})


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise L2TError(f"audio file not found: {p}")
    if not p.is_file():
        raise L2TError(f"not an audio file (a directory or special file): {p}")
    if p.stat().st_size == 0:
        raise L2TError(f"audio file is empty (0 bytes): {p}")
    return p


def _read_soundfile(p: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    return data, int(sr)


def _read_pyav(p: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(p)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        sr = int(stream.codec_context.sample_rate or stream.rate or 0)
        if sr <= 0:
            raise ValueError("unknown sample rate")
        channels = stream.codec_context.channels or 1
        # planar float output at the native rate and layout; soxr does the resampling afterwards
        layout = {1: "mono", 2: "stereo"}.get(channels, stream.layout.name)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sr)
        chunks: list[np.ndarray] = []
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(channels, -1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(channels, -1))
        # the container's duration excludes encoder padding at the end (priming is trimmed by FFmpeg)
        expected = None
        if stream.duration is not None and stream.time_base is not None:
            expected = int(round(float(stream.duration * stream.time_base) * sr))
    if not chunks:
        return np.zeros((0, channels), np.float32), sr
    data = np.concatenate(chunks, axis=1).T
    if expected is not None and 0 < expected < data.shape[0] <= expected + sr:
        data = data[:expected]
    return np.ascontiguousarray(data, dtype=np.float32), sr


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode ``path`` at its native rate: (float32 [n, channels] in [-1, 1], sample rate).

    Raises L2TError for a missing file, a file that is not decodable audio, or one without samples.
    """
    import av

    p = _check_file(path)
    readers = [_read_soundfile, _read_pyav]
    if p.suffix.lower() not in SOUNDFILE_EXTS:
        readers.reverse()
    first_error: Exception | None = None
    for reader in readers:
        try:
            data, sr = reader(p)
            break
        # AttributeError/TypeError/IndexError: PyAV on damaged streams (e.g. a stream without a codec context)
        except (
            sf.LibsndfileError, RuntimeError, ValueError, av.FFmpegError, OSError, EOFError,
            AttributeError, TypeError, IndexError,
        ) as exc:  # fmt: skip
            first_error = first_error or exc
    else:
        detail = str(first_error).strip().splitlines()[0] if first_error and str(first_error).strip() else "unknown"
        raise L2TError(f"cannot decode audio from {p}: not a supported audio file or corrupt ({detail})")
    if data.shape[0] == 0:
        raise L2TError(f"audio file has no samples (zero length): {p}")
    if not np.isfinite(data).all():
        raise L2TError(f"audio file contains NaN or infinite samples: {p}")
    return data, sr


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of [n, channels] audio (a 1-D array is returned as is)."""
    audio = np.asarray(audio, dtype=np.float32)
    return audio if audio.ndim == 1 else audio.mean(axis=1, dtype=np.float32)


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample [n] or [n, channels] float audio with soxr (high quality); a no-op when rates match."""
    audio = np.asarray(audio, dtype=np.float32)
    if int(sr_in) == int(sr_out) or audio.shape[0] == 0:
        return audio
    return np.ascontiguousarray(soxr.resample(audio, int(sr_in), int(sr_out), quality="HQ"), dtype=np.float32)


def load_audio(path: str | os.PathLike, sr: int = 16000, *, mono: bool = True) -> np.ndarray:
    """Decode an audio file to float32 at ``sr`` Hz: [n] when ``mono`` (channels averaged), else [n, channels]."""
    if sr <= 0:
        raise L2TError(f"sample rate must be positive, got {sr}")
    data, file_sr = read_audio(path)
    if mono:
        data = to_mono(data)
    out = resample(data, file_sr, sr)
    if out.shape[0] == 0:
        raise L2TError(f"audio file is too short to resample to {sr} Hz: {path}")
    return out


def save_wav(path: str | os.PathLike, audio: np.ndarray, sr: int, *, subtype: str = "PCM_16") -> None:
    """Write [n] or [n, channels] float audio (clipped to [-1, 1]) as a WAV file, atomically."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.shape[0] == 0:
        raise L2TError(f"cannot write {path}: audio must be a non-empty [n] or [n, channels] array")
    if not np.isfinite(audio).all():
        raise L2TError(f"cannot write {path}: audio contains NaN or infinite samples")
    if sr <= 0:
        raise L2TError(f"cannot write {path}: sample rate must be positive, got {sr}")
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), int(sr), subtype=subtype, format="WAV")


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of an audio file in seconds (from the header or container when they tell, else by decoding)."""
    import av

    p = _check_file(path)
    if p.suffix.lower() in SOUNDFILE_EXTS:
        try:
            info = sf.info(str(p))
            if info.frames > 0 and info.samplerate > 0:
                return info.frames / info.samplerate
        except (sf.LibsndfileError, RuntimeError):
            pass
    else:
        try:
            with av.open(str(p)) as container:
                stream = container.streams.audio[0] if container.streams.audio else None
                if stream is not None and stream.duration and stream.time_base:
                    return float(stream.duration * stream.time_base)
        except (av.FFmpegError, OSError, ValueError):
            pass
    data, sr = read_audio(p)
    return data.shape[0] / sr
