"""Train the lip reader on rendered mouth crops of a speech/motion corpus with per-frame viseme labels.

``l2t-gs train lipreader --data DIR --out RUN [--config training/lipreader.toml] [--avatar NAME]``

1. Crops: every clip's ground-truth meshes are rendered once through the avatar
   (:class:`~l2t_gs.training.data.mouth.MouthRenderer`, framed by the clip's subject template, no gradient)
   into ``RUN/cache/<split>/<clip>.npz`` (``crops`` uint8 [T, H, W], ``labels`` int16 [T]), one clip at a
   time. ``RUN/cache/manifest.json`` records the crop geometry, avatar and label set; a change
   re-renders. An interrupted caching run continues where it stopped.
2. Labels: the phone at each frame's centre (``phones/<clip>.json``) mapped to its viseme
   (:data:`~l2t_gs.training.models.lipreader.VISEMES`) or kept as a phone (``[model] labels = "phone"``).
3. Training: random windows of ``window`` frames, augmented per sequence (shift, scale, rotation,
   mirror, gamma, blur, noise: the teacher's filmed crops differ from the renders), cross-entropy
   per frame, AdamW, warm-up and cosine decay; the whole validation split is scored after every epoch.

The run directory holds ``config.toml`` (resolved recipe), ``last.pt`` (model + optimizer + position,
written atomically every ``checkpoint_every`` steps and at epoch ends; rerunning the command resumes
from it, and a resumed run continues exactly as an uninterrupted one), ``best.pt`` (highest
validation frame accuracy), ``train_log.csv``, ``val_log.csv`` and ``metrics.json`` (held-out frame
accuracy, per-class recall, the majority-class baseline, timings). ``load_lipreader(RUN)`` loads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from l2t_gs.core.device import resolve_device
from l2t_gs.errors import L2TError
from l2t_gs.gaussians import load_avatar
from l2t_gs.io.atomic import atomic_path, write_text_atomic
from l2t_gs.training.audio2mesh import dump_toml, recipe_path
from l2t_gs.training.common import BaseTrainConfig, CsvLog, lr_at, read_recipe, resolve_recipe, typed_table
from l2t_gs.training.data.datasets import load_dataset
from l2t_gs.training.data.mouth import MouthCropSpec, MouthRenderer
from l2t_gs.training.models.lipreader import (
    LipReaderConfig,
    LipReaderNet,
    frame_labels,
    model_from_checkpoint,
    read_lipreader_checkpoint,
    save_lipreader,
)
from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS, Trainer, common_options

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "TrainConfig",
    "add_arguments",
    "augment",
    "evaluate",
    "load_recipe",
    "run",
    "train_lipreader",
]

SECTIONS = ("model", "crop", "train", "augment", "data")
CACHE_VERSION = 1
IGNORE = -100


# --------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig(BaseTrainConfig):
    """The ``[train]`` table: the common fields (:class:`~l2t_gs.training.common.BaseTrainConfig`) plus
    ``window`` (frames per training sequence), ``steps_per_epoch`` (0: one pass over the training frames,
    frames / (batch_size x window)) and ``label_smoothing`` of the per-frame cross-entropy."""

    epochs: int = 12
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    lr_schedule: str = "cosine"
    grad_clip: float = 5.0
    checkpoint_every: int = 100
    steps_per_epoch: int = 0
    window: int = 32
    label_smoothing: float = 0.05

    def validate(self) -> TrainConfig:
        super().validate()
        if self.window < 1 or self.steps_per_epoch < 0 or not 0 <= self.label_smoothing < 1:
            raise L2TError("[train]: window must be >= 1, steps_per_epoch >= 0 and label_smoothing in [0, 1)")
        return self


@dataclass
class AugmentConfig:
    """The ``[augment]`` table: per-sequence random ``shift`` (fraction of the crop size), ``scale`` (relative),
    ``rotate`` (degrees), ``mirror`` (left-right, probability), ``gamma`` (log-uniform in [1/g, g]),
    ``blur`` (Gaussian sigma up to this many pixels, half of the sequences) and ``noise`` (std)."""

    shift: float = 0.06
    scale: float = 0.08
    rotate: float = 5.0
    mirror: float = 0.5
    gamma: float = 1.4
    blur: float = 1.2
    noise: float = 0.02


@dataclass
class DataConfig:
    """The ``[data]`` table: dataset ``kind`` and splits (``val_split = ""``: no validation), the ``avatar``
    that renders the crops (name or folder), frames placed per render chunk, and ``max_clips`` per split
    (0: all)."""

    kind: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    avatar: str = "default"
    chunk_frames: int = 16
    max_clips: int = 0


def load_recipe(spec: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """A recipe file or packaged name (``lipreader``) -> its tables (``None``: all defaults)."""
    return read_recipe(recipe_path(spec), SECTIONS)


# --------------------------------------------------------------------------- crops cache
@dataclass
class _Clip:
    name: str
    crops: Tensor  # uint8 [T, H, W]
    labels: Tensor  # int64 [T]


def _avatar_digest(avatar: Any) -> str:
    h = hashlib.sha1()
    for t in (avatar.means, avatar.log_scales, avatar.quats, avatar.opacity_logits, avatar.sh, avatar.binding):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _cache_split(
    ds: Any, renderer: MouthRenderer, folder: Path, labels: str, max_clips: int, progress: bool, say: Callable
) -> list[_Clip]:
    """Render (or read back) the crops and labels of every clip of a split."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    n = len(ds) if not max_clips else min(max_clips, len(ds))
    clips, rendered, t0, frames = [], 0, time.time(), 0
    for i in tqdm(range(n), desc=f"crops {folder.name}", unit="clip", disable=not progress, file=sys.stderr):
        name = ds.names[i]
        path = folder / f"{name}.npz"
        item = None
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    item = _Clip(name, torch.from_numpy(z["crops"]), torch.from_numpy(z["labels"].astype(np.int64)))
            except (OSError, KeyError, ValueError):
                item = None
            if item is not None and item.crops.shape[0] != ds.num_frames(i):
                item = None
        if item is None:
            clip = ds[i]
            if clip.phones is None:
                raise L2TError(f"clip {name} has no phones/{name}.json: the lip reader learns from phone segments")
            with torch.no_grad():
                crops = renderer.render(clip.vertices, clip.template)[:, 0]
            data = (crops * 255.0).round().to(torch.uint8)
            lab = frame_labels(clip.phones, clip.fps, clip.num_frames, labels)
            with atomic_path(path, suffix=".npz") as tmp:
                np.savez_compressed(tmp, crops=data.numpy(), labels=lab.astype(np.int16))
            item = _Clip(name, data, torch.from_numpy(lab))
            rendered += 1
            frames += clip.num_frames
        clips.append(item)
    if rendered:
        dt = time.time() - t0
        say(f"rendered {frames} frames of {rendered} clip(s) into {folder} in {dt:.1f} s ({dt / frames:.3f} s/frame)")
    return clips


