"""SyncNet3D: a lip-sync expert for 3D face motion (Learn2Talk), after Wav2Lip's SyncNet.

It pairs a window of audio (Wav2Lip mel, :mod:`l2t_gs.training.models.sync_mel`) with a window of lip-region motion
and says whether they are in sync:

- windows: ``W = round(window_s * fps)`` motion frames (5 at 25 fps, 6 at 30 fps for 0.2 s) and
  ``M = round(W * 80 / fps)`` mel frames (16 for both); motion window ``i`` (frames ``i .. i+W-1``) pairs with
  the mel frames from ``floor(80 i / fps)`` (Wav2Lip's ``crop_audio_window``);
- motion input: lip vertex displacements from the subject's template, ``(v[lips] - template[lips]) / s``,
  where ``s`` is ``disp_scale`` (the RMS of training displacements) times, with ``lip_norm = "template"``,
  the subject's lip size (RMS distance of the template's lip vertices from their centroid), which makes
  the input independent of units and head size;
- encoders: audio ``[B, 80, M]`` -> 1-D convolutions over time -> embedding; motion ``[B, W, L, 3]`` ->
  per-frame linear projection -> 1-D convolutions over the window -> embedding; both L2-normalised;
- score: ``P(in sync) = sigmoid(w * cos(a, m) + b)`` with learned ``w > 0`` and ``b`` (a rescaled cosine;
  Wav2Lip's expert uses the cosine of ReLU features directly as the probability). Distances for
  LSE-D/LSE-C are Euclidean distances of the unit embeddings (0..2).

Checkpoints (``torch.save`` dicts read with ``weights_only=True``): ``format = "l2t-gs/syncnet3d"``,
``format_version``, ``l2t_gs_version``, ``config``, ``n_verts``, ``lip_indices``, ``disp_scale``, ``model``
(state dict) and optionally ``train`` (optimizer, position) and ``metrics``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2t_gs.errors import L2TError
from l2t_gs.io.checkpoint import CheckpointFormat, cpu_state_dict, save_payload
from l2t_gs.training.models.sync_mel import MEL_FPS, N_MELS, SyncMel, mel_start

__all__ = [
    "CHECKPOINT",
    "FORMAT",
    "FORMAT_VERSION",
    "LIP_NORMS",
    "SyncNet3D",
    "SyncNet3DConfig",
    "load_syncnet3d",
    "model_from_payload",
    "read_syncnet3d_checkpoint",
    "resolve_syncnet3d",
    "save_syncnet3d",
    "syncnet3d_payload",
]

FORMAT = "l2t-gs/syncnet3d"
FORMAT_VERSION = 1
RUN_FILES = ("best.pt", "last.pt")
#: The SyncNet3D kind of checkpoint file (reading, checks and error messages: :mod:`l2t_gs.io.checkpoint`).
CHECKPOINT = CheckpointFormat(
    FORMAT,
    FORMAT_VERSION,
    what="SyncNet3D checkpoint",
    kind="a SyncNet3D checkpoint",
    required=("config", "n_verts", "lip_indices", "model"),
    run_files=RUN_FILES,
)
LIP_NORMS = ("template", "global")


@dataclass
class SyncNet3DConfig:
    """Architecture and windowing. ``fps`` is the motion rate the expert works at (set from the data)."""

    fps: float = 30.0
    window_s: float = 0.2
    embed_dim: int = 256
    audio_channels: int = 128
    motion_hidden: int = 256
    lip_norm: str = "template"
    dropout: float = 0.0

    @property
    def window_frames(self) -> int:
        """Motion frames per window, ``W``."""
        return max(1, round(self.window_s * self.fps))

    @property
    def mel_frames(self) -> int:
        """Mel frames per window, ``M`` (the same duration as ``W`` motion frames)."""
        return max(1, round(self.window_frames * MEL_FPS / self.fps))

    def validate(self, where: str = "[model]") -> SyncNet3DConfig:
        if not (math.isfinite(self.fps) and self.fps > 0 and math.isfinite(self.window_s) and self.window_s > 0):
            raise L2TError(f"{where}: fps and window_s must be positive, got {self.fps}, {self.window_s}")
        if min(self.embed_dim, self.audio_channels, self.motion_hidden) < 1:
            raise L2TError(f"{where}: embed_dim, audio_channels and motion_hidden must be >= 1")
        if self.lip_norm not in LIP_NORMS:
            raise L2TError(f"{where}: lip_norm must be one of {', '.join(LIP_NORMS)}, got {self.lip_norm!r}")
        if not 0 <= self.dropout < 1:
            raise L2TError(f"{where}: dropout must be in [0, 1), got {self.dropout}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "[model]") -> SyncNet3DConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise L2TError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        ref = cls()
        kw: dict[str, Any] = {}
        for key, value in data.items():
            want = type(getattr(ref, key))
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, want) or isinstance(value, bool):
                raise L2TError(f"{where}: {key} must be {want.__name__}, got {value!r}")
            kw[key] = value
        return cls(**kw).validate(where)


# --------------------------------------------------------------------------- encoders
class _ResBlock(nn.Module):
    def __init__(self, ch: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(ch, ch, 3, padding=1),
            nn.GroupNorm(_groups(ch), ch),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Conv1d(ch, ch, 3, padding=1),
            nn.GroupNorm(_groups(ch), ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x + self.body(x))


def _groups(ch: int) -> int:
    return math.gcd(ch, 8)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(_groups(cout), cout), nn.GELU()
    )


class AudioEncoder(nn.Module):
    """Mel window ``[B, 80, M]`` -> embedding ``[B, E]`` (not normalised): convolutions over time, two of
    stride 2, pooled to 4 time steps that are flattened (keeping where in the window things happen)."""

    def __init__(self, channels: int, embed_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            _conv(N_MELS, c),
            _ResBlock(c, dropout),
            _conv(c, c, stride=2),
            _ResBlock(c, dropout),
            _conv(c, c, stride=2),
            _ResBlock(c, dropout),
            nn.AdaptiveAvgPool1d(4),
        )
        self.out = nn.Linear(c * 4, embed_dim)

    def forward(self, mel: Tensor) -> Tensor:
        return self.out(self.net(mel).flatten(1))


class MotionEncoder(nn.Module):
    """Lip displacement window ``[B, W, L, 3]`` -> embedding ``[B, E]`` (not normalised): a per-frame linear
    projection of the ``3L`` coordinates, two residual 1-D convolutions over the ``W`` frames, flatten, linear."""

    def __init__(self, n_lip: int, window: int, hidden: int, embed_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(3 * n_lip, hidden), nn.LayerNorm(hidden), nn.GELU())
        self.temporal = nn.Sequential(_ResBlock(hidden, dropout), _ResBlock(hidden, dropout))
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden * window, embed_dim))

    def forward(self, disp: Tensor) -> Tensor:
        x = self.frame(disp.flatten(2))  # [B, W, H]
        x = self.temporal(x.transpose(1, 2))  # [B, H, W]
        return self.out(x.flatten(1))


# --------------------------------------------------------------------------- the expert
class SyncNet3D(nn.Module):
    """Audio/lip-motion sync expert. ``lip_indices``: lip vertices of ``n_verts``-vertex meshes;
    ``disp_scale``: displacement normaliser (data units, or template lip sizes with ``lip_norm = "template"``)."""

    lip_indices: Tensor
    disp_scale: Tensor

    def __init__(
        self,
        config: SyncNet3DConfig,
        lip_indices: Sequence[int] | Tensor,
        n_verts: int,
        disp_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.config = config.validate()
        lips = torch.as_tensor(lip_indices, dtype=torch.long).reshape(-1)
        if lips.numel() == 0:
            raise L2TError("SyncNet3D needs at least one lip vertex")
        if int(lips.min()) < 0 or int(lips.max()) >= n_verts:
            raise L2TError(f"lip vertex indices must lie in [0, {n_verts}), got {int(lips.min())}..{int(lips.max())}")
        self.n_verts = int(n_verts)
        self.register_buffer("lip_indices", lips)
        self.register_buffer("disp_scale", torch.tensor(float(disp_scale)))
        c = config
        self.audio_encoder = AudioEncoder(c.audio_channels, c.embed_dim, c.dropout)
        self.motion_encoder = MotionEncoder(lips.numel(), c.window_frames, c.motion_hidden, c.embed_dim, c.dropout)
        self.log_w = nn.Parameter(torch.tensor(math.log(5.0)))
        self.b = nn.Parameter(torch.tensor(0.0))
        self.mel = SyncMel()

    # ------------------------------------------------------------------ properties
    @property
    def fps(self) -> float:
        return float(self.config.fps)

    @property
    def window_frames(self) -> int:
        return self.config.window_frames

    @property
    def mel_frames(self) -> int:
        return self.config.mel_frames

    @property
    def n_lip(self) -> int:
        return int(self.lip_indices.numel())

    # ------------------------------------------------------------------ inputs
    def lip_size(self, template: Tensor) -> Tensor:
        """Per-subject lip size ``[...]`` from ``template [..., V, 3]``: RMS distance of the lip vertices from
        their centroid (1 with ``lip_norm = "global"``)."""
        if self.config.lip_norm != "template":
            return template.new_ones(template.shape[:-2])
        lips = template[..., self.lip_indices, :]
        return (lips - lips.mean(-2, keepdim=True)).square().sum(-1).mean(-1).sqrt().clamp_min(1e-12)

    def displacements(self, vertices: Tensor, template: Tensor) -> Tensor:
        """Normalised lip displacements: ``vertices [..., T, V, 3]``, ``template [..., V, 3]`` -> ``[..., T, L, 3]``
        (differentiable w.r.t. ``vertices``)."""
        lips = vertices[..., self.lip_indices, :] - template[..., None, self.lip_indices, :]
        scale = self.lip_size(template)[..., None, None, None] * self.disp_scale.to(lips.dtype)
        return lips / scale

    def audio_features(self, audio: Tensor) -> Tensor:
        """Wav2Lip mel of 16 kHz audio: ``[n] -> [80, frames]`` or ``[B, n] -> [B, 80, frames]``."""
        return self.mel(audio)

    def window_count(self, frames: int, mel_frames: int) -> int:
        """Number of windows ``i = 0 .. N-1`` whose motion frames (``< frames``) and mel frames (``< mel_frames``)
        both exist."""
        n = frames - self.window_frames + 1
        if n <= 0:
            return 0
        starts = mel_start(torch.arange(n), self.fps)
        return int((starts + self.mel_frames <= mel_frames).sum())

    def mel_windows(self, mel: Tensor, frames: Tensor) -> Tensor:
        """Mel windows for motion windows starting at ``frames [K]``: ``mel [80, F] -> [K, 80, M]``."""
        idx = mel_start(frames, self.fps).to(mel.device)[:, None] + torch.arange(self.mel_frames, device=mel.device)
        return mel[:, idx].permute(1, 0, 2)

    def motion_windows(self, disp: Tensor, frames: Tensor) -> Tensor:
        """Motion windows starting at ``frames [K]``: ``disp [T, L, 3] -> [K, W, L, 3]``."""
        idx = frames.to(disp.device)[:, None] + torch.arange(self.window_frames, device=disp.device)
        return disp[idx]

    # ------------------------------------------------------------------ embeddings and scores
    def embed_audio(self, mel_windows: Tensor) -> Tensor:
        """``[B, 80, M] -> [B, E]`` unit vectors."""
        return F.normalize(self.audio_encoder(mel_windows), dim=-1)

    def embed_motion(self, disp_windows: Tensor) -> Tensor:
        """``[B, W, L, 3] -> [B, E]`` unit vectors."""
        return F.normalize(self.motion_encoder(disp_windows), dim=-1)

    def logit(self, cos: Tensor) -> Tensor:
        """Sync logit from the cosine similarity: ``w * cos + b`` (``w`` kept in [0.1, 100])."""
        return self.log_w.clamp(math.log(0.1), math.log(100.0)).exp() * cos + self.b

    def forward(self, mel_windows: Tensor, disp_windows: Tensor) -> Tensor:
        """Sync logits ``[B]`` of paired windows (``sigmoid`` gives ``P(in sync)``)."""
        a = self.embed_audio(mel_windows)
        m = self.embed_motion(disp_windows)
        return self.logit((a * m).sum(-1))

    @torch.no_grad()
    def clip_mel(self, audio: Tensor | Any) -> Tensor:
        """Mel of a whole clip, ``audio [n]`` (16 kHz) -> ``[80, frames]`` on the expert's device."""
        return self.audio_features(torch.as_tensor(audio, dtype=torch.float32, device=self.lip_indices.device))

    @torch.no_grad()
    def embed_audio_clip(self, mel: Tensor, n: int, chunk: int = 2048) -> Tensor:
        """Embeddings ``[n, E]`` of the audio windows of motion windows ``0 .. n-1`` (``mel [80, frames]``)."""
        out = [self.embed_audio(self.mel_windows(mel, torch.arange(k, min(n, k + chunk)))) for k in range(0, n, chunk)]
        return torch.cat(out) if out else mel.new_zeros(0, self.config.embed_dim)

    @torch.no_grad()
    def embed_motion_clip(self, vertices: Tensor | Any, template: Tensor | Any, n: int, chunk: int = 2048) -> Tensor:
        """Embeddings ``[n, E]`` of motion windows ``0 .. n-1`` of ``vertices [T, V, 3]`` (template ``[V, 3]``)."""
        dev = self.lip_indices.device
        disp = self.displacements(
            torch.as_tensor(vertices, dtype=torch.float32, device=dev),
            torch.as_tensor(template, dtype=torch.float32, device=dev),
        )
        out = [
            self.embed_motion(self.motion_windows(disp, torch.arange(k, min(n, k + chunk)))) for k in range(0, n, chunk)
        ]
        return torch.cat(out) if out else disp.new_zeros(0, self.config.embed_dim)

    @torch.no_grad()
    def embed_clip(self, audio: Tensor | Any, vertices: Tensor | Any, template: Tensor | Any) -> tuple[Tensor, Tensor]:
        """Embeddings of every window of a clip: ``audio [n]`` (16 kHz), ``vertices [T, V, 3]``, ``template [V, 3]``
        -> ``(audio_emb [N, E], motion_emb [N, E])``; window ``i`` of both starts at motion frame ``i``."""
        mel = self.clip_mel(audio)
        n = self.window_count(int(vertices.shape[0]), mel.shape[-1])
        return self.embed_audio_clip(mel, n), self.embed_motion_clip(vertices, template, n)


