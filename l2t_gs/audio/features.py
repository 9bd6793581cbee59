"""Log-mel spectrogram features in pure torch (no torchaudio, no librosa).

Defaults suit the built-in Audio2Mesh encoder: 16 kHz audio, 25 ms Hann window (``n_fft=400``),
10 ms hop (100 frames/s), 80 Slaney-style mel bands over 0-8 kHz, natural-log power. Frame ``j`` is
centred on sample ``j * hop_length`` (``center=True``), so features of an audio window that starts on
a hop boundary line up exactly with those of the whole signal away from the window edges (this is
what chunked inference relies on).

Wav2Lip's SyncNet expert uses other settings (``n_fft=800, hop_length=200, win_length=800,
fmin=55, fmax=7600, preemphasis=0.97`` on the magnitude, ``power=1``); :class:`LogMel` takes them as
arguments (its dB scaling is left to the caller).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor, nn

__all__ = ["LogMel", "mel_filterbank"]


def _hz_to_mel(f: Tensor) -> Tensor:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    lin = f / f_sp
    return torch.where(f >= min_log_hz, min_log_mel + torch.log(f.clamp_min(1e-10) / min_log_hz) / logstep, lin)


def _mel_to_hz(m: Tensor) -> Tensor:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    return torch.where(m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=16)
def _filterbank_cached(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> Tensor:
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    m_pts = torch.linspace(float(_hz_to_mel(torch.tensor(fmin))), float(_hz_to_mel(torch.tensor(fmax))), n_mels + 2)
    hz = _mel_to_hz(m_pts.double())
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    fb = fb * (2.0 / (upper - lower))  # Slaney area normalisation
    return fb.float()


def mel_filterbank(
    sr: int = 16000, n_fft: int = 400, n_mels: int = 80, fmin: float = 0.0, fmax: float | None = None
) -> Tensor:
    """Triangular mel filterbank [n_mels, n_fft // 2 + 1] (Slaney scale and area normalisation)."""
    fmax = sr / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sr / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    return _filterbank_cached(int(sr), int(n_fft), int(n_mels), float(fmin), float(fmax)).clone()


class LogMel(nn.Module):
    """``audio [B, n] or [n] -> log-mel [B, n_mels, n // hop + 1]``: ``log(mel(|STFT|^power) + eps)``.

    ``power=2`` (default) is the power spectrum, ``power=1`` the magnitude; ``log=False`` returns the
    linear mel values.
    """

    window: Tensor
    fb: Tensor

    def __init__(
        self,
        sr: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        win_length: int | None = None,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: float | None = None,
        eps: float = 1e-6,
        preemphasis: float = 0.0,
        power: float = 2.0,
        log: bool = True,
    ) -> None:
        super().__init__()
        self.sr, self.n_fft, self.hop_length = sr, n_fft, hop_length
        self.win_length = win_length or n_fft
        self.n_mels, self.eps, self.preemphasis = n_mels, eps, preemphasis
        self.power, self.log = power, log
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer("fb", mel_filterbank(sr, n_fft, n_mels, fmin, fmax), persistent=False)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sr / self.hop_length

    def forward(self, audio: Tensor) -> Tensor:
        squeeze = audio.ndim == 1
        x = audio.unsqueeze(0) if squeeze else audio
        x = x.to(self.window.dtype)
        if self.preemphasis:
            x = torch.cat([x[:, :1], x[:, 1:] - self.preemphasis * x[:, :-1]], dim=1)
        if x.shape[-1] <= self.n_fft // 2:  # reflect padding needs more samples than half a window
            x = nn.functional.pad(x, (0, self.n_fft // 2 + 1 - x.shape[-1]))
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        mag2 = spec.real.square() + spec.imag.square()  # [B, F, N]
        mag = mag2 if self.power == 2.0 else mag2.pow(self.power / 2.0)
        mel = torch.matmul(self.fb, mag)  # [B, n_mels, N]
        out = torch.log(mel + self.eps) if self.log else mel
        return out[0] if squeeze else out
