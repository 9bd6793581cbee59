"""Train a context contact head on a trained Audio2Mesh model whose other weights stay frozen.

The linear contact head reads one frame of the causal decoder. ``l2t-gs train contact-head`` adds a
:class:`~l2t_gs.models.contact_context.ContactContext` (logits from the audio features of
``--context + 2`` frames on each side, summed with the linear head's) and trains it together with the
linear head, everything else frozen, by the contact loss (:func:`l2t_gs.training.losses.contact.contact_bce`:
BCE against the articulation module's contact windows, contact frames weighted by ``--pos-weight``; with
``--event-weight W``, plus W times the event-level term :func:`~l2t_gs.training.losses.contact.contact_event_bce`,
which scores each contact event by its largest logit within ``--event-widen`` frames).

Because the rest is frozen, the model runs once per clip of the split: the audio features and the
decoder's features (mean speaker style, as for an unseen voice) are cached, and the steps train on
random crops of them, a few minutes on the CPU. With ``--augment N`` each clip is also cached N more
times with its audio through a random channel
(:func:`l2t_gs.training.data.channels.apply_random_channel`: room, noise, telephone band and codecs,
gain, clipping; time-aligned, so the contact targets stay), seeded from ``--seed`` and the clip's index.
With ``--tune-encoder LR`` the head gets an audio encoder of its own (a copy of the model's,
``contact_encoder``), trained with it at peak learning rate LR on the audio of each crop (with the
encoder's context on both sides); the motion path keeps the shared encoder. Given a model whose context
head is already trained (on the shared encoder), ``--tune-encoder`` goes on from that head instead of a new
one (its shape stays: ``--context``, ``--hidden``, ``--dropout`` and ``--members`` are then the model's).
The output is a checkpoint of the whole model with ``contact_context`` set, written atomically when the
steps are done (a run takes minutes; an interrupted one starts over); calibrate it next
(``l2t-gs train contact-threshold``)::

    l2t-gs train contact-head --model runs/s4a/last.pt --data runs/human --out runs/ctx/last.pt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import output_parent, write_text_atomic
from l2t_gs.models.audio2mesh import Audio2Mesh
from l2t_gs.models.checkpoint import load_model, save_checkpoint
from l2t_gs.models.encoders import SAMPLE_RATE, align_features
from l2t_gs.training.data.datasets import load_dataset, phone_clips
from l2t_gs.training.losses.contact import contact_bce, contact_event_bce
from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS, Trainer

__all__ = ["ContactHeadConfig", "train_contact_head", "with_context_head", "with_own_encoder"]


@dataclass
class ContactHeadConfig:
    """Options of :func:`train_contact_head` (the command's flags)."""

    context: int = 3  # feature frames each side of the first convolution
    hidden: int = 32
    dropout: float = 0.3
    members: int = 1  # ensemble: heads trained side by side, each on its own loss, logits averaged
    augment: int = 0  # extra copies of each clip through a random channel
    tune_encoder: float = 0.0  # peak lr of the head's own copy of the audio encoder (0: the shared one, frozen)
    steps: int = 600
    batch: int = 32  # crops per step
    crop: int = 150  # frames per crop
    lr: float = 2e-3  # peak of the one-cycle schedule
    weight_decay: float = 1e-2
    pos_weight: float = 4.0
    event_weight: float = 0.0  # weight of the event-level (multiple-instance) term; 0: frames only
    event_widen: int = 2  # frames each side of an event where its largest logit is taken
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.context <= 30:
            raise L2TError(f"--context must be 1..30 frames, got {self.context}")
        if min(self.hidden, self.steps, self.batch, self.crop) < 1:
            raise L2TError("--hidden, --steps, --batch and --crop must be >= 1")
        if not 1 <= self.members <= 16:
            raise L2TError(f"--members must be 1..16, got {self.members}")
        if not 0 <= self.augment <= 16:
            raise L2TError(f"--augment must be 0..16, got {self.augment}")
        if not (self.tune_encoder >= 0 and math.isfinite(self.tune_encoder)):
            raise L2TError(f"--tune-encoder must be a learning rate >= 0, got {self.tune_encoder}")
        if not 0 <= self.dropout < 1:
            raise L2TError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not (self.event_weight >= 0 and math.isfinite(self.event_weight)) or not 0 <= self.event_widen <= 15:
            raise L2TError("--event-weight must be >= 0 and --event-widen 0..15 frames")
        if not (self.lr > 0 and self.pos_weight > 0 and self.weight_decay >= 0):
            raise L2TError("--lr and --pos-weight must be > 0, --weight-decay >= 0")


def with_context_head(
    src: Audio2Mesh, context: int, hidden: int, dropout: float, members: int = 1, contact_encoder: bool = False
) -> Audio2Mesh:
    """A copy of ``src`` (which has a linear contact head) with a new, zero-output context contact head
    (an ensemble of ``members`` heads; with ``contact_encoder``, reading its own copy of the encoder)."""
    if not src.config.contact_head:
        raise L2TError("the model has no contact head (contact_head = true in [model])")
    head = {"contact_context": context, "contact_hidden": hidden, "contact_dropout": dropout}
    head["contact_members"] = members
    head["contact_encoder"] = contact_encoder
    return _rebuilt(src, head, ("contact_context.", "contact_encoder."))


def with_own_encoder(src: Audio2Mesh) -> Audio2Mesh:
    """A copy of ``src`` (whose context contact head reads the shared encoder) whose head reads an encoder of
    its own, starting as a copy of the shared one: the same outputs until it is trained."""
    if not src.config.contact_context or src.config.contact_encoder:
        raise L2TError("the model needs a context contact head that reads the shared encoder")
    return _rebuilt(src, {"contact_encoder": True}, ("contact_encoder.",))


def _rebuilt(src: Audio2Mesh, changes: dict[str, Any], new: tuple[str, ...]) -> Audio2Mesh:
    """``src`` rebuilt with the config ``changes``, carrying all its weights over; only parameters under the
    ``new`` prefixes may be missing from it (they keep their fresh values), and a contact encoder starts as a
    copy of the shared encoder."""
    cfg = type(src.config).from_dict({**src.config.to_dict(), **changes})
    model = Audio2Mesh(cfg, src.subjects, src.n_verts, head=src.head, encoder=src.encoder)
    missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    if unexpected or any(not k.startswith(new) for k in missing):
        raise L2TError(f"cannot carry the weights over: missing {missing}, unexpected {unexpected}")
    if model.contact_encoder is not None and not src.config.contact_encoder:
        model.contact_encoder.load_state_dict(model.encoder.state_dict())
    return model


def _cache(
    model: Audio2Mesh, clips: Iterable[Any], augment: int = 0, seed: int = 0, keep_audio: bool = False
) -> tuple[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]], set[str]]:
    """(aligned audio features [T, k, C], decoder features [T, d], contact targets [T, 2], the audio [n]
    when ``keep_audio`` else None) per clip and per each of its ``augment`` random-channel copies, and the
    clips' subjects."""
    from l2t_gs.training.data.channels import apply_random_channel

    out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]] = []
    subjects: set[str] = set()
    got: dict[str, torch.Tensor] = {}
    hook = model.decoder.norm.register_forward_hook(lambda _m, _i, o: got.__setitem__("h", o))
    try:
        style = model.decoder.style_vector(torch.tensor([-1]))
        with torch.no_grad():
            for index, c in enumerate(clips):
                if abs(c.fps - model.fps) > 1e-6:
                    raise L2TError(f"{c.name} is {c.fps:g} fps, the model {model.fps:g} fps")
                targets = c.contact_targets()
                audio = c.audio.float()
                versions = [audio]
                rng = np.random.default_rng([seed, index])
                for _ in range(augment):
                    y, _done = apply_random_channel(audio.numpy(), int(c.audio_sr), rng)
                    versions.append(torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)))
                for a in versions:
                    feats = model.encode(a[None], c.num_frames)
                    model.decoder(feats, style, 0)
                    out.append((feats[0], got["h"][0].clone(), targets, a if keep_audio else None))
                subjects.add(c.subject)
    finally:
        hook.remove()
    return out, subjects


