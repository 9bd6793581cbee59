"""PoseVAE: a speech-conditioned, stochastic head-pose generator (in the spirit of Learn2Talk's PoseVAE).

A conditional VAE over windows of ``window`` frames (2 s at 25 fps) of head pose [W, 6] (rotation about
the neck joint, radians, then translation, metres; normalised by the training set's mean and SD):

* condition: per-frame audio features (:func:`pose_features`: 20 log-mel bands, loudness, log F0,
  voicing, speech, onset strength; [W, 25]) through two 1-D convolutions, plus the first ``overlap``
  frames of the window (the previous window's last frames) as context;
* encoder (training only): pose + audio features -> one latent ``z`` [16] per window;
* decoder: audio features, ``z`` (broadcast) and the context -> the window's pose.

:meth:`PoseVAE.sample` walks over the clip with a hop of ``window - overlap`` frames: each window is decoded
from ``z ~ N(0, temperature^2 I)`` (a ``torch.Generator`` seeded with ``seed``: deterministic) given the
poses already generated on its first ``overlap`` frames, and cross-fades into them linearly, so the track
is continuous. ``l2t-gs train posevae`` trains it (``l2t_gs.training.posevae``); the shipped checkpoint is
``l2t_gs/assets/models/posevae/posevae.pt``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from l2t_gs.assets import asset_path
from l2t_gs.audio.features import LogMel
from l2t_gs.audio.prosody import Prosody, prosody
from l2t_gs.errors import L2TError
from l2t_gs.io.checkpoint import CheckpointFormat, cpu_state_dict, save_payload
from l2t_gs.motion.head_motion import onset_strength

__all__ = ["CHECKPOINT", "PoseVAE", "PoseVAEConfig", "default_posevae_path", "load_posevae", "pose_features"]

CHECKPOINT = CheckpointFormat(
    format="l2t-gs-posevae",
    version=1,
    what="PoseVAE checkpoint",
    kind="a PoseVAE checkpoint",
    required=("model", "config"),
    run_files=("posevae.pt", "last.pt"),
)
N_MEL_GROUPS = 20


@dataclass
class PoseVAEConfig:
    """Sizes of a :class:`PoseVAE` (stored in its checkpoint)."""

    feat_dim: int = N_MEL_GROUPS + 5
    pose_dim: int = 6
    window: int = 50
    overlap: int = 10
    hidden: int = 64
    latent: int = 16
    fps: float = 25.0

    @property
    def hop(self) -> int:
        return self.window - self.overlap


_MEL = LogMel()


def _log_mel(audio: np.ndarray, block: int = 6000) -> np.ndarray:
    """``LogMel`` frames [N, 80] of ``audio``, computed in blocks of ``block`` frames (bounded memory); frames
    away from the clip's ends equal the whole-signal ones (each block has two hops of context)."""
    hop, ctx = _MEL.hop_length, 2 * _MEL.hop_length  # context >= half a window (200 samples)
    n = audio.shape[0] // hop + 1
    out = []
    with torch.no_grad():
        for j0 in range(0, n, block):
            j1 = min(j0 + block, n)
            s0 = max(0, j0 * hop - ctx)
            seg = torch.as_tensor(audio[s0 : (j1 - 1) * hop + ctx + 1])
            m = _MEL(seg).numpy().T
            i0 = (j0 * hop - s0) // hop
            out.append(m[i0 : i0 + (j1 - j0)])
    return np.concatenate(out)


def pose_features(audio: np.ndarray, n_frames: int, fps: float, p: Prosody | None = None) -> np.ndarray:
    """Audio features [T, 25] per video frame: 20 log-mel band groups (clip-normalised), z-scored loudness,
    z-scored log F0 (0 where unvoiced), voicing and speech flags, and the onset strength (rectified rise of
    the loudness, :func:`l2t_gs.motion.head_motion.onset_strength`, divided by its speech-frame SD): the
    syllable onsets the head pauses on. ``audio``: 16 kHz mono."""
    mel = _log_mel(np.asarray(audio, np.float32).reshape(-1))  # [N, 80] at 100 fps
    t = np.clip(np.round(np.arange(n_frames) / fps * 100.0).astype(int), 0, mel.shape[0] - 1)
    # average the analysis frames around each video frame (+- half a frame)
    half = max(1, int(round(50.0 / fps)))
    idx = np.clip(t[:, None] + np.arange(-half, half + 1)[None], 0, mel.shape[0] - 1)
    m = mel[idx].mean(axis=1).reshape(n_frames, N_MEL_GROUPS, -1).mean(axis=2)  # [T, 20]
    m = (m - m.mean(axis=0)) / (m.std(axis=0) + 1e-3) if n_frames > 1 else m * 0
    p = p if p is not None else prosody(audio, fps, n_frames)
    sp = p.speech
    e = p.energy_db
    e = (e - e[sp].mean()) / (e[sp].std() + 1e-3) if sp.sum() > 1 else np.zeros(n_frames)
    lf = p.log_f0_filled()
    v = p.voiced
    lf = np.where(v, (lf - lf[v].mean()) / (lf[v].std() + 0.05), 0.0) if v.sum() > 1 else np.zeros(n_frames)
    on = onset_strength(p)
    on = on / (on[sp].std() + 1e-3) if sp.sum() > 1 else np.zeros(n_frames)
    feats = np.concatenate([m, e[:, None], lf[:, None], v[:, None], sp[:, None], on[:, None]], axis=1)
    return np.clip(feats, -5, 5).astype(np.float32)