def _prepare_cache(cache: Path, manifest: dict[str, Any], say: Callable) -> None:
    """Create ``cache`` or, when its manifest differs, empty it (only the files this trainer writes)."""
    path = cache / "manifest.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if old == manifest:
            return
        say(f"crop settings changed: re-rendering {cache}")
        for sub in cache.iterdir():
            if sub.is_dir():
                shutil.rmtree(sub)
    cache.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(manifest, indent=1))


# --------------------------------------------------------------------------- batches and augmentation
def _sample_batch(clips: list[_Clip], lengths: Tensor, cfg: TrainConfig, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """``cfg.batch_size`` random windows: crops ``[B, W, 1, H, W]`` float in 0..1, labels ``[B, W]`` (padding: -100)."""
    w = cfg.window
    picks = torch.multinomial(lengths.double(), cfg.batch_size, replacement=True, generator=gen).tolist()
    h, wd = clips[0].crops.shape[1:]
    x = torch.zeros(cfg.batch_size, w, 1, h, wd)
    y = torch.full((cfg.batch_size, w), IGNORE, dtype=torch.long)
    for b, ci in enumerate(picks):
        c = clips[ci]
        n = min(w, c.crops.shape[0])
        start = int(torch.randint(c.crops.shape[0] - n + 1, (1,), generator=gen))
        x[b, :n, 0] = c.crops[start : start + n].float() / 255.0
        y[b, :n] = c.labels[start : start + n]
    return x, y


def augment(x: Tensor, cfg: AugmentConfig, gen: torch.Generator) -> Tensor:
    """Per-sequence random augmentation of crops ``[B, T, 1, H, W]`` in 0..1 (the same transform for all T)."""
    b, t, _, h, w = x.shape

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    ang = torch.deg2rad(u(-cfg.rotate, cfg.rotate))
    s = 1.0 + u(-cfg.scale, cfg.scale)
    sx = s * torch.where(torch.rand(b, generator=gen) < cfg.mirror, -1.0, 1.0)
    tx, ty = u(-2 * cfg.shift, 2 * cfg.shift), u(-2 * cfg.shift, 2 * cfg.shift)  # grid units: 2 = the crop
    theta = torch.stack(
        [
            torch.stack([sx * torch.cos(ang), -s * torch.sin(ang) * h / w, tx], -1),
            torch.stack([sx * torch.sin(ang) * w / h, s * torch.cos(ang), ty], -1),
        ],
        1,
    )  # [B, 2, 3], maps output to input coordinates
    grid = F.affine_grid(theta.repeat_interleave(t, 0), [b * t, 1, h, w], align_corners=False)
    y = F.grid_sample(x.reshape(b * t, 1, h, w), grid, padding_mode="border", align_corners=False)
    if cfg.blur > 0:
        sigma = torch.where(torch.rand(b, generator=gen) < 0.5, u(0.3, cfg.blur), torch.zeros(b))
        r = torch.arange(-2, 3, dtype=y.dtype)
        k1 = torch.exp(-(r[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
        k1 = k1 / k1.sum(-1, keepdim=True)  # sigma ~0 gives the identity kernel
        k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(t, 0)[:, None]  # [B*T, 1, 5, 5]
        y = F.conv2d(F.pad(y.reshape(1, b * t, h, w), (2, 2, 2, 2), mode="replicate"), k2, groups=b * t)
    y = y.reshape(b, t, 1, h, w).clamp(0, 1)
    if cfg.gamma > 1:
        g = torch.exp(u(-math.log(cfg.gamma), math.log(cfg.gamma))).view(b, 1, 1, 1, 1)
        y = y.clamp_min(1e-6) ** g
    if cfg.noise > 0:
        y = y + cfg.noise * torch.randn(y.shape, generator=gen)
    return y.clamp(0, 1)


# --------------------------------------------------------------------------- training
@torch.no_grad()
def evaluate(model: LipReaderNet, clips: list[_Clip], device: torch.device) -> dict[str, Any]:
    """Whole-clip frame accuracy, mean cross-entropy and per-class recall of ``model`` over ``clips``."""
    was = model.training
    model.eval()
    n_cls = len(model.classes)
    correct = torch.zeros(n_cls, dtype=torch.long)
    count = torch.zeros(n_cls, dtype=torch.long)
    loss_sum = 0.0
    for c in clips:
        x = (c.crops.float() / 255.0)[None, :, None].to(device)
        logits = model(x)[0].float().cpu()
        loss_sum += float(F.cross_entropy(logits, c.labels, reduction="sum"))
        hit = logits.argmax(-1) == c.labels
        count += torch.bincount(c.labels, minlength=n_cls)
        correct += torch.bincount(c.labels[hit], minlength=n_cls)
    model.train(was)
    total = int(count.sum())
    recall = {
        name: round(float(correct[i]) / int(count[i]), 4) for i, name in enumerate(model.classes) if int(count[i])
    }
    return {
        "frame_accuracy": float(correct.sum()) / max(total, 1),
        "loss": loss_sum / max(total, 1),
        "frames": total,
        "per_class_recall": recall,
        "class_frames": {name: int(count[i]) for i, name in enumerate(model.classes) if int(count[i])},
    }


def train_lipreader(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: str | os.PathLike | dict[str, dict[str, Any]] | None = None,
    *,
    epochs: int | None = None,
    max_steps: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    avatar: str | None = None,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
    progress: bool | None = None,
) -> dict[str, Any]:
    """Train (or resume) a lip reader run in ``out`` on the dataset at ``data``; returns a summary dict.

    ``config``: a recipe path/name or a loaded recipe dict; the keyword arguments override it. ``callbacks``
    run after every optimizer step with ``{step, epoch, lr, loss, acc}``; an exception there stops training
    like a crash (used to test resuming).
    """
    recipe = config if isinstance(config, dict) else load_recipe(config)
    recipe = resolve_recipe(recipe, SECTIONS, epochs=epochs, max_steps=max_steps, device=device, seed=seed)
    if avatar is not None:
        recipe["data"]["avatar"] = avatar
    return _Run(Path(data), Path(out), recipe, callbacks, progress).run()


class _Run:
    def __init__(
        self,
        data: Path,
        out: Path,
        recipe: dict[str, dict[str, Any]],
        callbacks: Sequence[Callable[[dict[str, Any]], None]],
        progress: bool | None,
    ) -> None:
        self.data, self.out, self.recipe, self.callbacks = data, out, recipe, callbacks
        self.cfg: TrainConfig = typed_table(TrainConfig, recipe["train"], "[train]").validate()
        self.aug: AugmentConfig = typed_table(AugmentConfig, recipe["augment"], "[augment]")
        self.dcfg: DataConfig = typed_table(DataConfig, recipe["data"], "[data]")
        self.crop = MouthCropSpec.from_dict(recipe["crop"], where="[crop]")
        self.progress = progress if progress is not None else sys.stderr.isatty()
        self.device = resolve_device(self.cfg.device)
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)

    def _say(self, msg: str) -> None:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)

    # ------------------------------------------------------------------ data
    def _load(self, model_cfg: LipReaderConfig) -> None:

        d = self.dcfg
        train_ds = load_dataset(self.data, kind=d.kind, split=d.train_split)  # type: ignore[arg-type]
        val_ds = None
        if d.val_split and d.val_split in train_ds.spec.split_names():
            try:
                val_ds = load_dataset(self.data, kind=d.kind, split=d.val_split)  # type: ignore[arg-type]
            except L2TError as exc:
                if "has no clips" not in str(exc):
                    raise
        if val_ds is None and d.val_split:
            self._say(f"note: no validation clips (split {d.val_split!r}); accuracy is measured on the training clips")
        if abs(train_ds.fps - model_cfg.fps) > 1e-6:
            raise L2TError(f"[model] fps = {model_cfg.fps:g} but dataset {self.data} is {train_ds.fps:g} fps")
        av = load_avatar(d.avatar)
        if av.n_verts != train_ds.n_verts:
            raise L2TError(
                f"avatar '{av.name}' has {av.n_verts} vertices, dataset {self.data} meshes {train_ds.n_verts}"
            )
        renderer = MouthRenderer(av, self.crop, backend="torch", chunk_frames=d.chunk_frames)
        cache = self.out / "cache"
        manifest = {
            "version": CACHE_VERSION,
            "data": str(self.data.resolve()),
            "crop": self.crop.to_dict(),
            "avatar": {"name": av.name, "splats": av.num_splats, "digest": _avatar_digest(av)},
            "labels": model_cfg.labels,
            "fps": train_ds.fps,
        }
        _prepare_cache(cache, manifest, self._say)
        t0 = time.time()
        self.train_clips = _cache_split(
            train_ds, renderer, cache / "train", model_cfg.labels, d.max_clips, self.progress, self._say
        )
        self.val_clips = (
            _cache_split(val_ds, renderer, cache / "val", model_cfg.labels, d.max_clips, self.progress, self._say)
            if val_ds is not None
            else None
        )
        self.cache_seconds = time.time() - t0
        self.lengths = torch.tensor([c.crops.shape[0] for c in self.train_clips])

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.out.exists() and not self.out.is_dir():
            raise L2TError(f"--out {self.out} exists and is not a directory")
        self.out.mkdir(parents=True, exist_ok=True)
        model_key = {"model": self.recipe["model"], "crop": self.crop.to_dict()}
        resume = None
        if (self.out / "last.pt").is_file():
            resume = read_lipreader_checkpoint(self.out / "last.pt")
            if (resume.get("train") or {}).get("recipe_model") != model_key:
                raise L2TError(
                    f"{self.out} was started with a different [model] or [crop]; use the same --config to resume "
                    "or a new --out"
                )
        if resume is not None:
            model = model_from_checkpoint(resume, where=str(self.out / "last.pt"))
        else:
            torch.manual_seed(cfg.seed)
            model = LipReaderNet(LipReaderConfig.from_dict(self.recipe["model"]), self.crop)
        self._load(model.config)
        model.to(self.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        st = (resume or {}).get("train") or {}
        if "optimizer" in st:
            opt.load_state_dict(st["optimizer"])
        step, start_epoch, start_batch = int(st.get("step", 0)), int(st.get("epoch", 0)), int(st.get("batch", 0))
        best = float(st.get("best_acc", -1.0))
        resolved = {
            "model": model.config.to_dict(),
            "crop": self.crop.to_dict(),
            "train": dataclasses.asdict(cfg),
            "augment": dataclasses.asdict(self.aug),
            "data": dataclasses.asdict(self.dcfg),
        }
        header = "# l2t-gs train lipreader: resolved recipe\n\n"
        write_text_atomic(self.out / "config.toml", header + dump_toml(resolved))

        per_epoch = cfg.steps_per_epoch or max(1, math.ceil(int(self.lengths.sum()) / (cfg.batch_size * cfg.window)))
        total = cfg.max_steps or per_epoch * cfg.epochs
        val_clips = self.val_clips if self.val_clips is not None else self.train_clips
        if step >= total or start_epoch >= cfg.epochs:
            self._say(f"{self.out}: already trained ({step} steps); raise --epochs or --max-steps to continue")
            return self._finish(model, step, start_epoch, val_clips, {})
        if resume is not None:
            self._say(f"resuming {self.out} at epoch {start_epoch + 1}, step {step}")
        since = step if resume else -1
        tlog = CsvLog(self.out / "train_log.csv", ["step", "epoch", "lr", "loss", "acc", "time_s"], since)
        vlog = CsvLog(self.out / "val_log.csv", ["step", "epoch", "val_loss", "val_acc"], since)
        t0 = time.time()
        epoch, val = start_epoch, {}
        from tqdm import tqdm

        for epoch in range(start_epoch, cfg.epochs):
            if step >= total:
                break
            first = start_batch if epoch == start_epoch else 0
            bar = tqdm(total=per_epoch, initial=first, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                       disable=not self.progress, file=sys.stderr, leave=False)  # fmt: skip
            position = (epoch + 1, 0)
            for bi in range(first, per_epoch):
                info = self._step(model, opt, step, total, epoch, bi)
                step += 1
                info["step"] = step
                bar.update(1)
                bar.set_postfix(loss=f"{info['loss']:.3f}", acc=f"{info['acc']:.2f}")
                if step % cfg.log_every == 0 or bi == per_epoch - 1:
                    tlog.write(info | {"time_s": time.time() - t0})
                for cb in self.callbacks:
                    cb(info)
                more = bi + 1 < per_epoch
                if step >= total:
                    position = (epoch, bi + 1) if more else (epoch + 1, 0)
                    break
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and more:
                    self._save("last.pt", model, opt, step, (epoch, bi + 1), best, model_key)
            bar.close()
            val = evaluate(model, val_clips, self.device)
            self._say(f"epoch {epoch + 1}/{cfg.epochs} step {step}: val loss {val['loss']:.4g} "
                      f"frame accuracy {val['frame_accuracy']:.3f}")  # fmt: skip
            vlog.write({"step": step, "epoch": epoch + 1, "val_loss": val["loss"], "val_acc": val["frame_accuracy"]})
            if val["frame_accuracy"] > best:
                best = val["frame_accuracy"]
                self._save("best.pt", model, None, step, position, best, model_key)
            self._save("last.pt", model, opt, step, position, best, model_key)
            epoch = position[0] - 1
        return self._finish(model, step, epoch + 1, val_clips, {"train_seconds": round(time.time() - t0, 2)})

    def _step(
        self, model: LipReaderNet, opt: torch.optim.Optimizer, step: int, total: int, epoch: int, bi: int
    ) -> dict[str, Any]:
        cfg = self.cfg
        gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) * 1_000_003 + bi)
        x, y = _sample_batch(self.train_clips, self.lengths, cfg, gen)
        x = augment(x, self.aug, gen).to(self.device)
        y = y.to(self.device)
        torch.manual_seed(cfg.seed * 7_919 + step * 131)  # dropout: a function of the step
        lr = lr_at(cfg, step, total)
        for g in opt.param_groups:
            g["lr"] = lr
        logits = model(x)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE,
            label_smoothing=cfg.label_smoothing,
        )  # fmt: skip
        if not math.isfinite(float(loss.detach())):
            raise L2TError(f"training diverged: loss is {float(loss.detach())} at step {step} (lower the lr?)")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        valid = y != IGNORE
        acc = float((logits.detach().argmax(-1)[valid] == y[valid]).float().mean())
        return {"epoch": epoch + 1, "lr": lr, "loss": float(loss.detach()), "acc": acc}

    def _save(
        self,
        name: str,
        model: LipReaderNet,
        opt: torch.optim.Optimizer | None,
        step: int,
        position: tuple[int, int],
        best: float,
        model_key: dict[str, Any],
    ) -> None:
        state: dict[str, Any] = {
            "step": step,
            "epoch": position[0],
            "batch": position[1],
            "best_acc": best,
            "recipe_model": model_key,
            "data": str(self.data),
        }
        if opt is not None:
            state["optimizer"] = opt.state_dict()
        save_lipreader(self.out / name, model, train=state)

    def _finish(
        self, model: LipReaderNet, step: int, epochs: int, val_clips: list[_Clip], extra: dict[str, Any]
    ) -> dict[str, Any]:
        """Score ``best.pt`` (else the current model) on the held-out clips and write ``metrics.json``."""
        scored = model
        if (self.out / "best.pt").is_file():
            scored = model_from_checkpoint(read_lipreader_checkpoint(self.out / "best.pt")).to(self.device)
        res = evaluate(scored, val_clips, self.device)
        train_counts = torch.bincount(torch.cat([c.labels for c in self.train_clips]), minlength=len(model.classes))
        majority = int(train_counts.argmax())
        val_labels = torch.cat([c.labels for c in val_clips])
        metrics = {
            "split": self.dcfg.val_split if self.val_clips is not None else self.dcfg.train_split,
            "val_frame_accuracy": round(res["frame_accuracy"], 4),
            "val_loss": round(res["loss"], 4),
            "val_frames": res["frames"],
            "majority_class": model.classes[majority],
            "majority_baseline": round(float((val_labels == majority).float().mean()), 4),
            "per_class_recall": res["per_class_recall"],
            "class_frames": res["class_frames"],
            "labels": model.config.labels,
            "classes": list(model.classes),
            "train_clips": len(self.train_clips),
            "train_frames": int(self.lengths.sum()),
            "steps": step,
            "epochs": epochs,
            "cache_seconds": round(self.cache_seconds, 2),
            **extra,
        }
        write_text_atomic(self.out / "metrics.json", json.dumps(metrics, indent=1))
        return {"run": str(self.out), "best": str(self.out / "best.pt"), "last": str(self.out / "last.pt"), **metrics}


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``l2t-gs train lipreader`` (the shared trainer options plus ``--avatar``)."""
    common_options(p, "recipe: a .toml file or a packaged name (lipreader); default: built-in defaults")
    p.add_argument("--avatar", metavar="NAME_OR_DIR", help="avatar rendering the crops (default: the recipe's)")


def run(args: argparse.Namespace) -> int:
    """Run ``l2t-gs train lipreader`` from parsed arguments."""
    summary = train_lipreader(
        args.data,
        args.out,
        args.config,
        epochs=args.epochs,
        max_steps=args.max_steps,
        device=args.device,
        seed=args.seed,
        avatar=args.avatar,
        progress=False if args.no_progress else None,
    )
    print(
        f"trained {summary['steps']} steps; held-out frame accuracy {summary['val_frame_accuracy']:.3f} "
        f"(majority class {summary['majority_baseline']:.3f}); model: {summary['run']}",
        file=sys.stderr,
    )
    return 0


TRAINERS.add("lipreader", Trainer(add_arguments, run), help=TRAINER_HELP["lipreader"])