def _encoded_crops(model: Audio2Mesh, crops: list[tuple[Any, int, int, int]], crop: int) -> torch.Tensor:
    """Aligned features ``[B, crop, k, C]`` of the head's own encoder for crops ``(audio [n], s, e, T)``
    (frames s..e of a T-frame clip), each encoded from a window that starts on the encoder's chunk grid
    with the encoder's context on both sides (within the clip), as streaming inference encodes it."""
    enc, fps = model.contact_encoder, model.fps
    assert enc is not None
    pad = math.ceil(enc.context_s * fps) + 1
    grid = model._grid()  # windows must start on the encoder's grid to see what the whole clip sees
    span = math.ceil((crop + 2 * pad) / grid) * grid + grid  # frames per window (one size: batched)
    windows = []
    for audio, s, e, total in crops:
        lo = max(0, s - pad) // grid * grid
        hi = min(total, lo + span)
        a0 = min(round(lo * SAMPLE_RATE / fps), max(0, audio.shape[0] - enc.stride_samples))
        b0 = max(a0 + 1, min(audio.shape[0], round(hi * SAMPLE_RATE / fps)))
        windows.append((audio[a0:b0], s, e, lo, hi, a0))
    out = torch.zeros(len(windows), crop, model.config.feats_per_frame, enc.out_dim)
    by_length: dict[int, list[int]] = {}  # windows cut short by the clip's end are encoded apart: no padding
    for b, w in enumerate(windows):
        by_length.setdefault(w[0].shape[0], []).append(b)
    for rows in by_length.values():
        raw = enc(torch.stack([windows[b][0] for b in rows]))  # [R, N, C]
        for r, b in enumerate(rows):
            _seg, s, e, lo, hi, a0 = windows[b]
            shift = lo / fps - a0 / SAMPLE_RATE
            k = model.config.feats_per_frame
            f = align_features(raw[r : r + 1], enc.frame_rate, enc.offset_s, hi - lo, fps, k, shift)
            out[b, : e - s] = f[0, s - lo : e - lo]
    return out