class PoseVAE(nn.Module):
    """Conditional VAE over pose windows; see the module docstring. Shapes: features [B, W, F], pose
    [B, W, 6] (normalised), context [B, overlap, 6]."""

    def __init__(self, cfg: PoseVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h, f, d, lat = cfg.hidden, cfg.feat_dim, cfg.pose_dim, cfg.latent
        act = nn.GELU
        self.audio = nn.Sequential(
            nn.Conv1d(f, h, 5, padding=2), act(), nn.Conv1d(h, h, 5, padding=4, dilation=2), act()
        )
        self.ctx = nn.Linear(cfg.overlap * d, h)
        self.enc = nn.Sequential(nn.Conv1d(h + d, h, 5, padding=2), act(), nn.Conv1d(h, h, 5, padding=2), act())
        self.enc_out = nn.Linear(h, 2 * lat)
        self.dec = nn.Sequential(
            nn.Conv1d(h + lat + h + 2, h, 5, padding=2), act(),
            nn.Conv1d(h, h, 5, padding=4, dilation=2), act(),
            nn.Conv1d(h, h, 5, padding=8, dilation=4), act(),
            nn.Conv1d(h, d, 1),
        )  # fmt: skip
        pos = torch.zeros(2, cfg.window)
        pos[0] = torch.linspace(0, 1, cfg.window)
        pos[1, : cfg.overlap] = 1.0  # frames given as context
        self.register_buffer("pos", pos, persistent=False)
        self.register_buffer("pose_mean", torch.zeros(d))
        self.register_buffer("pose_std", torch.ones(d))

    def encode(self, feats: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) [B, latent] of the windows."""
        a = self.audio(feats.transpose(1, 2))
        hid = self.enc(torch.cat([a, pose.transpose(1, 2)], dim=1)).mean(dim=2)
        mu, logvar = self.enc_out(hid).chunk(2, dim=1)
        return mu, logvar.clamp(-8, 4)

    def decode(self, feats: Tensor, z: Tensor, ctx: Tensor) -> Tensor:
        """Pose windows [B, W, 6] (normalised) from features, latents [B, latent] and context."""
        b, w = feats.shape[:2]
        a = self.audio(feats.transpose(1, 2))
        c = self.ctx(ctx.reshape(b, -1))[:, :, None].expand(-1, -1, w)
        zz = z[:, :, None].expand(-1, -1, w)
        pos = self.pos[None, :, :w].expand(b, -1, -1)
        return self.dec(torch.cat([a, zz, c, pos], dim=1)).transpose(1, 2)

    def forward(self, feats: Tensor, pose: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass: (reconstruction [B, W, 6], mu, logvar); the context is the pose's first frames."""
        mu, logvar = self.encode(feats, pose)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(feats, z, pose[:, : self.cfg.overlap]), mu, logvar

    @torch.no_grad()
    def sample(self, feats: np.ndarray, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """Head pose [T, 6] (radians, metres) for features [T, F]; deterministic for ``seed``."""
        cfg = self.cfg
        if feats.ndim != 2 or feats.shape[1] != cfg.feat_dim:
            raise L2TError(f"this PoseVAE takes {cfg.feat_dim} audio features per frame, got {feats.shape[1:]}")
        n = int(feats.shape[0])
        w, o, hop = cfg.window, cfg.overlap, cfg.hop
        n_win = max(1, int(np.ceil(max(n - o, 1) / hop)))
        total = (n_win - 1) * hop + w
        f = np.zeros((total, feats.shape[1]), np.float32)
        f[:n] = feats
        if n < total:
            f[n:, -2:] = 0.0  # padding is silence (no speech, no onsets)
        dev = self.pose_mean.device
        ft = torch.as_tensor(f, device=dev)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        zs = torch.randn(n_win, cfg.latent, generator=gen).to(dev) * float(temperature)
        out = torch.zeros(total, cfg.pose_dim, device=dev)
        ramp = torch.linspace(0, 1, o + 2, device=dev)[1:-1, None]
        for k in range(n_win):  # windows, not frames
            s = k * hop
            ctx = out[s : s + o][None]
            win = self.decode(ft[None, s : s + w], zs[k : k + 1], ctx)[0]
            if k == 0:
                out[s : s + w] = win
            else:
                out[s : s + o] = (1 - ramp) * out[s : s + o] + ramp * win[:o]
                out[s + o : s + w] = win[o:]
        pose = out[:n] * self.pose_std + self.pose_mean
        return pose.cpu().double().numpy()

    def save(self, path: str | os.PathLike, train: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint (atomically)."""
        payload = {
            **CHECKPOINT.header(),
            "model": cpu_state_dict(self),
            "config": asdict(self.cfg),
            "train": train or {},
        }
        return save_payload(path, payload)


def default_posevae_path() -> Path:
    """The shipped PoseVAE checkpoint."""
    path = asset_path("models", "posevae", "posevae.pt")
    if not path.is_file():
        raise L2TError("no PoseVAE is shipped with this install; use --head-motion procedural or still")
    return path


_CACHE: dict[str, PoseVAE] = {}


def load_posevae(path: str | os.PathLike | None = None) -> PoseVAE:
    """A PoseVAE from a checkpoint file or run folder (default: the shipped one), on the CPU, in eval mode."""
    p = CHECKPOINT.resolve(path if path is not None else default_posevae_path())
    key = str(p.resolve())
    if key not in _CACHE:
        data = CHECKPOINT.read(p)
        try:
            model = PoseVAE(PoseVAEConfig(**data["config"]))
            model.load_state_dict(data["model"])
        except (TypeError, RuntimeError) as exc:
            raise L2TError(f"PoseVAE checkpoint {p} does not fit this code ({str(exc).splitlines()[0]})") from None
        _CACHE[key] = model.eval()
    return _CACHE[key]