# --------------------------------------------------------------------------- checkpoints
def syncnet3d_payload(model: SyncNet3D) -> dict[str, Any]:
    """Everything needed to rebuild ``model``, as a ``weights_only``-safe dict."""
    return CHECKPOINT.header() | {
        "config": model.config.to_dict(),
        "n_verts": model.n_verts,
        "lip_indices": model.lip_indices.detach().cpu().clone(),
        "disp_scale": float(model.disp_scale),
        "model": cpu_state_dict(model),
    }


def save_syncnet3d(path: str | os.PathLike, model: SyncNet3D, **extra: Any) -> Path:
    """Write ``model`` (plus ``extra`` entries such as ``train`` or ``metrics``) to ``path`` atomically."""
    return save_payload(path, syncnet3d_payload(model) | extra)


def resolve_syncnet3d(path: str | os.PathLike) -> Path:
    """A checkpoint file, or ``best.pt`` (else ``last.pt``) of a run directory."""
    return CHECKPOINT.resolve(path)


def read_syncnet3d_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a SyncNet3D checkpoint dict; corrupt, truncated or foreign files raise :class:`L2TError`."""
    return CHECKPOINT.read(path)


def model_from_payload(data: dict[str, Any], where: str = "checkpoint") -> SyncNet3D:
    """Rebuild a :class:`SyncNet3D` from a :func:`read_syncnet3d_checkpoint` dict and load its weights."""
    cfg = SyncNet3DConfig.from_dict(dict(data["config"]), where=f"{where}: config")
    try:
        model = SyncNet3D(cfg, data["lip_indices"], int(data["n_verts"]), float(data.get("disp_scale", 1.0)))
        model.load_state_dict(data["model"], strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        raise L2TError(
            f"{where} does not match its config ({(lines[-1] if lines else type(exc).__name__)[:200]})"
        ) from None
    return model


def load_syncnet3d(path_or_run: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNet3D:
    """Load a SyncNet3D expert (eval mode) from a checkpoint file or a training run directory."""
    p = resolve_syncnet3d(path_or_run)
    return model_from_payload(read_syncnet3d_checkpoint(p), where=f"SyncNet3D checkpoint {p}").to(device).eval()
