"""Wav2Lip-style mel spectrogram for the SyncNet3D lip-sync expert (pure torch, no librosa).

Wav2Lip (``audio.py`` + ``hparams.py``) computes ``melspectrogram(wav)`` as: pre-emphasis
``y[n] = x[n] - 0.97 x[n-1]`` (``lfilter([1, -0.97], [1])``), STFT with ``n_fft = win = 800`` and
``hop = 200`` at 16 kHz (a periodic Hann window, ``center=True`` with reflect padding, librosa 0.7's
defaults), magnitude (not power), an 80-band Slaney mel filterbank over 55-7600 Hz with Slaney area
normalisation (``librosa.filters.mel`` defaults), ``20 log10(max(1e-5, mel)) - 20`` dB, then the symmetric
normalisation ``clip(8 (S + 100) / 100 - 4, -4, 4)``. Frame ``j`` is centred on sample ``200 j``
(80 frames/s, ``n // 200 + 1`` frames for ``n`` samples), and Wav2Lip pairs motion frame ``i`` at
``fps`` with the 16 mel frames starting at ``int(80 i / fps)`` (:func:`mel_start`).

This module is self-contained on purpose: a trained expert depends on these exact features, so they
must not change when the Audio2Mesh encoder's features (:mod:`l2t_gs.audio.features`) do.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

__all__ = [
    "FMAX",
    "FMIN",
    "HOP",
    "MEL_FPS",
    "N_FFT",
    "N_MELS",
    "SAMPLE_RATE",
    "SyncMel",
    "mel_frame_count",
    "mel_start",
    "slaney_mel_filterbank",
    "sync_mel",
]

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
#: Mel frames per second (16000 / 200).
MEL_FPS = SAMPLE_RATE // HOP


def _hz_to_mel(f: Tensor) -> Tensor:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    lin_step = 200.0 / 3.0
    log_step = math.log(6.4) / 27.0
    return torch.where(f < 1000.0, f / lin_step, 1000.0 / lin_step + torch.log(f.clamp_min(1e-10) / 1000.0) / log_step)


def _mel_to_hz(m: Tensor) -> Tensor:
    lin_step = 200.0 / 3.0
    log_step = math.log(6.4) / 27.0
    edge = 1000.0 / lin_step
    return torch.where(m < edge, m * lin_step, 1000.0 * torch.exp(log_step * (m - edge)))


@functools.lru_cache(maxsize=4)
def _filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> Tensor:
    fft_hz = torch.linspace(0.0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = _hz_to_mel(torch.tensor([fmin, fmax], dtype=torch.float64))
    edges = _mel_to_hz(torch.linspace(float(lo), float(hi), n_mels + 2, dtype=torch.float64))  # [n_mels + 2]
    left, mid, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (fft_hz[None] - left) / (mid - left)
    fall = (right - fft_hz[None]) / (right - mid)
    weights = torch.clamp(torch.minimum(rise, fall), min=0.0) * (2.0 / (right - left))  # area normalisation
    return weights.float()


def slaney_mel_filterbank(
    sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX
) -> Tensor:
    """Triangular Slaney-scale mel filterbank ``[n_mels, n_fft // 2 + 1]`` (``librosa.filters.mel`` defaults)."""
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    return _filterbank(int(sr), int(n_fft), int(n_mels), float(fmin), float(fmax)).clone()


def mel_frame_count(n_samples: int) -> int:
    """Mel frames of ``n_samples`` of 16 kHz audio (``center=True``): ``n // 200 + 1``."""
    return int(n_samples) // HOP + 1


def mel_start(frame: Tensor | int, fps: float) -> Tensor:
    """First mel frame of the window paired with motion frame(s) ``frame`` at ``fps``: ``floor(80 frame / fps)``
    (Wav2Lip's ``int(80. * (frame / fps))``; a tiny epsilon keeps exact products such as ``3 * 80 / 30`` exact)."""
    f = torch.as_tensor(frame, dtype=torch.float64)
    return torch.floor(f * (MEL_FPS / float(fps)) + 1e-6).long()


class SyncMel(nn.Module):
    """``audio [n] or [B, n]`` (16 kHz, float in [-1, 1]) ``-> mel [(B,) 80, n // 200 + 1]`` in [-4, 4]."""

    window: Tensor
    fb: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True, dtype=torch.float32), persistent=False)
        self.register_buffer("fb", slaney_mel_filterbank(), persistent=False)

    def forward(self, audio: Tensor) -> Tensor:
        squeeze = audio.ndim == 1
        x = (audio.unsqueeze(0) if squeeze else audio).to(self.window.dtype)
        x = torch.cat([x[:, :1], x[:, 1:] - PREEMPHASIS * x[:, :-1]], dim=1)
        n = x.shape[-1]
        if n <= N_FFT // 2:  # reflect padding needs more than half a window; the frame count stays n // hop + 1
            x = nn.functional.pad(x, (0, N_FFT // 2 + 1 - n))
        spec = torch.stft(
            x,
            N_FFT,
            hop_length=HOP,
            win_length=N_FFT,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )[..., : mel_frame_count(n)]
        mel = torch.matmul(self.fb, spec.abs())  # [B, 80, frames]
        db = 20.0 * torch.log10(mel.clamp_min(10.0 ** (MIN_LEVEL_DB / 20.0))) - REF_LEVEL_DB
        out = torch.clamp(2 * MAX_ABS * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS, -MAX_ABS, MAX_ABS)
        return out[0] if squeeze else out


@functools.lru_cache(maxsize=2)
def _module(device: str) -> SyncMel:
    return SyncMel().to(device)


def sync_mel(audio: Tensor, sr: int = SAMPLE_RATE) -> Tensor:
    """Functional :class:`SyncMel` (no gradient needed): ``[n] or [B, n] -> [(B,) 80, frames]``.

    ``sr`` must be 16000 (resample first, e.g. with :func:`l2t_gs.audio.resample`).
    """
    if sr != SAMPLE_RATE:
        raise ValueError(f"the sync mel expects {SAMPLE_RATE} Hz audio, got {sr} Hz")
    return _module(str(audio.device))(audio)
