"""Train Audio2Mesh: recipe loading, loss registry, the (optionally distributed) training loop.

Entry point: :func:`train` (the CLI ``l2t-gs train audio2mesh`` calls it). A run directory holds

- ``config.toml``: the resolved recipe (after command-line overrides);
- ``last.pt``: model + optimizer + position (epoch, batch, step), written atomically every
  ``checkpoint_every`` steps and at each epoch end; rerunning the same command resumes from it;
- ``best.pt``: the model with the lowest validation loss so far (``load_model(RUN)`` picks it);
- ``train_log.csv`` / ``val_log.csv`` (and TensorBoard events when ``tensorboard`` is installed).

Determinism: the model is initialised from ``seed``; batch order comes from a generator seeded with
``(seed, epoch)``, crops from ``(seed, epoch, batch)``, and the global RNG (dropout) is re-seeded from
``(seed, step, rank)`` before every step, so a resumed run continues exactly as an uninterrupted one.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the process group starts (NCCL on CUDA, gloo on
CPU), the model is wrapped in ``DistributedDataParallel``, each global batch of ``batch_size x
world_size`` clips is split across ranks (what ``DistributedSampler`` does, keeping length buckets and
the same number of steps on every rank), validation is sharded and reduced, and rank 0 writes files.

Losses: the ``[loss]`` table maps names registered in :data:`l2t_gs.training.losses.registry.LOSSES` to
weights (or to tables with ``weight`` and options); see ``docs/training.md``.

Command line: ``l2t-gs train audio2mesh`` (registered in :data:`l2t_gs.training.trainers.TRAINERS`).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from l2t_gs.core.device import resolve_device
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import write_text_atomic
from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
from l2t_gs.models.checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint
from l2t_gs.motion import articulation as art
from l2t_gs.training.common import (
    BaseTrainConfig,
    CsvLog,
    apply_overrides,
    lr_at,
    read_recipe,
    recipe_file,
    resolve_recipe,
    typed_table,
)
from l2t_gs.training.data.datasets import LengthBucketSampler, load_dataset
from l2t_gs.training.losses.registry import Batch, LossContext, build_losses
from l2t_gs.training.metrics import lipsync
from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS, Trainer, common_options

__all__ = [
    "DataConfig",
    "TrainConfig",
    "add_arguments",
    "dump_toml",
    "load_recipe",
    "recipe_path",
    "run",
    "train",
    "with_overrides",
]

SECTIONS = ("model", "train", "data", "loss")
#: Losses of a recipe without a ``[loss]`` table.
DEFAULT_LOSSES = {"vertex": 1.0, "velocity": 0.5}


# --------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig(BaseTrainConfig):
    """The ``[train]`` table: the common fields (:class:`~l2t_gs.training.common.BaseTrainConfig`) plus
    ``crop_s`` (seconds per training crop, 0: whole clips); ``num_workers`` and ``cache_clips`` (data
    loading); ``unit_scale`` (factor applied to positions in the losses; 0: automatic, metres ->
    millimetres); ``schedule_steps`` (length of the learning-rate schedule; 0: the run's total steps; a
    run stopped early on a longer schedule, e.g. the shared warm start of an ablation, sets it);
    ``val_every_epochs`` (validate, and update ``best.pt``, every N epochs and when the run ends);
    ``init_from`` (a trained run directory or checkpoint whose weights a new run starts from, with a fresh
    optimizer, step count and learning-rate schedule: a second training stage; its ``[model]`` config
    and vertex count must equal this run's; training subjects it knows keep their speaker style, new ones
    start at its mean style; a run that already has ``last.pt`` resumes from that instead)."""

    epochs: int = 100
    crop_s: float = 0.0
    num_workers: int = 0
    cache_clips: bool = False
    unit_scale: float = 0.0
    schedule_steps: int = 0
    val_every_epochs: int = 1
    init_from: str = ""

    def validate(self) -> TrainConfig:
        super().validate()
        if self.crop_s < 0 or self.num_workers < 0 or self.schedule_steps < 0 or self.val_every_epochs < 1:
            raise L2TError("[train]: crop_s, num_workers, schedule_steps must be >= 0 and val_every_epochs >= 1")
        return self


@dataclass
class DataConfig:
    """The ``[data]`` table: dataset kind and splits (see :func:`l2t_gs.training.data.datasets.load_dataset`);
    ``n_verts``/``frame_tolerance``: overrides for non-standard data (0/-1: none); ``val_split = ""``
    disables validation. ``repeat``: subject pattern (shell-style, e.g. ``"asterisk-*"``) -> how many
    times each epoch holds the clips of matching training subjects (a clip matched by several patterns
    takes the largest), to weight one part of a merged corpus (``[data.repeat]`` table)."""

    kind: str = "auto"
    train_split: str = "train"
    val_split: str = "val"
    n_verts: int = 0
    frame_tolerance: int = -1
    repeat: dict[str, int] = field(default_factory=dict)

    def repeats(self, subjects: Sequence[str]) -> list[int]:
        """Per clip (``subjects``: each training clip's subject) how many times an epoch holds it."""
        for pattern, times in self.repeat.items():
            if times < 1:
                raise L2TError(f"[data.repeat] {pattern!r}: the count must be >= 1, got {times}")
            if not any(fnmatch.fnmatchcase(s, pattern) for s in subjects):
                raise L2TError(f"[data.repeat] {pattern!r} matches no training subject")
        return [max([t for p, t in self.repeat.items() if fnmatch.fnmatchcase(s, p)], default=1) for s in subjects]


def recipe_path(spec: str | os.PathLike | None) -> Path | None:
    """A recipe file: a path, or the name of a packaged recipe (``vocaset``, ``biwi``, ``corpus``)."""
    return recipe_file(spec, "training recipe")


def load_recipe(spec: str | os.PathLike | None) -> dict[str, dict[str, Any]]:
    """Read a recipe (``None``: all defaults) into ``{"model": {}, "train": {}, "data": {}, "loss": {}}`` tables."""
    return read_recipe(recipe_path(spec), SECTIONS)


def with_overrides(
    recipe: dict[str, dict[str, Any]],
    *,
    encoder: str | None = None,
    encoder_path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``recipe`` with the command line's ``--encoder``, ``--encoder-path`` and ``--set KEY=VALUE`` applied
    (in that order; see :func:`l2t_gs.training.common.apply_overrides`), and the overrides as
    ``"section.field=value"`` strings (for the run's ``config.toml`` header)."""
    from l2t_gs.models.encoders import ENCODERS
    from l2t_gs.training.losses.registry import LOSSES

    out = {s: dict(t) for s, t in recipe.items()}
    done: list[str] = []
    if encoder is not None:
        if encoder not in ENCODERS:
            raise L2TError(f"--encoder must be one of {', '.join(ENCODERS.choices())}, got {encoder!r}")
        out["model"]["encoder"] = encoder
        done.append(f"model.encoder={encoder}")
    if encoder_path is not None:
        path = Path(encoder_path).expanduser()
        if not path.is_dir():
            raise L2TError(f"--encoder-path is not a folder (a local Hugging Face model): {encoder_path}")
        out["model"]["encoder_path"] = str(path.resolve())
        done.append(f"model.encoder_path={path.resolve()}")
    if overrides:
        schema = {"model": Audio2MeshConfig, "train": TrainConfig, "data": DataConfig}
        out = apply_overrides(out, overrides, schema, loss_names=LOSSES.choices())
        done.extend(str(o) for o in overrides)
    return out, done


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for recipes (tables of scalars, lists and sub-tables; ``None`` is skipped)."""
    lines, subs = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            subs.append((k, v))
        elif v is not None:
            key = k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)  # e.g. "asterisk-*" needs quotes
            lines.append(f"{key} = {_toml_value(v)}")
    text = (f"[{prefix}]\n" if prefix and (lines or not subs) else "") + "".join(ln + "\n" for ln in lines)
    for k, v in subs:
        text += ("\n" if text else "") + dump_toml(v, f"{prefix}.{k}" if prefix else k)
    return text


# --------------------------------------------------------------------------- data
class _Cached(torch.utils.data.Dataset):
    def __init__(self, ds: Any) -> None:
        self.ds, self.cache = ds, {}

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Any:
        if i not in self.cache:
            self.cache[i] = self.ds[i]
        return self.cache[i]


def _make_batch(
    clips: Sequence[Any], styles: dict[str, int], crop: int, gen: torch.Generator, contacts: bool = False
) -> Batch:
    """Random crops of at most ``crop`` frames (0: whole clips), zero-padded into a :class:`Batch`
    (``contacts``: with the clips' contact targets from their phones)."""
    sr = clips[0].audio_sr
    fps = float(clips[0].fps)
    spf = sr / fps
    parts = []
    for c in clips:
        t = c.num_frames
        length = min(t, crop) if crop else t
        start = int(torch.randint(0, t - length + 1, (1,), generator=gen)) if length < t else 0
        a0 = round(start * spf)
        n = round(length * spf)
        audio = c.audio[a0 : a0 + n]
        parts.append((c, start, length, audio))
    b = len(parts)
    t_max = max(p[2] for p in parts)
    n_max = max(round(t_max * spf), max(p[3].shape[0] for p in parts))
    v = parts[0][0].vertices.shape[1]
    audio = torch.zeros(b, n_max)
    verts = torch.zeros(b, t_max, v, 3)
    mask = torch.zeros(b, t_max, dtype=torch.bool)
    for i, (c, start, length, a) in enumerate(parts):
        audio[i, : a.shape[0]] = a
        verts[i, :length] = c.vertices[start : start + length]
        verts[i, length:] = c.template  # padding holds the template (masked out of the losses anyway)
        mask[i, :length] = True
    return Batch(
        audio=audio,
        vertices=verts,
        mask=mask,
        templates=torch.stack([p[0].template for p in parts]),
        style=torch.tensor([styles.get(p[0].subject, -1) for p in parts], dtype=torch.long),
        names=[p[0].name for p in parts],
        subjects=[p[0].subject for p in parts],
        starts=[p[1] for p in parts],
        fps=fps,
        **(_contact_batch(parts, t_max) if contacts else {}),
    )


def _contact_batch(parts: list[tuple[Any, int, int, Tensor]], t_max: int) -> dict[str, Tensor]:
    """Contact targets [B, T, 2] of the crops (zeros for clips without phones), which clips have them, and
    the frames of their short bilabials [B, T] (:func:`short_bilabial_frames`)."""
    targets = torch.zeros(len(parts), t_max, 2)
    short = torch.zeros(len(parts), t_max)
    valid = torch.zeros(len(parts), dtype=torch.bool)
    for i, (c, start, length, _) in enumerate(parts):
        tg = c.contact_targets()
        if tg is not None:
            targets[i, :length] = tg[start : start + length]
            frames = short_bilabial_frames(c.phones, c.fps, c.num_frames)
            short[i, :length] = torch.from_numpy(frames[start : start + length])
            valid[i] = True
    return {"contacts": targets, "contact_valid": valid, "contact_short": short}


def short_bilabial_frames(phones: Any, fps: float, n_frames: int, max_s: float = lipsync.LONG_BILABIAL_S) -> np.ndarray:
    """[T] float32: 1 on the full-closure frames (the plateau of the bilabial contact window that
    :func:`l2t_gs.motion.contacts.contact_targets` puts there) of each bilabial aligned shorter than
    ``max_s`` seconds, 0 elsewhere."""
    n = int(n_frames)
    seg = art.prepare_segments(phones, n / fps)
    idx = [i for i, p in enumerate(seg.phones) if p in art.BILABIAL]  # contact_windows' order
    win = art.contact_windows(seg, art.BILABIAL, art.MIN_CLOSURE_S)[seg.duration[idx] < max_s]
    return (art.window_values(np.arange(n) / float(fps), win) >= 1.0).astype(np.float32)


def _epoch_batches(
    lengths: list[int],
    batch_size: int,
    world: int,
    rank: int,
    seed: int,
    epoch: int,
    repeats: Sequence[int] | None = None,
) -> list[list[int]]:
    """This rank's batches for ``epoch``: global batches of ``batch_size * world`` clips of similar length
    (seeded shuffle), split evenly across ranks (short batches wrap around to keep ranks in step).
    ``repeats``: per clip, how many times the epoch holds it (default once)."""

    index = list(range(len(lengths))) if repeats is None else [i for i, r in enumerate(repeats) for _ in range(r)]
    sampler = LengthBucketSampler([lengths[i] for i in index], batch_size * world, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    n = len(index)
    out = []
    for k, glob in enumerate(sampler):
        if len(glob) < world:  # too few clips for every rank: borrow from the start of the epoch order
            glob = glob + [(glob[0] + j + k) % n for j in range(1, world - len(glob) + 1)]
        per = math.ceil(len(glob) / world)
        mine = glob[rank * per : (rank + 1) * per] or glob[-1:]
        out.append([index[i] for i in mine])
    return out


# --------------------------------------------------------------------------- distributed helpers
@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _init_dist(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
        started = True
    return _Dist(world, rank, local, started)


def _rank_device(device: torch.device, d: _Dist) -> torch.device:
    """Under ``torchrun`` each rank takes the GPU of its local rank."""
    if device.type != "cuda":
        return device
    torch.cuda.set_device(d.local_rank)
    return torch.device("cuda", d.local_rank)


# --------------------------------------------------------------------------- logs
def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard not installed
        return None
    return SummaryWriter(str(out / "tb"))


# --------------------------------------------------------------------------- training
def _auto_unit_scale(templates: list[Tensor]) -> float:
    """1000 for meshes in metres (head about 0.2 m across), 1 for millimetres."""
    diag = sorted(float((t.max(0).values - t.min(0).values).norm()) for t in templates)
    return 1.0 if diag[len(diag) // 2] > 10.0 else 1000.0


_UNCOMPARED = (
    "encoder_path",
    "encoder_normalize",
    "extra",
    "contact_threshold",
    "contact_gate_mm",
    "contact_hold_s",
    "contact_peak_s",
)  # may move / are resolved when the model loads / are calibrated after training


def _comparable(model_config: dict[str, Any]) -> dict[str, Any]:
    full = Audio2MeshConfig().to_dict() | dict(model_config)  # keys a checkpoint lacks take their defaults
    return {k: v for k, v in full.items() if k not in _UNCOMPARED}


def _model_table_config(table: dict[str, Any], fps: float, scale: float) -> dict[str, Any]:
    """The model config a ``[model]`` table gives for data at ``fps`` with loss unit ``scale``."""
    table = dict(table)
    if "fps" in table and abs(float(table["fps"]) - fps) > 1e-6:
        raise L2TError(f"[model] fps = {table['fps']} but the dataset is {fps:g} fps")
    table["fps"] = float(fps)
    table.setdefault("offset_scale", 1.0 / scale)  # the network predicts offsets in loss units
    return Audio2MeshConfig.from_dict(table, where="[model]").to_dict()


def train(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: str | os.PathLike | dict[str, dict[str, Any]] | None = None,
    *,
    epochs: int | None = None,
    max_steps: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
    progress: bool | None = None,
    encoder: str | None = None,
    encoder_path: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Train (or resume) an Audio2Mesh run in ``out`` on the dataset at ``data``.

    ``config``: a recipe path/name or an already loaded recipe dict; ``epochs``/``max_steps``/``device``/
    ``seed`` override the recipe, ``encoder``/``encoder_path`` its ``[model]`` encoder, and ``overrides``
    (``"section.field=value"`` strings, :func:`with_overrides`) any recipe field; the run's ``config.toml``
    records the result and lists the overrides. ``callbacks`` are called after every optimizer step with a
    dict (step, epoch, losses); an exception raised there stops training like a crash (used to test
    resuming). Returns a summary dict (steps, epochs, best validation loss, paths).
    """
    recipe = config if isinstance(config, dict) else load_recipe(config)
    recipe = resolve_recipe(recipe, SECTIONS, epochs=epochs, max_steps=max_steps, device=device, seed=seed)
    recipe["loss"] = recipe["loss"] or dict(DEFAULT_LOSSES)
    recipe, applied = with_overrides(recipe, encoder=encoder, encoder_path=encoder_path, overrides=overrides)
    tcfg = typed_table(TrainConfig, recipe["train"], "[train]").validate()
    dcfg = typed_table(DataConfig, recipe["data"], "[data]")
    device = resolve_device(tcfg.device)
    d = _init_dist(device.type)
    try:
        device = _rank_device(device, d)
        trainer = _Trainer(Path(data), Path(out), recipe, tcfg, dcfg, device, d, callbacks, progress)
        trainer.overrides = applied
        return trainer.run()
    finally:
        if d.started_here and dist.is_initialized():
            dist.destroy_process_group()


class _Trainer:
    def __init__(
        self,
        data: Path,
        out: Path,
        recipe: dict[str, dict[str, Any]],
        tcfg: TrainConfig,
        dcfg: DataConfig,
        device: torch.device,
        d: _Dist,
        callbacks: Sequence[Callable[[dict[str, Any]], None]],
        progress: bool | None,
    ) -> None:
        self.data, self.out, self.recipe, self.cfg, self.dcfg, self.d = data, out, recipe, tcfg, dcfg, d
        self.callbacks, self.progress = callbacks, progress
        self.overrides: list[str] = []  # command-line overrides, echoed in config.toml
        self.device = device
        if tcfg.threads:
            torch.set_num_threads(tcfg.threads)

    # ------------------------------------------------------------------ setup
    def _load_data(self) -> None:

        kw: dict[str, Any] = {"kind": self.dcfg.kind}
        if self.dcfg.n_verts:
            kw["n_verts"] = self.dcfg.n_verts
        if self.dcfg.frame_tolerance >= 0:
            kw["frame_tolerance"] = self.dcfg.frame_tolerance
        self.train_ds = load_dataset(self.data, split=self.dcfg.train_split, **kw)
        self.repeats = self.dcfg.repeats(self.train_ds.clip_subjects()) if self.dcfg.repeat else None
        if len(self.train_ds) == 0:
            raise L2TError(f"dataset {self.data} has no clips in split {self.dcfg.train_split!r}")
        self.val_ds = None
        vs = self.dcfg.val_split
        if vs and vs in self.train_ds.spec.split_names():
            try:
                self.val_ds = load_dataset(self.data, split=vs, **kw)
            except L2TError as exc:
                if "has no clips" not in str(exc):
                    raise
        if self.val_ds is None and vs:
            self._say(f"note: no validation clips (split {vs!r}); best.pt follows the training loss")
        self.styles_list = list(self.train_ds.spec.train_subjects or self.train_ds.subjects)
        if self.cfg.cache_clips and self.cfg.num_workers == 0:
            self.train_src: Any = _Cached(self.train_ds)
            self.val_src: Any = _Cached(self.val_ds) if self.val_ds is not None else None
        else:
            self.train_src, self.val_src = self.train_ds, self.val_ds

    def _build_model(self, resume: dict[str, Any] | None) -> None:
        n_verts = self.train_ds.n_verts
        where = f"{self.out / 'last.pt'}"
        if resume is not None:
            self.model = model_from_checkpoint(resume, where=where)
            if self.model.n_verts != n_verts:
                raise L2TError(
                    f"{where} predicts {self.model.n_verts} vertices but dataset {self.data} has {n_verts}: "
                    "wrong topology for this run (use a new --out)"
                )
            if abs(self.model.fps - self.train_ds.fps) > 1e-6:
                raise L2TError(
                    f"{where} was trained at {self.model.fps:g} fps, dataset {self.data} is {self.train_ds.fps:g} fps"
                )
        elif self.cfg.init_from:
            self.model = self._initial_weights(n_verts)
        else:
            mcfg = Audio2MeshConfig.from_dict(
                _model_table_config(self.recipe["model"], self.train_ds.fps, self.scale), where="[model]"
            )
            torch.manual_seed(self.cfg.seed)
            self.model = Audio2Mesh(mcfg, self.styles_list, n_verts)
        self.model.to(self.device)
        self.styles = {s: i for i, s in enumerate(self.model.subjects)}
        self.ddp: Any = self.model
        if self.d.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.losses = build_losses(self.recipe["loss"], self.model, self.device)

    def _model_config_diff(self, stored: dict[str, Any]) -> list[str]:
        """The ``[model]`` fields in which a checkpoint's stored config differs from this run's recipe."""
        wanted = _comparable(_model_table_config(self.recipe["model"], self.train_ds.fps, self.scale))
        have = _comparable(dict(stored))
        return sorted(k for k in wanted.keys() | have.keys() if have.get(k) != wanted.get(k))

    def _initial_weights(self, n_verts: int) -> Audio2Mesh:
        """The model of ``[train] init_from`` (a run directory's ``last.pt`` or a checkpoint file), checked
        against this run's ``[model]`` table and vertex count, with this run's speaker styles."""
        src = Path(self.cfg.init_from).expanduser()
        path = src / "last.pt" if src.is_dir() else src
        if not path.is_file():
            raise L2TError(f"[train] init_from: {src} is neither a checkpoint nor a run directory with last.pt")
        ckpt = read_checkpoint(path)
        diff = self._model_config_diff(ckpt["config"])
        if diff:
            raise L2TError(f"[train] init_from: {path} has a different [model] config ({', '.join(diff)})")
        model = model_from_checkpoint(ckpt, where=str(path))
        if model.n_verts != n_verts:
            raise L2TError(f"[train] init_from: {path} predicts {model.n_verts} vertices, the dataset has {n_verts}")
        if list(model.subjects) != list(self.styles_list):
            model = self._restyled(model)
        self._say(f"[train] starting from the weights of {path}")
        return model

    def _restyled(self, src: Audio2Mesh) -> Audio2Mesh:
        """``src`` with this run's speaker styles: a subject ``src`` was trained on keeps its style row, a
        new one starts at the mean of ``src``'s styles (what ``src`` uses for unseen speakers); every other
        weight is ``src``'s."""
        # the source's own encoder module (a wav2vec2/HuBERT one is not rebuilt from a path)
        model = Audio2Mesh(src.config, self.styles_list, src.n_verts, head=src.head, encoder=src.encoder)
        state = src.state_dict()
        old = state["decoder.style.weight"]  # [S_src, d]
        rows = {s: i for i, s in enumerate(src.subjects)}
        table = old.mean(0, keepdim=True).repeat(len(self.styles_list), 1)
        kept = [(i, rows[s]) for i, s in enumerate(self.styles_list) if s in rows]
        if kept:
            dst, srcrow = zip(*kept, strict=True)
            table[list(dst)] = old[list(srcrow)]
        state["decoder.style.weight"] = table
        model.load_state_dict(state)
        self._say(
            f"[train] init_from: {len(kept)} of {len(self.styles_list)} training subjects keep their style; "
            f"{len(self.styles_list) - len(kept)} new ones start at the mean style"
        )
        return model

    # ------------------------------------------------------------------ helpers
    def _say(self, msg: str) -> None:
        if self.d.main:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def _save(self, name: str, state: dict[str, Any]) -> None:
        if self.d.main:
            save_checkpoint(self.out / name, self.model, train=state)
        self.d.barrier()

    def _state(self, epoch: int, batch: int, with_optimizer: bool = True) -> dict[str, Any]:
        st = {
            "step": self.step,
            "epoch": epoch,
            "batch": batch,
            "best_val": self.best_val,
            "world_size": self.d.world,
            "unit_scale": self.scale,
            "data": str(self.data),
            "complete": False,
        }
        if with_optimizer:
            st["optimizer"] = self.opt.state_dict()
        return st

    def _forward_losses(self, batch: Batch, step: int) -> tuple[Tensor, dict[str, float]]:
        res = self.ddp(batch.audio, batch.vertices.shape[1], batch.style, batch.templates, target=batch.vertices)
        ctx = LossContext(
            pred=res["vertices"] * self.scale,
            target=batch.vertices * self.scale,
            raw=res["raw"],
            batch=batch,
            model=self.model,
            scale=self.scale,
            step=step,
            contact_logits=res.get("contact_logits"),
        )
        total = res["raw"].new_zeros(())
        parts = {}
        for name, (w, fn) in self.losses.items():
            val = fn(ctx)
            total = total + w * val
            parts[name] = float(val.detach())
        return total, parts

    def _loader(self, src: Any, batches: list[list[int]]) -> Iterator[list[Any]]:
        if not batches:
            return iter(())
        loader = torch.utils.data.DataLoader(
            src,
            batch_sampler=batches,
            collate_fn=list,
            num_workers=self.cfg.num_workers,
            persistent_workers=False,
        )
        return iter(loader)

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        """Losses and mean vertex error (in scaled units, mm for metres) over the whole validation split."""
        src = self.val_src if self.val_ds is not None else self.train_src
        n = len(src)
        mine = [[i] for i in range(self.d.rank, n, self.d.world)]
        self.model.eval()
        sums = torch.zeros(len(self.losses) + 2, dtype=torch.float64)
        gen = torch.Generator().manual_seed(0)
        for clips in self._loader(src, mine):
            batch = _make_batch(clips, self.styles, 0, gen, "contact" in self.losses).to(self.device)
            res = self.model(batch.audio, batch.vertices.shape[1], batch.style, batch.templates, target=batch.vertices)
            ctx = LossContext(
                res["vertices"] * self.scale, batch.vertices * self.scale, res["raw"], batch, self.model, self.scale, -1
            )
            ctx.contact_logits = res.get("contact_logits")
            vals = [float(fn(ctx)) for _, fn in self.losses.values()]
            total = sum(w * v for (w, _), v in zip(self.losses.values(), vals, strict=True))
            err = float((ctx.pred - ctx.target).norm(dim=-1).mean())
            sums += torch.tensor([total, *vals, err], dtype=torch.float64)
        self.model.train()
        count = torch.tensor([len(mine)], dtype=torch.float64)
        if self.d.world > 1:
            stacked = torch.cat([sums, count]).to(self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(stacked)
            sums, count = stacked[:-1].cpu(), stacked[-1:].cpu()
        avg = (sums / count.clamp_min(1)).tolist()
        out = {"val_loss": avg[0]}
        out.update({f"val_{k}": v for k, v in zip(self.losses, avg[1:-1], strict=True)})
        out["val_err"] = avg[-1]
        return out

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.d
        if d.main:
            if self.out.exists() and not self.out.is_dir():
                raise L2TError(f"--out {self.out} exists and is not a directory")
            self.out.mkdir(parents=True, exist_ok=True)
        d.barrier()
        self._load_data()
        resume = None
        last = self.out / "last.pt"
        if last.is_file():
            resume = read_checkpoint(last)
        st = (resume or {}).get("train") or {}
        self.scale = float(
            st.get("unit_scale")
            or self.cfg.unit_scale
            or _auto_unit_scale([self.train_ds.template(s) for s in self.train_ds.subjects])
        )
        if resume is not None:
            diff = self._model_config_diff(resume["config"])
            if diff:
                raise L2TError(
                    f"{self.out} was started with a different [model] config ({', '.join(diff)}); "
                    "use the same --config (or RUN/config.toml) to resume, or a new --out"
                )
        self._build_model(resume)
        self.step = int(st.get("step", 0))
        start_epoch, start_batch = int(st.get("epoch", 0)), int(st.get("batch", 0))
        self.best_val = float(st.get("best_val", math.inf))
        if st and int(st.get("world_size", d.world)) != d.world and start_batch:
            self._say(f"note: world size changed ({st.get('world_size')} -> {d.world}); restarting epoch {start_epoch}")
            start_batch = 0
        if "optimizer" in st:
            self.opt.load_state_dict(st["optimizer"])
        resolved = {s: dict(self.recipe[s]) for s in SECTIONS}
        resolved["model"] = {k: v for k, v in self.model.config.to_dict().items() if k != "extra"}
        resolved["train"] = dataclasses.asdict(cfg) | {"unit_scale": self.scale}
        resolved["data"] = dataclasses.asdict(self.dcfg)
        if d.main:
            echo = "".join(f"#   {o}\n" for o in self.overrides)
            echo = f"# command-line overrides (--encoder, --encoder-path, --set):\n{echo}" if echo else ""
            write_text_atomic(
                self.out / "config.toml",
                "# l2t-gs train audio2mesh: resolved recipe\n" + echo + "\n" + dump_toml(resolved),
            )

        lengths = [min(n, round(cfg.crop_s * self.train_ds.fps)) if cfg.crop_s else n for n in self.train_ds.lengths()]
        crop = round(cfg.crop_s * self.train_ds.fps) if cfg.crop_s else 0
        repeats = self.repeats
        steps_per_epoch = len(_epoch_batches(lengths, cfg.batch_size, d.world, d.rank, cfg.seed, 0, repeats))
        total = cfg.max_steps or steps_per_epoch * cfg.epochs
        if self.step >= total or start_epoch >= cfg.epochs:
            self._say(
                f"{self.out}: already trained ({self.step} steps, {start_epoch} epochs); "
                "raise --epochs or --max-steps to continue"
            )
            return self._summary(start_epoch)
        if resume is not None:
            self._say(f"resuming {self.out} at epoch {start_epoch + 1}, step {self.step}")
        loss_names = list(self.losses)
        tlog = vlog = tb = None
        if d.main:
            tlog = CsvLog(
                self.out / "train_log.csv",
                ["step", "epoch", "lr", "loss", *loss_names, "time_s"],
                self.step if resume else -1,
            )
            vlog = CsvLog(
                self.out / "val_log.csv",
                ["step", "epoch", "val_loss", *[f"val_{k}" for k in loss_names], "val_err"],
                self.step if resume else -1,
            )
            tb = _tensorboard(self.out)
        from tqdm import tqdm

        show = self.progress if self.progress is not None else None
        self.model.train()
        t0 = time.time()
        epoch = start_epoch
        val: dict[str, float] = {}
        try:
            for epoch in range(start_epoch, cfg.epochs):
                if self.step >= total:
                    break
                batches = _epoch_batches(lengths, cfg.batch_size, d.world, d.rank, cfg.seed, epoch, repeats)
                first = start_batch if epoch == start_epoch else 0
                bar = tqdm(
                    total=len(batches),
                    initial=first,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    unit="step",
                    disable=(not d.main) or (show is False) or (show is None and not sys.stderr.isatty()),
                    file=sys.stderr,
                    leave=False,
                )
                position = (epoch + 1, 0)  # where a resumed run continues after this epoch
                for bi, clips in enumerate(self._loader(self.train_src, batches[first:]), start=first):
                    info = self._train_step(clips, crop, epoch, bi, total)
                    bar.update(1)
                    bar.set_postfix(loss=f"{info['loss']:.4g}")
                    if d.main and (self.step % cfg.log_every == 0 or bi == len(batches) - 1):
                        tlog.write(info | {"time_s": time.time() - t0})
                        if tb is not None:
                            for k, v in info.items():
                                if k not in ("step", "epoch"):
                                    tb.add_scalar(f"train/{k}", v, self.step)
                    for cb in self.callbacks:
                        cb(info)
                    more = bi + 1 < len(batches)
                    if self.step >= total:
                        position = (epoch, bi + 1) if more else (epoch + 1, 0)
                        break
                    if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and more:
                        self._save("last.pt", self._state(epoch, bi + 1))
                bar.close()
                finished = self.step >= total or position[0] >= cfg.epochs
                if (epoch + 1) % cfg.val_every_epochs and not finished:
                    self._save("last.pt", self._state(*position))
                    epoch = position[0] - 1
                    continue
                val = self._validate()
                self._say(
                    f"epoch {epoch + 1}/{cfg.epochs} step {self.step}: "
                    + " ".join(f"{k} {v:.4g}" for k, v in val.items())
                )
                if d.main:
                    vlog.write({"step": self.step, "epoch": epoch + 1, **val})
                    if tb is not None:
                        for k, v in val.items():
                            tb.add_scalar(f"val/{k}", v, self.step)
                if val["val_loss"] < self.best_val:
                    self.best_val = val["val_loss"]
                    self._save("best.pt", self._state(*position, with_optimizer=False) | val)
                self._save("last.pt", self._state(*position))
                epoch = position[0] - 1
        finally:
            if tb is not None:
                tb.close()
        return self._summary(epoch + 1) | val

    def _train_step(self, clips: list[Any], crop: int, epoch: int, bi: int, total: int) -> dict[str, Any]:
        cfg = self.cfg
        gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + epoch) * 1_000_003 + bi * 97 + self.d.rank)
        batch = _make_batch(clips, self.styles, crop, gen, "contact" in self.losses).to(self.device)
        torch.manual_seed(cfg.seed * 7_919 + self.step * 131 + self.d.rank)  # dropout: a function of the step
        lr = lr_at(cfg, self.step, cfg.schedule_steps or total)
        for g in self.opt.param_groups:
            g["lr"] = lr
        loss, parts = self._forward_losses(batch, self.step)
        if not math.isfinite(float(loss.detach())):
            raise L2TError(
                f"training diverged: loss is {float(loss.detach())} at step {self.step} (lower the learning rate?)"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.step += 1
        return {"step": self.step, "epoch": epoch + 1, "lr": lr, "loss": float(loss.detach()), **parts}

    def _summary(self, epochs_done: int) -> dict[str, Any]:
        return {
            "rank": self.d.rank,
            "steps": self.step,
            "epochs": epochs_done,
            "best_val": self.best_val,
            "run": str(self.out),
            "last": str(self.out / "last.pt"),
            "best": str(self.out / "best.pt"),
        }


# --------------------------------------------------------------------------- command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``l2t-gs train audio2mesh`` (the trainers' common options)."""
    from l2t_gs.models.encoders import ENCODERS

    common_options(p, "recipe: a .toml file or a packaged name (vocaset, biwi, corpus); default: built-in defaults")
    p.add_argument(
        "--encoder", choices=ENCODERS.choices(), help="audio encoder (overrides the recipe's [model] encoder)"
    )
    p.add_argument(
        "--encoder-path",
        metavar="DIR",
        help="local Hugging Face model folder of a wav2vec2/hubert encoder (overrides the recipe's encoder_path)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a recipe field, e.g. train.lr=3e-4, model.d_model=128, loss.velocity=0.2 (repeatable; "
        "a bare field name works when one section has it); saved in RUN/config.toml",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``l2t-gs train audio2mesh`` from parsed arguments (rank 0 prints the summary)."""
    summary = train(
        args.data,
        args.out,
        args.config,
        epochs=args.epochs,
        max_steps=args.max_steps,
        device=args.device,
        seed=args.seed,
        progress=False if args.no_progress else None,
        encoder=getattr(args, "encoder", None),
        encoder_path=getattr(args, "encoder_path", None),
        overrides=getattr(args, "overrides", None) or (),
    )
    if summary["rank"] == 0:
        best = summary.get("best_val")
        shown = f"{best:.4g}" if isinstance(best, float) and best != float("inf") else "n/a"
        print(
            f"trained {summary['steps']} steps; best validation loss {shown}; model: {summary['run']}", file=sys.stderr
        )
    return 0


TRAINERS.add("audio2mesh", Trainer(add_arguments, run), help=TRAINER_HELP["audio2mesh"])
