"""LSE-D, LSE-C and the audio-visual offset for 3D motion, scored by a SyncNet3D expert.

Definitions (syncnet_python, ``SyncNetInstance.evaluate`` + ``calc_pdist``; Wav2Lip's LSE scripts
``evaluation/scores_LSE/`` use the same code with ``vshift = 15``):

- embed every window ``i`` of the motion (``m_i``) and of the audio (``a_i``; both start at motion frame ``i``,
  ``N`` windows where both exist);
- for each candidate index ``j = 0 .. 2v`` (``v = vshift``), the distance of every motion window to the audio
  window ``i + j - v``, **averaged over the motion windows** (``mean_dist[j]``);
- ``LSE-D = min_j mean_dist[j]``, ``LSE-C = median_j mean_dist[j] - LSE-D`` (``torch.median``: the lower
  middle value for an even count; 2v+1 is odd), ``offset = v - argmin_j`` (first minimum on ties).

Sign: offset ``k > 0`` means motion window ``i`` matches audio window ``i - k``, i.e. **the motion lags the
audio by k frames** (motion delayed as ``pred[t] = gt[t - k]`` gives ``+k``).

Edges (``pad``): ``calc_pdist`` zero-pads the audio features, so pairs whose audio window does not exist count
as ``||m_i||``. With syncnet_python's unnormalised features that is some large distance; with our unit vectors
the zero vector is at distance 1, *closer* than a typical true pair (mean in-sync distance ~1.2 for the experts
trained here), so zero padding pulls the minimum towards ``+-vshift`` (a still face then reports offset +-15,
and motion shifted by ``k`` gets a lower LSE-D than the original). The default ``pad = "valid"`` therefore
averages only over the pairs that exist (offsets without any pair are left out of min and median);
``pad = "zeros"`` reproduces syncnet_python literally.

Other differences, none of which changes a value beyond rounding: its ``pairwise_distance`` adds ``eps = 1e-6``
to the difference; its loop stops one window early (``lastframe = min_length - 5``). Values (distances of unit
vectors, 0-2) are not comparable with 2D LSE numbers or with Learn2Talk's own SyncNet3D. Groups (subjects, the
split) average the per-clip LSE-D and LSE-C over clips, as Wav2Lip's ``calculate_scores_LRS.py`` averages over
videos.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from l2t_gs.audio.io import resample
from l2t_gs.errors import L2TError
from l2t_gs.training.metrics.base import METRICS, ClipContext, ClipResult, Column, Metric
from l2t_gs.training.models.syncnet3d import SyncNet3D, load_syncnet3d

__all__ = ["LSE", "PADS", "SyncScores", "sync_scores"]

PADS = ("valid", "zeros")


@dataclass(frozen=True)
class SyncScores:
    """Per-clip sync scores: ``offsets [2v+1]`` (ascending, -v..v) with their ``mean_dist``, LSE-D, LSE-C, offset
    (frames; > 0: motion lags audio) and the number of windows."""

    offsets: np.ndarray
    mean_dist: np.ndarray
    lse_d: float
    lse_c: float
    offset: int
    windows: int


def _lower_median(x: Tensor) -> Tensor:
    return x.sort().values[(x.numel() - 1) // 2]


def sync_scores(motion_emb: Tensor, audio_emb: Tensor, vshift: int = 15, pad: str = "valid") -> SyncScores:
    """syncnet_python's offset search on embeddings ``motion_emb [N, E]`` and ``audio_emb [N, E]`` (window ``i`` of
    both at motion frame ``i``). ``pad``: ``"valid"`` or ``"zeros"`` (syncnet_python; see the module docstring)."""
    if pad not in PADS:
        raise ValueError(f"pad must be one of {PADS}, got {pad!r}")
    if vshift < 0:
        raise ValueError(f"vshift must be >= 0, got {vshift}")
    m = torch.as_tensor(motion_emb).double()
    a = torch.as_tensor(audio_emb).double()
    if m.ndim != 2 or m.shape != a.shape:
        raise ValueError(f"need two [N, E] embedding arrays of one shape, got {list(m.shape)} and {list(a.shape)}")
    n = m.shape[0]
    width = 2 * vshift + 1
    if n == 0:
        nan = np.full(width, np.nan)
        return SyncScores(np.arange(-vshift, vshift + 1), nan, math.nan, math.nan, 0, 0)
    i = torch.arange(n)
    to_zero = m.norm(dim=-1)  # distance to a zero-padded audio window
    mean = torch.empty(width, dtype=torch.float64)
    for j in range(width):  # j as in calc_pdist: audio window i + j - vshift
        k = i + (j - vshift)
        ok = (k >= 0) & (k < n)
        d = torch.where(ok, (m - a[k.clamp(0, n - 1)]).norm(dim=-1), to_zero)
        if pad == "zeros":
            mean[j] = d.mean()
        else:
            mean[j] = d[ok].mean() if bool(ok.any()) else math.nan
    finite = torch.isfinite(mean)
    j_min = int(torch.where(finite, mean, math.inf).argmin())  # first minimum, as torch.min
    lse_d = float(mean[j_min])
    lse_c = float(_lower_median(mean[finite])) - lse_d
    # report ascending offsets: offset = vshift - j
    return SyncScores(
        offsets=np.arange(-vshift, vshift + 1),
        mean_dist=mean.flip(0).numpy(),
        lse_d=lse_d,
        lse_c=lse_c,
        offset=vshift - j_min,
        windows=n,
    )


def _needs_expert() -> Metric:
    raise L2TError(
        "the 'lse' metric needs a SyncNet3D expert: pass LSE(syncnet=RUN_OR_CHECKPOINT) to evaluate(metrics=...) "
        "(l2t-gs eval: --syncnet RUN)"
    )


class LSE(Metric):
    """LSE-D / LSE-C / offset of the predicted motion (and of the ground truth, ``*_gt``) under a SyncNet3D expert.

    ``syncnet``: a run directory, a checkpoint file or a loaded :class:`~l2t_gs.training.models.syncnet3d.SyncNet3D`.
    Per-clip values: ``lse_d``, ``lse_c``, ``lse_offset``, ``lse_windows`` and the same with ``_gt``. Groups:
    mean LSE-D/LSE-C over clips, ``lse_offset0`` (fraction of clips with offset 0) and ``lse_offset_abs``
    (mean absolute offset, frames).
    """

    name = "lse"
    requires = frozenset({"audio"})
    columns = (
        Column("lse_d", "LSE-D", ".3f"),
        Column("lse_c", "LSE-C", ".3f"),
        Column("lse_offset0", "off=0", ".2f"),
        Column("lse_d_gt", "LSE-D GT", ".3f"),
        Column("lse_c_gt", "LSE-C GT", ".3f"),
    )

    def __init__(
        self,
        syncnet: str | os.PathLike[str] | Any,
        *,
        vshift: int = 15,
        pad: str = "valid",
        device: str | torch.device = "cpu",
        with_gt: bool = True,
    ) -> None:

        if pad not in PADS:
            raise L2TError(f"LSE padding must be one of {', '.join(PADS)}, got {pad!r}")
        if isinstance(vshift, bool) or not isinstance(vshift, int) or vshift < 0:
            raise L2TError(f"LSE vshift must be an integer >= 0, got {vshift!r}")
        if isinstance(syncnet, SyncNet3D):
            self.expert, self.source = syncnet.to(device).eval(), "<in memory>"
        else:
            self.expert, self.source = load_syncnet3d(syncnet, device=device), str(syncnet)
        self.vshift, self.pad, self.with_gt = vshift, pad, with_gt

    @property
    def description(self) -> str:  # type: ignore[override]
        return (
            f"syncnet_python's LSE with a SyncNet3D expert ({self.expert.window_frames} frames at "
            f"{self.expert.fps:g} fps vs {self.expert.mel_frames} mel frames): mean distance of unit audio and lip "
            f"motion embeddings at each offset in -{self.vshift}..{self.vshift} frames ({self.pad} padding), "
            "LSE-D = min, LSE-C = median - min, offset = argmin (> 0: motion lags audio); mean over clips"
        )

    def config(self) -> dict[str, Any]:
        return {
            "syncnet": self.source,
            "vshift": self.vshift,
            "pad": self.pad,
            "fps": self.expert.fps,
            "window_frames": self.expert.window_frames,
            "mel_frames": self.expert.mel_frames,
        }

    def scores(self, audio: Any, audio_sr: int, vertices: Sequence[Any], template: Any) -> list[SyncScores]:
        """Sync scores of one or more motions ``[T, V, 3]`` (same template) against one clip's audio."""

        a = audio.detach().cpu().numpy() if isinstance(audio, Tensor) else np.asarray(audio, dtype=np.float32)
        a = resample(a.reshape(-1), int(audio_sr), 16000)
        mel = self.expert.clip_mel(a)
        audio_emb: dict[int, Tensor] = {}  # by window count (prediction and ground truth share it)
        out = []
        for v in vertices:
            n = self.expert.window_count(int(np.shape(v)[0]), mel.shape[-1])
            if n not in audio_emb:
                audio_emb[n] = self.expert.embed_audio_clip(mel, n)
            a_emb = audio_emb[n]
            m_emb = self.expert.embed_motion_clip(v, template, n)
            out.append(sync_scores(m_emb.cpu(), a_emb.cpu(), self.vshift, self.pad))
        return out

    def compute(self, ctx: ClipContext) -> dict[str, float]:
        ex = self.expert
        if abs(ctx.fps - ex.fps) > 1e-6:
            raise L2TError(
                f"the SyncNet3D expert {self.source} works at {ex.fps:g} fps but the data is {ctx.fps:g} fps "
                "(train an expert at the data's rate)"
            )
        if ctx.pred.shape[1] != ex.n_verts:
            raise L2TError(
                f"the SyncNet3D expert {self.source} is for {ex.n_verts}-vertex meshes, the data has "
                f"{ctx.pred.shape[1]} vertices"
            )
        motions = [ctx.pred, ctx.gt] if self.with_gt else [ctx.pred]
        res = self.scores(ctx.audio, ctx.audio_sr, motions, ctx.template)
        out: dict[str, float] = {}
        for suffix, s in zip(("", "_gt"), res, strict=False):
            out |= {
                f"lse_d{suffix}": s.lse_d,
                f"lse_c{suffix}": s.lse_c,
                f"lse_offset{suffix}": float(s.offset) if s.windows else math.nan,
                f"lse_windows{suffix}": s.windows,
            }
        return out

    def reduce(self, rows: Sequence[ClipResult]) -> dict[str, float]:
        out: dict[str, float] = {}
        for suffix in ("", "_gt") if self.with_gt else ("",):
            ok = [r.values for r in rows if math.isfinite(r.values.get(f"lse_d{suffix}", math.nan))]
            offs = np.array([v[f"lse_offset{suffix}"] for v in ok], dtype=np.float64)
            out |= {
                f"lse_d{suffix}": float(np.mean([v[f"lse_d{suffix}"] for v in ok])) if ok else math.nan,
                f"lse_c{suffix}": float(np.mean([v[f"lse_c{suffix}"] for v in ok])) if ok else math.nan,
                f"lse_offset0{suffix}": float(np.mean(offs == 0)) if ok else math.nan,
                f"lse_offset_abs{suffix}": float(np.mean(np.abs(offs))) if ok else math.nan,
                f"lse_clips{suffix}": len(ok),
            }
        return out


METRICS.add("lse", _needs_expert)