def train_contact_head(
    model_path: str | Path,
    data: str | Path,
    out: str | Path,
    cfg: ContactHeadConfig,
    *,
    split: str = "train",
    subjects: list[str] | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the context contact head (see the module docstring); writes ``out`` and ``out``.json."""
    out = Path(out)
    if out.suffix != ".pt":
        raise L2TError(f"--out must end in .pt, got {out}")
    output_parent(out, writable=False)
    src = load_model(model_path)
    tune = cfg.tune_encoder > 0
    if src.config.contact_context:  # the second step: the trained head goes on with an encoder of its own
        if not tune or src.config.contact_encoder:
            raise L2TError(
                f"{model_path} already has a context contact head (--tune-encoder continues one that reads "
                "the shared encoder)"
            )
        c = src.config
        shape = {"context": c.contact_context, "hidden": c.contact_hidden, "dropout": c.contact_dropout}
        cfg = replace(cfg, **shape, members=c.contact_members)  # the head keeps its shape
        model = with_own_encoder(src)
        torch.manual_seed(cfg.seed)  # the training's dropout
    else:
        torch.manual_seed(cfg.seed)  # before the new head's random start, so that a seed fixes the run
        model = with_context_head(src, cfg.context, cfg.hidden, cfg.dropout, cfg.members, contact_encoder=tune)
    model.eval()
    dataset = load_dataset(data, split=split)
    cache, used = _cache(model, phone_clips(dataset, subjects, limit), cfg.augment, cfg.seed, keep_audio=tune)
    if not cache:
        raise L2TError(f"{data}: no clip of split {split!r} has phone segments to train contacts on")
    head, lin = model.contact_context, model.decoder.contact_out
    assert head is not None and lin is not None
    groups = [{"params": [*head.parameters(), *lin.parameters()], "lr": cfg.lr}]
    if model.contact_encoder is not None:
        groups.append({"params": list(model.contact_encoder.parameters()), "lr": cfg.tune_encoder})
        model.contact_encoder.train()
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [g["lr"] for g in groups], total_steps=cfg.steps)
    pw = torch.tensor([cfg.pos_weight, cfg.pos_weight])
    rng = np.random.default_rng(cfg.seed)
    k, c_dim = cache[0][0].shape[1:]
    d = cache[0][1].shape[1]
    head.train()
    losses: list[float] = []
    own_encoder = model.contact_encoder is not None  # then the head's features come from the crops' audio
    for step in range(cfg.steps):
        feats = torch.zeros(cfg.batch, cfg.crop, k, c_dim)
        h = torch.zeros(cfg.batch, cfg.crop, d)
        tg = torch.zeros(cfg.batch, cfg.crop, 2)
        valid = torch.zeros(cfg.batch, cfg.crop, dtype=torch.bool)
        crops = []
        for b, j in enumerate(rng.integers(0, len(cache), cfg.batch)):
            f, hh, t, audio = cache[int(j)]
            n = min(f.shape[0], t.shape[0])
            s = int(rng.integers(0, max(n - cfg.crop, 0) + 1))
            e = min(s + cfg.crop, n)
            h[b, : e - s], tg[b, : e - s] = hh[s:e], t[s:e]
            valid[b, : e - s] = True
            if own_encoder:
                crops.append((audio, s, e, f.shape[0]))
            else:
                feats[b, : e - s] = f[s:e]
        if own_encoder:
            feats = _encoded_crops(model, crops, cfg.crop)
        # each member on its own loss (an ensemble of independently trained heads, not one averaged head)
        base, members = lin(h), head.member_logits(feats)
        per_member = []
        for j in range(cfg.members):
            z = base + members[:, :, j]
            term = contact_bce(z, tg, valid, pw)
            if cfg.event_weight > 0:
                term = term + cfg.event_weight * contact_event_bce(z, tg, valid, cfg.event_widen)
            per_member.append(term)
        loss = torch.stack(per_member).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress and (step % 100 == 0 or step == cfg.steps - 1):
            print(f"step {step + 1}/{cfg.steps}: contact loss {loss.item():.4f}", file=sys.stderr)
    if not all(math.isfinite(x) for x in losses):
        raise L2TError("the contact loss became NaN or infinite; nothing was written")
    model.eval()
    save_checkpoint(out, model)
    report = {
        "model": str(model_path),
        "data": str(data),
        "split": split,
        "clips": len(cache) // (1 + cfg.augment),
        "cached": len(cache),  # with the random-channel copies
        "subjects": sorted(used),
        "config": asdict(cfg),
        "loss_first_100": float(np.mean(losses[:100])),
        "loss_last_100": float(np.mean(losses[-100:])),
    }
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = ContactHeadConfig()
    p.add_argument(
        "--model",
        required=True,
        metavar="RUN",
        help="trained Audio2Mesh (run folder or checkpoint) with a contact head",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="dataset with phone segments")
    p.add_argument(
        "--out", required=True, metavar="FILE.pt", help="the model with its context contact head (+ FILE.json)"
    )
    p.add_argument("--split", default="train", help="split to train on (default train)")
    p.add_argument("--subjects", nargs="+", metavar="PATTERN", help="only these subjects (fnmatch patterns)")
    p.add_argument("--limit", type=int, help="first N clips with phones of the split only")
    p.add_argument(
        "--context",
        type=int,
        default=d.context,
        help=f"feature frames each side of the first convolution ({d.context})",
    )
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"channels ({d.hidden})")
    p.add_argument("--dropout", type=float, default=d.dropout, help=f"input dropout ({d.dropout})")
    p.add_argument(
        "--members", type=int, default=d.members, help=f"heads in an ensemble, each on its own loss ({d.members})"
    )
    p.add_argument(
        "--augment",
        type=int,
        default=d.augment,
        help=f"extra copies of each clip through a random channel ({d.augment})",
    )
    p.add_argument(
        "--tune-encoder",
        type=float,
        default=d.tune_encoder,
        metavar="LR",
        help="give the head its own copy of the audio encoder, trained at this peak learning rate (0: shared, "
        "frozen); on a model with a trained context head, that head goes on with the copy",
    )
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps ({d.steps})")
    p.add_argument("--batch", type=int, default=d.batch, help=f"crops per step ({d.batch})")
    p.add_argument("--crop", type=int, default=d.crop, help=f"frames per crop ({d.crop})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate of the one-cycle schedule ({d.lr:g})")
    p.add_argument(
        "--weight-decay", type=float, default=d.weight_decay, help=f"AdamW weight decay ({d.weight_decay:g})"
    )
    p.add_argument(
        "--pos-weight", type=float, default=d.pos_weight, help=f"weight of contact frames ({d.pos_weight:g})"
    )
    p.add_argument(
        "--event-weight",
        type=float,
        default=d.event_weight,
        metavar="W",
        help="add W x the event-level loss: each contact event's largest logit near it against 1 (0: off)",
    )
    p.add_argument(
        "--event-widen",
        type=int,
        default=d.event_widen,
        metavar="N",
        help=f"frames each side of an event searched for its largest logit ({d.event_widen})",
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed ({d.seed})")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no per-step loss lines")


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ContactHeadConfig(
        context=args.context, hidden=args.hidden, dropout=args.dropout, members=args.members, augment=args.augment,
        tune_encoder=args.tune_encoder,
        steps=args.steps,
        batch=args.batch, crop=args.crop, lr=args.lr, weight_decay=args.weight_decay, pos_weight=args.pos_weight,
        event_weight=args.event_weight, event_widen=args.event_widen, seed=args.seed,
    )  # fmt: skip
    report = train_contact_head(
        args.model, args.data, args.out, cfg, split=args.split, subjects=args.subjects, limit=args.limit,
        progress=not args.no_progress,
    )  # fmt: skip
    print(
        f"trained the context contact head on {report['clips']} clips: loss {report['loss_first_100']:.4f} -> "
        f"{report['loss_last_100']:.4f}; wrote {args.out}",
        file=sys.stderr,
    )
    return 0


TRAINERS.add("contact-head", Trainer(add_arguments, run), help=TRAINER_HELP["contact-head"])
