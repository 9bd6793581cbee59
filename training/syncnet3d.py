"""Train SyncNet3D, the 3D lip-sync expert: ``l2t-gs train syncnet3d --data DIR --out RUN``.

Pairs (Wav2Lip's expert recipe, on lip-vertex motion): an audio window at motion frame ``i`` with the lip motion
window at ``i`` (label 1, probability ``pos_prob``) or at ``i + s`` (label 0), where ``s`` is a *hard* shift of
``hard_min .. hard_max`` frames either way (probability ``hard_prob``) or a random shift of at least ``min_shift``
frames within the same clip. Loss: BCE on the expert's logit ``w cos + b``. Every clip of the split is held in
memory as Wav2Lip mel and normalised lip displacements, and each batch is gathered in one indexing operation.

A run folder holds

- ``config.toml``: the resolved recipe; ``last.pt``: model, optimizer and position (every ``checkpoint_every``
  steps and at each epoch end; rerunning the command resumes from it); ``best.pt``: the lowest validation loss;
- ``train_log.csv`` (step, epoch, lr, loss, acc) and ``val_log.csv`` (per epoch, the held-out metrics);
- ``metrics.json``: held-out sync accuracy of ``best.pt`` (see :func:`evaluate_expert`).

Held-out metrics on the validation split: ``binary_acc`` on balanced in-sync/off-sync pairs (one positive and
one negative per window, negatives drawn as in training from a fixed generator; chance 0.5), ``offset_acc``
(for each motion window, the audio window at distance-minimising offset in ``-vshift..vshift`` is the true one;
``offset_acc_pm1``: within one frame; chance about ``1 / (2 vshift + 1)``), ``clip_offset_acc`` (fraction of clips
whose syncnet_python offset is 0), and the clips' LSE-D / LSE-C on ground truth.

Determinism: the model is initialised from ``seed``; batch ``k`` is drawn from a generator seeded with
``(seed, k)`` and the global RNG (dropout) is re-seeded from it too, so a resumed run ends with the same weights
as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from l2t_gs.core.device import resolve_device
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import write_text_atomic
from l2t_gs.training.common import BaseTrainConfig, CsvLog, lr_at, read_recipe, recipe_file, resolve_recipe, typed_table
from l2t_gs.training.data.datasets import load_dataset
from l2t_gs.training.metrics.lse import sync_scores
from l2t_gs.training.metrics.regions import resolve_regions
from l2t_gs.training.models.sync_mel import mel_start
from l2t_gs.training.models.syncnet3d import (
    SyncNet3D,
    SyncNet3DConfig,
    load_syncnet3d,
    model_from_payload,
    read_syncnet3d_checkpoint,
    save_syncnet3d,
)
from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS, Trainer, common_options

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from l2t_gs.training.models.syncnet3d import SyncNet3D

__all__ = [
    "DataConfig",
    "EvalConfig",
    "SamplingConfig",
    "TrainConfig",
    "WindowBank",
    "add_arguments",
    "evaluate_expert",
    "load_recipe",
    "run",
    "train",
]

SECTIONS = ("model", "train", "data", "sampling", "eval")
METRICS_FORMAT = "l2t-gs-syncnet3d-metrics"


# --------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig(BaseTrainConfig):
    """``[train]``: the common fields (:class:`~l2t_gs.training.common.BaseTrainConfig`, batches of at least 2
    pairs) plus ``steps_per_epoch`` (0: one pass over the training windows, ``windows / batch_size``)."""

    min_batch_size = 2

    epochs: int = 30
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    lr_schedule: str = "cosine"
    steps_per_epoch: int = 0

    def validate(self) -> TrainConfig:
        super().validate()
        if self.steps_per_epoch < 0:
            raise L2TError("[train]: steps_per_epoch must be >= 0")
        return self


@dataclass
class SamplingConfig:
    """``[sampling]``: how training (and validation) pairs are drawn."""

    pos_prob: float = 0.5
    hard_prob: float = 0.5
    hard_min: int = 2
    hard_max: int = 5
    min_shift: int = 2

    def validate(self) -> SamplingConfig:
        if not (0 < self.pos_prob < 1 and 0 <= self.hard_prob <= 1):
            raise L2TError("[sampling]: pos_prob must be in (0, 1), hard_prob in [0, 1]")
        if not 1 <= self.min_shift <= self.hard_min <= self.hard_max:
            raise L2TError("[sampling]: need 1 <= min_shift <= hard_min <= hard_max (frames)")
        return self


@dataclass
class DataConfig:
    """``[data]``: dataset kind and splits (``val_split = ""``: none); ``regions``: where the lip vertices come
    from (a regions file as ``l2t-gs eval --regions`` takes; ``""``: the data root's, else the built-in head's);
    ``n_verts`` / ``frame_tolerance``: overrides for non-standard data (0 / -1: none)."""

    kind: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    regions: str = ""
    n_verts: int = 0
    frame_tolerance: int = -1


@dataclass
class EvalConfig:
    """``[eval]``: held-out evaluation. ``vshift``: offsets searched (frames, syncnet_python: 15); ``pad``: LSE
    edge convention (``valid``, or ``zeros`` as syncnet_python; :mod:`l2t_gs.training.metrics.lse`); ``stride``:
    frames between validation windows."""

    vshift: int = 15
    pad: str = "valid"
    stride: int = 1

    def validate(self) -> EvalConfig:
        if self.vshift < 1 or self.stride < 1 or self.pad not in ("valid", "zeros"):
            raise L2TError("[eval]: vshift and stride must be >= 1, pad 'valid' or 'zeros'")
        return self


def recipe_path(spec: str | os.PathLike | None) -> Path | None:
    """A recipe: a ``.toml`` path or a packaged SyncNet3D recipe name (``syncnet3d``)."""
    return recipe_file(spec, "SyncNet3D recipe", prefix="syncnet3d")


def load_recipe(spec: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """Read a recipe (``None``: defaults) into one dict per section of :data:`SECTIONS`."""
    return read_recipe(recipe_path(spec), SECTIONS)


def _toml(data: dict[str, dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    parts = [f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items()) for name, table in data.items()]
    return "\n".join(parts)


# --------------------------------------------------------------------------- data in memory
class WindowBank:
    """Every usable clip of a split in memory, ready for vectorised window gathering.

    ``mel [80, sum F]`` (Wav2Lip mel of each whole clip, concatenated), ``disp [sum T, L, 3]`` (normalised lip
    displacements, :meth:`SyncNet3D.displacements`), per clip ``mel_off``, ``disp_off``, ``n_win`` (windows with
    both audio and motion) and ``n_motion`` (motion windows, ``T - W + 1``). Clips too short for
    ``min_windows`` motion windows are dropped (``dropped`` lists them).
    """

    def __init__(self, dataset: Any, model: SyncNet3D, min_windows: int, what: str) -> None:
        import torch

        mels, disps, names, n_win, n_motion, dropped = [], [], [], [], [], []
        w = model.window_frames
        for k in range(len(dataset)):
            clip = dataset[k]
            if int(clip.audio_sr) != 16000:
                raise L2TError(f"{what}: clip {clip.name} has {clip.audio_sr} Hz audio; SyncNet3D needs 16 kHz")
            with torch.no_grad():
                mel = model.audio_features(clip.audio.float())
                disp = model.displacements(clip.vertices.float(), clip.template.float())
            t = int(disp.shape[0])
            nw = model.window_count(t, int(mel.shape[-1]))
            if nw < 1 or t - w + 1 < min_windows:
                dropped.append(clip.name)
                continue
            mels.append(mel)
            disps.append(disp)
            names.append(clip.name)
            n_win.append(nw)
            n_motion.append(t - w + 1)
        if not names:
            raise L2TError(
                f"{what}: no clip is long enough for SyncNet3D ({w} frames per window and {min_windows} windows)"
            )
        self.names, self.dropped = names, dropped
        self.mel = torch.cat(mels, dim=1)
        self.disp = torch.cat(disps, dim=0)
        self.n_win = torch.tensor(n_win)
        self.n_motion = torch.tensor(n_motion)
        self.mel_off = torch.tensor([0] + [m.shape[1] for m in mels[:-1]]).cumsum(0)
        self.disp_off = torch.tensor([0] + [d.shape[0] for d in disps[:-1]]).cumsum(0)
        self.win_cum = self.n_win.cumsum(0)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def windows(self) -> int:
        return int(self.n_win.sum())

    def rms(self) -> float:
        """RMS of the displacement coordinates (for ``disp_scale``)."""
        return float(self.disp.double().square().mean().sqrt())

    def scale(self, factor: Tensor) -> None:
        """Divide the displacements by ``factor`` (the expert's ``disp_scale``)."""
        self.disp /= factor

    def clip_windows(self, c: int, model: SyncNet3D) -> tuple[Tensor, Tensor]:
        """Clip ``c``'s mel ``[80, F]`` and displacements ``[T, L, 3]`` (views)."""
        m0 = int(self.mel_off[c])
        d0 = int(self.disp_off[c])
        t = int(self.n_motion[c]) + model.window_frames - 1
        f_end = self.mel.shape[1] if c + 1 == len(self) else int(self.mel_off[c + 1])
        return self.mel[:, m0:f_end], self.disp[d0 : d0 + t]

    def gather(self, model: SyncNet3D, clip: Tensor, audio_at: Tensor, motion_at: Tensor) -> tuple[Tensor, Tensor]:
        """Mel windows ``[B, 80, M]`` at windows ``audio_at`` and motion windows ``[B, W, L, 3]`` at ``motion_at``
        of clips ``clip`` (all ``[B]``)."""
        import torch

        mi = (self.mel_off[clip] + mel_start(audio_at, model.fps))[:, None] + torch.arange(model.mel_frames)
        di = (self.disp_off[clip] + motion_at)[:, None] + torch.arange(model.window_frames)
        return self.mel[:, mi].permute(1, 0, 2), self.disp[di]


def _negative_windows(i: Tensor, n_motion: Tensor, g: torch.Generator, s: SamplingConfig) -> Tensor:
    """Off-sync motion windows for windows ``i`` (``[B]``, clips with ``n_motion`` motion windows): a hard shift of
    ``hard_min..hard_max`` frames (probability ``hard_prob``; the other sign when out of range) or a uniform window
    at least ``min_shift`` away."""
    import torch

    b = i.shape[0]
    mag = torch.randint(s.hard_min, s.hard_max + 1, (b,), generator=g)
    sign = torch.where(torch.rand(b, generator=g) < 0.5, -1, 1)
    hard = i + sign * mag
    hard = torch.where((hard < 0) | (hard >= n_motion), i - sign * mag, hard)
    use_hard = (torch.rand(b, generator=g) < s.hard_prob) & (hard >= 0) & (hard < n_motion)
    lo = (i - s.min_shift + 1).clamp(min=0)
    hi = torch.minimum(i + s.min_shift - 1, n_motion - 1)
    excluded = hi - lo + 1
    r = (torch.rand(b, generator=g) * (n_motion - excluded)).long()
    rand = torch.where(r < lo, r, r + excluded)
    return torch.where(use_hard, hard, rand)


def sample_batch(
    bank: WindowBank, model: SyncNet3D, batch: int, g: torch.Generator, s: SamplingConfig
) -> tuple[Tensor, Tensor, Tensor]:
    """A training batch: ``(mel [B, 80, M], motion [B, W, L, 3], label [B])``; windows uniform over all windows."""
    import torch

    u = torch.randint(0, bank.windows, (batch,), generator=g)
    clip = torch.searchsorted(bank.win_cum, u, right=True)
    i = u - (bank.win_cum[clip] - bank.n_win[clip])
    pos = torch.rand(batch, generator=g) < s.pos_prob
    j = torch.where(pos, i, _negative_windows(i, bank.n_motion[clip], g, s))
    mel, motion = bank.gather(model, clip, i, j)
    return mel, motion, pos.float()


def _val_pairs(bank: WindowBank, stride: int, s: SamplingConfig) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fixed balanced validation pairs: every ``stride``-th window of every clip once in sync, once off
    (``(clip, audio_at, motion_at, label)``, each ``[2K]``)."""
    import torch

    g = torch.Generator().manual_seed(20240417)
    clip = torch.cat([torch.full((len(range(0, int(n), stride)),), c) for c, n in enumerate(bank.n_win)])
    i = torch.cat([torch.arange(0, int(n), stride) for n in bank.n_win])
    neg = _negative_windows(i, bank.n_motion[clip], g, s)
    ones = torch.ones_like(i, dtype=torch.float32)
    return torch.cat([clip, clip]), torch.cat([i, i]), torch.cat([i, neg]), torch.cat([ones, 1 - ones])


# --------------------------------------------------------------------------- evaluation
def evaluate_expert(
    model: SyncNet3D, bank: WindowBank, s: SamplingConfig, e: EvalConfig, batch: int = 1024
) -> dict[str, float]:
    """Held-out sync metrics of ``model`` on ``bank`` (module docstring); ``model`` is put in eval mode."""
    import torch
    import torch.nn.functional as F

    model.eval()
    dev = model.lip_indices.device
    clip, a_at, m_at, label = _val_pairs(bank, e.stride, s)
    logits = []
    with torch.no_grad():
        for k in range(0, clip.shape[0], batch):
            sl = slice(k, k + batch)
            mel, motion = bank.gather(model, clip[sl], a_at[sl], m_at[sl])
            logits.append(model(mel.to(dev), motion.to(dev)).cpu())
    logit = torch.cat(logits)
    pred = logit > 0
    pos = label > 0.5
    near = ~pos & ((m_at - a_at).abs() <= s.hard_max)  # negatives only hard_min..hard_max frames off
    far = ~pos & ~near
    hits = correct_pm1 = windows = 0
    chance = 0.0
    lse_d, lse_c, clip_ok = [], [], []
    v = e.vshift
    with torch.no_grad():
        for c in range(len(bank)):
            mel, disp = bank.clip_windows(c, model)
            n = int(bank.n_win[c])
            frames = torch.arange(n)
            a_emb = model.embed_audio(model.mel_windows(mel.to(dev), frames)).cpu().double()
            m_emb = model.embed_motion(model.motion_windows(disp.to(dev), frames)).cpu().double()
            # window retrieval: motion window i against audio windows i - v .. i + v that exist
            k = frames[:, None] + torch.arange(-v, v + 1)[None]  # [n, 2v+1]
            ok = (k >= 0) & (k < n)
            d = torch.stack([(m_emb - a_emb[k[:, j].clamp(0, n - 1)]).norm(dim=-1) for j in range(2 * v + 1)], 1)
            found = d.masked_fill(~ok, math.inf).argmin(1) - v  # 0: the true window
            hits += int((found == 0).sum())
            correct_pm1 += int((found.abs() <= 1).sum())
            windows += n
            chance += float((1.0 / ok.sum(1).double()).sum())
            sc = sync_scores(m_emb, a_emb, v, e.pad)
            lse_d.append(sc.lse_d)
            lse_c.append(sc.lse_c)
            clip_ok.append(sc.offset == 0)
    return {
        "val_loss": float(F.binary_cross_entropy_with_logits(logit, label)),
        "binary_acc": float((pred == pos).float().mean()),
        "binary_acc_pos": float(pred[pos].float().mean()),
        "binary_acc_neg": float((~pred[~pos]).float().mean()),
        "binary_acc_neg_near": float((~pred[near]).float().mean()) if bool(near.any()) else math.nan,
        "binary_acc_neg_far": float((~pred[far]).float().mean()) if bool(far.any()) else math.nan,
        "offset_acc": hits / windows,
        "offset_acc_pm1": correct_pm1 / windows,
        "offset_chance": chance / windows,
        "clip_offset_acc": float(sum(clip_ok) / len(clip_ok)),
        "lse_d_gt": float(sum(lse_d) / len(lse_d)),
        "lse_c_gt": float(sum(lse_c) / len(lse_c)),
        "pairs": int(label.numel()),
        "windows": windows,
        "clips": len(bank),
    }


# --------------------------------------------------------------------------- logs
# --------------------------------------------------------------------------- training
def _load_split(data: Path, dcfg: DataConfig, split: str) -> Any:

    kw: dict[str, Any] = {"kind": dcfg.kind, "split": split}
    if dcfg.n_verts:
        kw["n_verts"] = dcfg.n_verts
    if dcfg.frame_tolerance >= 0:
        kw["frame_tolerance"] = dcfg.frame_tolerance
    return load_dataset(data, **kw)


def _lip_indices(data: Path, dcfg: DataConfig, n_verts: int) -> list[int]:

    regions = resolve_regions(dcfg.regions or None, n_verts, data_root=data)
    return [int(i) for i in regions.lips]


def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: str | os.PathLike | dict[str, dict[str, Any]] | None = None,
    *,
    epochs: int | None = None,
    max_steps: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    callbacks: tuple[Any, ...] = (),
) -> dict[str, Any]:
    """Train (or resume) a SyncNet3D run in ``out`` on the dataset at ``data``; returns a summary with the held-out
    metrics of ``best.pt`` (also written to ``out/metrics.json``). ``callbacks`` get each step's log row."""
    import torch

    recipe = config if isinstance(config, dict) else load_recipe(config)
    recipe = resolve_recipe(recipe, SECTIONS, epochs=epochs, max_steps=max_steps, device=device, seed=seed)
    cfg: TrainConfig = typed_table(TrainConfig, recipe["train"], "[train]").validate()
    scfg: SamplingConfig = typed_table(SamplingConfig, recipe["sampling"], "[sampling]").validate()
    dcfg: DataConfig = typed_table(DataConfig, recipe["data"], "[data]")
    ecfg: EvalConfig = typed_table(EvalConfig, recipe["eval"], "[eval]").validate()
    data, out = Path(data), Path(out)
    dev = resolve_device(cfg.device)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(data, out, recipe, cfg, scfg, dcfg, ecfg, dev, progress, callbacks)
    finally:
        torch.set_num_threads(threads)


def _train(
    data: Path,
    out: Path,
    recipe: dict[str, dict[str, Any]],
    cfg: TrainConfig,
    scfg: SamplingConfig,
    dcfg: DataConfig,
    ecfg: EvalConfig,
    dev: torch.device,
    progress: bool | None,
    callbacks: tuple[Any, ...],
) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    if out.exists() and not out.is_dir():
        raise L2TError(f"--out {out} exists and is not a directory")

    def say(msg: str) -> None:
        tqdm.write(msg, file=sys.stderr)

    # ---- data and model
    train_ds = _load_split(data, dcfg, dcfg.train_split)
    if len(train_ds) == 0:
        raise L2TError(f"dataset {data} has no clips in split {dcfg.train_split!r}")
    val_ds = None
    if dcfg.val_split and dcfg.val_split in train_ds.spec.split_names():
        try:
            val_ds = _load_split(data, dcfg, dcfg.val_split)
        except L2TError as exc:
            if "has no clips" not in str(exc):
                raise
    out.mkdir(parents=True, exist_ok=True)
    last = out / "last.pt"
    resume = read_syncnet3d_checkpoint(last) if last.is_file() else None
    mtable = dict(recipe["model"])
    if "fps" in mtable and abs(float(mtable["fps"]) - train_ds.fps) > 1e-6:
        raise L2TError(f"[model] fps = {mtable['fps']} but dataset {data} is {train_ds.fps:g} fps")
    mtable["fps"] = float(train_ds.fps)
    mcfg = SyncNet3DConfig.from_dict(mtable)
    lips = _lip_indices(data, dcfg, train_ds.n_verts)
    if resume is not None:
        model = model_from_payload(resume, where=str(last))
        if model.config.to_dict() != mcfg.to_dict() or model.lip_indices.tolist() != lips:
            raise L2TError(
                f"{out} was started with a different [model] config or lip region; use the same --config to resume "
                "or a new --out"
            )
    else:
        torch.manual_seed(cfg.seed)
        model = SyncNet3D(mcfg, lips, train_ds.n_verts)
    min_windows = 2 * scfg.min_shift
    scale = model.disp_scale.clone()
    model.disp_scale.fill_(1.0)  # the bank is built unscaled, then divided: the same arithmetic fresh and resumed
    bank = WindowBank(train_ds, model, min_windows, f"split {dcfg.train_split!r}")
    if resume is None:
        scale.fill_(bank.rms())
        if not float(scale) > 0:
            raise L2TError(f"dataset {data}: the lips never move in split {dcfg.train_split!r} (nothing to learn)")
    model.disp_scale.copy_(scale)
    bank.scale(model.disp_scale)
    val_bank = WindowBank(val_ds, model, min_windows, f"split {dcfg.val_split!r}") if val_ds is not None else None
    if val_bank is None:
        say(f"note: no validation clips (split {dcfg.val_split!r}); held-out metrics use the training split")
    for b, name in ((bank, dcfg.train_split), (val_bank, dcfg.val_split)):
        if b is not None and b.dropped:
            say(f"note: {len(b.dropped)} clip(s) of split {name!r} are too short for SyncNet3D and were skipped")
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    st = (resume or {}).get("train") or {}
    if "optimizer" in st:
        opt.load_state_dict(st["optimizer"])
    step = int(st.get("step", 0))
    start_epoch, start_batch = int(st.get("epoch", 0)), int(st.get("batch", 0))
    best_val = float(st.get("best_val", math.inf))
    steps_per_epoch = cfg.steps_per_epoch or max(1, math.ceil(bank.windows / cfg.batch_size))
    total = min(cfg.max_steps or math.inf, steps_per_epoch * cfg.epochs)
    resolved = {
        "model": mcfg.to_dict(),
        "train": dataclasses.asdict(cfg) | {"steps_per_epoch": steps_per_epoch},
        "data": dataclasses.asdict(dcfg),
        "sampling": dataclasses.asdict(scfg),
        "eval": dataclasses.asdict(ecfg),
    }
    write_text_atomic(out / "config.toml", "# l2t-gs train syncnet3d: resolved recipe\n\n" + _toml(resolved))
    held_out = val_bank if val_bank is not None else bank

    def state(epoch: int, batch: int, with_opt: bool = True) -> dict[str, Any]:
        s = {"step": step, "epoch": epoch, "batch": batch, "best_val": best_val, "data": str(data)}
        return s | ({"optimizer": opt.state_dict()} if with_opt else {})

    # ---- loop
    if step < total and start_epoch < cfg.epochs:
        if resume is not None:
            say(f"resuming {out} at epoch {start_epoch + 1}, step {step}")
        tlog = CsvLog(
            out / "train_log.csv", ["step", "epoch", "lr", "loss", "acc", "time_s"], step if resume else -1, widen=False
        )
        vcols = ["step", "epoch", "val_loss", "binary_acc", "offset_acc", "offset_acc_pm1", "clip_offset_acc"]
        vlog = CsvLog(out / "val_log.csv", vcols + ["lse_d_gt", "lse_c_gt"], step if resume else -1, widen=False)
        t0 = time.time()
        for epoch in range(start_epoch, cfg.epochs):
            if step >= total:
                break
            first = start_batch if epoch == start_epoch else 0
            bar = tqdm(
                total=steps_per_epoch,
                initial=first,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                unit="step",
                disable=(progress is False) or (progress is None and not sys.stderr.isatty()),
                file=sys.stderr,
                leave=False,
            )
            model.train()
            position = (epoch + 1, 0)
            for bi in range(first, steps_per_epoch):
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                torch.manual_seed(cfg.seed * 7_919 + step)
                mel, motion, label = sample_batch(bank, model, cfg.batch_size, g, scfg)
                lr = lr_at(cfg, step, int(total))
                for group in opt.param_groups:
                    group["lr"] = lr
                logit = model(mel.to(dev), motion.to(dev))
                loss = F.binary_cross_entropy_with_logits(logit, label.to(dev))
                if not math.isfinite(float(loss.detach())):
                    raise L2TError(f"training diverged: loss is {float(loss.detach())} at step {step} (lower lr?)")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                acc = float(((logit.detach() > 0).float().cpu() == label).float().mean())
                row = {"step": step, "epoch": epoch + 1, "lr": lr, "loss": float(loss.detach()), "acc": acc}
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{acc:.2f}")
                if step % cfg.log_every == 0 or bi == steps_per_epoch - 1:
                    tlog.write(row | {"time_s": time.time() - t0})
                for cb in callbacks:
                    cb(row)
                more = bi + 1 < steps_per_epoch
                if step >= total:
                    position = (epoch, bi + 1) if more else (epoch + 1, 0)
                    break
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and more:
                    save_syncnet3d(last, model, train=state(epoch, bi + 1))
            bar.close()
            val = evaluate_expert(model, held_out, scfg, ecfg)
            say(
                f"epoch {epoch + 1}/{cfg.epochs} step {step}: val loss {val['val_loss']:.4f} "
                f"acc {val['binary_acc']:.3f} offset acc {val['offset_acc']:.3f} (+-1: {val['offset_acc_pm1']:.3f}) "
                f"clip offset acc {val['clip_offset_acc']:.3f}"
            )
            vlog.write({"step": step, "epoch": epoch + 1, **val})
            if val["val_loss"] < best_val:
                best_val = val["val_loss"]
                save_syncnet3d(out / "best.pt", model, train=state(*position, with_opt=False), metrics=val)
            save_syncnet3d(last, model, train=state(*position))
            start_batch = 0
    else:
        say(f"{out}: already trained ({step} steps); raise --epochs or --max-steps to continue")

    # ---- held-out report of best.pt
    best_path = out / "best.pt" if (out / "best.pt").is_file() else last
    best = load_syncnet3d(best_path, device=dev)
    metrics = evaluate_expert(best, held_out, scfg, ecfg)
    best_step = int((read_syncnet3d_checkpoint(best_path).get("train") or {}).get("step", step))
    report = {
        "format": METRICS_FORMAT,
        "version": 1,
        "checkpoint": best_path.name,
        "step": best_step,
        "steps": step,
        "data": str(data),
        "split": dcfg.val_split if val_bank is not None else dcfg.train_split,
        "held_out": val_bank is not None,
        "fps": model.fps,
        "window_frames": model.window_frames,
        "mel_frames": model.mel_frames,
        "lip_vertices": model.n_lip,
        "vshift": ecfg.vshift,
        "metrics": metrics,
        "chance": {"binary_acc": 0.5, "offset_acc": metrics["offset_chance"]},
    }
    write_text_atomic(out / "metrics.json", json.dumps(_json_safe(report), indent=2) + "\n")
    return {"steps": step, "best_val": best_val, "run": str(out), "metrics": metrics, "report": report}


def _json_safe(x: Any) -> Any:
    """NaN/inf -> ``None`` (strict JSON)."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# --------------------------------------------------------------------------- command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``l2t-gs train syncnet3d`` (the trainers' common options plus ``--regions`` and ``--threads``)."""
    common_options(p, "recipe: a .toml file or the packaged name syncnet3d (default: built-in defaults)")
    p.add_argument(
        "--regions",
        metavar="FILE",
        help="lip region (overrides [data] regions): .npz/.json/.pkl regions file or a folder with lve.txt "
        "(default: the data root's, else the built-in head's lips)",
    )
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (overrides [train] threads; 0: torch default)")


def run(args: argparse.Namespace) -> int:
    """Run ``l2t-gs train syncnet3d`` from parsed arguments."""
    recipe = load_recipe(args.config)
    if getattr(args, "regions", None):
        recipe["data"]["regions"] = str(args.regions)
    if getattr(args, "threads", None) is not None:
        if args.threads < 0:
            raise L2TError(f"--threads must be >= 0, got {args.threads}")
        recipe["train"]["threads"] = args.threads
    summary = train(
        args.data,
        args.out,
        recipe,
        epochs=args.epochs,
        max_steps=args.max_steps,
        device=args.device,
        seed=args.seed,
        progress=False if args.no_progress else None,
    )
    m = summary["metrics"]
    rep = summary["report"]
    print(
        f"trained {summary['steps']} steps; held-out ({rep['split']}, {m['clips']} clips) sync accuracy "
        f"{m['binary_acc']:.3f} (chance 0.5), offset accuracy {m['offset_acc']:.3f} "
        f"(+-1 frame {m['offset_acc_pm1']:.3f}, chance {m['offset_chance']:.3f}), clip offset accuracy "
        f"{m['clip_offset_acc']:.3f}; LSE-D/C of ground truth {m['lse_d_gt']:.3f}/{m['lse_c_gt']:.3f}; "
        f"model: {summary['run']}",
        file=sys.stderr,
    )
    return 0


TRAINERS.add("syncnet3d", Trainer(add_arguments, run), help=TRAINER_HELP["syncnet3d"])
