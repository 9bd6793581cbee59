"""Sync loss: a frozen SyncNet3D expert scores windows of the predicted motion against the audio.

For every clip of a batch, the windows whose motion frames are all valid (``mask``) and whose mel frames lie
wholly inside the clip's audio (STFT support included, so crop edges are not scored on padding) are
embedded; the loss is the mean over windows (all of them, or ``windows`` random ones per clip) of

- ``"bce"`` (default): ``-log P(in sync) = softplus(-(w cos + b))``, the expert's own calibrated probability
  (Wav2Lip's ``get_sync_loss`` is BCE of its cosine against label 1);
- ``"cosine"``: ``1 - cos(audio, motion)``.

Gradients flow to the predicted vertices only (the expert is frozen, the audio is a constant).

Recipe (``training/audio2mesh.py``'s loss registry)::

    [loss.sync]
    weight = 0.05
    syncnet = "runs/syncnet3d"     # run directory or checkpoint file
    kind = "bce"                   # or "cosine"
    windows = 0                    # per clip; 0: every valid window
    start_step = 0                 # 0 before this optimizer step (Wav2Lip switches its sync loss on late)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2t_gs.errors import L2TError
from l2t_gs.training.models.sync_mel import HOP, N_FFT, SAMPLE_RATE, mel_start
from l2t_gs.training.models.syncnet3d import SyncNet3D, load_syncnet3d

__all__ = ["KINDS", "SyncLoss", "sync_loss_factory"]

KINDS = ("bce", "cosine")


class SyncLoss(nn.Module):
    """Sync loss with a frozen expert (see the module docstring). Call with ``audio [B, n]`` (16 kHz, zero-padded;
    sample 0 at motion frame 0), ``vertices [B, T, V, 3]`` and ``templates [B, V, 3]`` in data units, optional
    ``mask [B, T]`` (valid frames) and ``audio_lengths [B]`` (valid samples; default: the masked frames' span)."""

    def __init__(self, expert: SyncNet3D, kind: str = "bce", windows: int = 0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise L2TError(f"sync loss kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if isinstance(windows, bool) or not isinstance(windows, int) or windows < 0:
            raise L2TError(f"sync loss windows must be an integer >= 0, got {windows!r}")
        self.expert = expert.eval().requires_grad_(False)
        self.kind, self.windows = kind, windows

    def train(self, mode: bool = True) -> SyncLoss:  # the expert stays in eval mode
        super().train(mode)
        self.expert.eval()
        return self

    def valid_windows(self, mask: Tensor, audio_lengths: Tensor) -> Tensor:
        """``[B, T - W + 1]`` bool: windows with valid motion frames and fully supported mel frames."""
        ex = self.expert
        w, b = ex.window_frames, mask.shape[0]
        n = mask.shape[1] - w + 1
        if n <= 0:
            return mask.new_zeros(b, 0)
        frames_ok = mask.unfold(1, w, 1).all(-1)  # [B, n]
        first = mel_start(torch.arange(n), ex.fps).to(mask.device)  # [n]
        last = first + ex.mel_frames - 1
        # mel frame j covers samples [j*HOP - N_FFT/2, j*HOP + N_FFT/2)
        lo_ok = first * HOP - N_FFT // 2 >= 0
        hi_ok = last[None] * HOP + N_FFT // 2 <= audio_lengths[:, None]
        return frames_ok & lo_ok[None] & hi_ok

    def forward(
        self,
        audio: Tensor,
        vertices: Tensor,
        templates: Tensor,
        mask: Tensor | None = None,
        audio_lengths: Tensor | None = None,
        fps: float | None = None,
    ) -> Tensor:
        ex = self.expert
        if fps is not None and abs(float(fps) - ex.fps) > 1e-6:
            raise L2TError(f"the SyncNet3D expert works at {ex.fps:g} fps, the training data is {float(fps):g} fps")
        if vertices.shape[-2] != ex.n_verts:
            raise L2TError(f"the SyncNet3D expert is for {ex.n_verts}-vertex meshes, got {vertices.shape[-2]}")
        b, t = vertices.shape[:2]
        dev = vertices.device
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=dev)
        if audio_lengths is None:
            spf = SAMPLE_RATE / ex.fps
            audio_lengths = (mask.sum(1).double() * spf).round().long().clamp(max=audio.shape[-1])
        valid = self.valid_windows(mask.bool(), audio_lengths.to(dev))  # [B, n]
        if self.windows:
            score = torch.rand(valid.shape, device=dev).masked_fill(~valid, -1.0)
            keep = score.topk(min(self.windows, score.shape[1]), dim=1).indices if score.shape[1] else None
            chosen = torch.zeros_like(valid)
            if keep is not None:
                chosen.scatter_(1, keep, True)
            valid = valid & chosen
        bi, fi = valid.nonzero(as_tuple=True)  # [K]
        if bi.numel() == 0:
            return vertices.sum() * 0.0  # no scorable window (clips shorter than a window): no signal
        with torch.no_grad():
            mel = ex.audio_features(audio.to(dev, torch.float32))  # [B, 80, F]
        mel_idx = mel_start(fi.cpu(), ex.fps).to(dev)[:, None] + torch.arange(ex.mel_frames, device=dev)  # [K, M]
        mel_w = mel[bi[:, None], :, mel_idx].transpose(1, 2)  # [K, 80, M]
        disp = ex.displacements(vertices, templates.to(vertices.dtype))  # [B, T, L, 3]
        frame_idx = fi[:, None] + torch.arange(ex.window_frames, device=dev)  # [K, W]
        disp_w = disp[bi[:, None], frame_idx]  # [K, W, L, 3]
        a = ex.embed_audio(mel_w.to(disp_w.dtype))
        m = ex.embed_motion(disp_w)
        cos = (a * m).sum(-1)
        if self.kind == "bce":
            return F.softplus(-ex.logit(cos)).mean()
        return (1.0 - cos).mean()


def sync_loss_factory(options: dict[str, Any], model: Any, device: torch.device) -> Callable[[Any], Tensor]:
    """Loss factory for ``training/audio2mesh.py``'s registry (``register_loss("sync")(sync_loss_factory)``).

    Options: ``syncnet`` (or ``checkpoint``; required), ``kind``, ``windows``, ``start_step``. The returned
    function takes a ``LossContext`` (``pred [B, T, V, 3]`` in loss units = data units x ``scale``).
    """
    opts = dict(options)
    path = opts.pop("syncnet", None) or opts.pop("checkpoint", None)
    kind = opts.pop("kind", "bce")
    windows = opts.pop("windows", 0)
    start_step = opts.pop("start_step", 0)
    if opts:
        raise L2TError(
            f"[loss.sync]: unknown option(s) {', '.join(sorted(opts))}; known: syncnet, kind, windows, start_step"
        )
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise L2TError('[loss.sync]: set syncnet = "RUN_DIR_OR_CHECKPOINT" (a trained SyncNet3D expert)')
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise L2TError(f"[loss.sync]: start_step must be an integer >= 0, got {start_step!r}")
    loss = SyncLoss(load_syncnet3d(path, device=device), kind=kind, windows=windows).to(device)
    n_verts = getattr(model, "n_verts", None)
    if n_verts is not None and int(n_verts) != loss.expert.n_verts:
        raise L2TError(
            f"[loss.sync]: the SyncNet3D expert {path} is for {loss.expert.n_verts}-vertex meshes, "
            f"the model predicts {n_verts}"
        )
    fps = getattr(model, "fps", None)
    if fps is not None and abs(float(fps) - loss.expert.fps) > 1e-6:
        raise L2TError(
            f"[loss.sync]: the SyncNet3D expert {path} works at {loss.expert.fps:g} fps, the model at {fps:g}"
        )

    def fn(ctx: Any) -> Tensor:
        if 0 <= ctx.step < start_step:
            return ctx.pred.sum() * 0.0
        batch = ctx.batch
        return loss(
            batch.audio,
            ctx.pred / ctx.scale,
            batch.templates,
            mask=ctx.mask,
            fps=batch.fps,
        )

    return fn
