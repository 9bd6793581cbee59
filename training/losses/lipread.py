"""Lip-reading loss (Learn2Talk's teacher constraint): a frozen lip reader compares mouth crops.

The student's predicted meshes are rendered through a Gaussian avatar into grayscale mouth crops
(:class:`~l2t_gs.training.data.mouth.MouthRenderer`, differentiable); the teacher's crops come from a 2D
talking-face video (:func:`~l2t_gs.training.data.teacher_video.mouth_crops_from_video`) or from rendering
ground-truth motion with the same renderer. Both go through a frozen lip reader
(:class:`~l2t_gs.training.models.lipreader.LipReader`) and the loss is the distance of their features over
random windows of the clips:

- ``"l2"`` (default): mean squared feature difference;
- ``"cosine"``: mean of ``1 - cos`` between the per-frame feature vectors.

Rendering is the cost (one 12-frame window at 48 x 48 takes about 3 s forward + backward on 2 CPU cores,
student and teacher renders included), so each call scores
``windows`` random windows of ``window`` motion frames. Crops are resampled in time to the lip
reader's frame rate when it differs from the motion's.

Recipe (registered as ``lipread`` in :data:`~l2t_gs.training.losses.registry.LOSSES`)::

    [loss.lipread]
    weight = 0.1
    lipreader = "runs/lipreader"   # checkpoint, run directory, or "module:factory" (docs/lipreader.md)
    avatar = "default"             # avatar rendering the crops (name or folder)
    teacher = "gt"                 # "gt": render the ground-truth motion; or a folder of <clip>.npz teacher crops
    window = 12                    # motion frames per window
    windows = 2                    # windows per step (over the batch)
    distance = "l2"                # or "cosine"
    start_step = 0                 # 0 before this optimizer step
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2t_gs.errors import L2TError
from l2t_gs.gaussians import load_avatar
from l2t_gs.training.data.mouth import MouthRenderer
from l2t_gs.training.data.teacher_video import load_teacher_crops
from l2t_gs.training.losses.registry import LOSSES
from l2t_gs.training.models.lipreader import crop_spec_of, load_lipreader

__all__ = ["DISTANCES", "LipReadLoss", "lipread_loss_factory", "resample_time"]

DISTANCES = ("l2", "cosine")


def resample_time(crops: Tensor, src_fps: float, dst_fps: float) -> Tensor:
    """Linear resampling along time of ``crops [B, T, ...]`` from ``src_fps`` to ``dst_fps`` (differentiable).

    Output frame k is centred at ``(k + 0.5) / dst_fps`` seconds, covering the input's span.
    """
    if abs(src_fps - dst_fps) < 1e-6:
        return crops
    t = crops.shape[1]
    n = max(1, int(round(t * dst_fps / src_fps)))
    pos = ((torch.arange(n, dtype=torch.float64) + 0.5) * src_fps / dst_fps - 0.5).clamp(0, t - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=t - 1)
    w = (pos - lo).to(crops.dtype).to(crops.device).view(1, n, *([1] * (crops.dim() - 2)))
    return (1 - w) * crops[:, lo.to(crops.device)] + w * crops[:, hi.to(crops.device)]


class LipReadLoss(nn.Module):
    """Feature distance between the student's and the teacher's mouth crops under a frozen lip reader.

    Args:
        lipreader: a :class:`~l2t_gs.training.models.lipreader.LipReader`, or anything :func:`load_lipreader` takes.
        avatar: the :class:`~l2t_gs.gaussians.GaussianAvatar` the crops are rendered with.
        window: motion frames per scored window (shorter clips: the whole clip).
        windows: windows scored per call, spread over the batch at random.
        distance: ``"l2"`` or ``"cosine"``.
        backend: rasterizer backend (``"torch-pure"``: differentiable on CPU and CUDA).
        chunk_frames: frames placed at once by the renderer.
        seed: seeds the window sampler.
    """

    def __init__(
        self,
        lipreader: Any,
        avatar: Any,
        *,
        window: int = 12,
        windows: int = 2,
        distance: str = "l2",
        backend: str = "torch-pure",
        chunk_frames: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise L2TError(f"lip-read loss distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
        for name, v in (("window", window), ("windows", windows)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise L2TError(f"lip-read loss {name} must be an integer >= 1, got {v!r}")
        self.reader = load_lipreader(lipreader)
        self.renderer = MouthRenderer(avatar, crop_spec_of(self.reader), backend=backend, chunk_frames=chunk_frames)
        self.window, self.windows, self.distance = window, windows, distance
        self.generator = torch.Generator().manual_seed(seed)

    def train(self, mode: bool = True) -> LipReadLoss:  # the lip reader stays frozen in eval mode
        super().train(mode)
        if isinstance(self.reader, nn.Module):
            self.reader.eval()
        return self

    def sample_windows(self, lengths: list[int]) -> list[tuple[int, int, int]]:
        """``windows`` random ``(batch item, start frame, length)`` over items with ``lengths [B]`` valid frames."""
        items = [i for i, n in enumerate(lengths) if n > 0]
        if not items:
            return []
        out = []
        for _ in range(self.windows):
            b = items[int(torch.randint(len(items), (1,), generator=self.generator))]
            n = min(self.window, lengths[b])
            start = int(torch.randint(lengths[b] - n + 1, (1,), generator=self.generator))
            out.append((b, start, n))
        return out

    def features(self, crops: Tensor, fps: float) -> Tensor:
        """Lip reader features ``[B, T', D]`` of crops ``[B, T, 1, H, W]`` at ``fps``."""
        return self.reader.features(resample_time(crops, fps, float(self.reader.fps)))

    def forward(
        self,
        vertices: Tensor,
        *,
        fps: float,
        teacher_vertices: Tensor | None = None,
        teacher_crops: Tensor | None = None,
        templates: Tensor | None = None,
        mask: Tensor | None = None,
        windows: list[tuple[int, int, int]] | None = None,
    ) -> Tensor:
        """The loss over random windows (scalar).

        Args:
            vertices: student meshes ``[B, T, V, 3]`` (or ``[T, V, 3]``), differentiable.
            fps: their frame rate.
            teacher_vertices: teacher meshes like ``vertices`` (rendered without gradient), or
            teacher_crops: teacher crops ``[B, T', 1, H, W]`` in 0..1 at ``fps``, frame 0 aligned with the
                motion's (frames past ``T'`` are not scored).
            templates: neutral meshes framing the crops, ``[B, V, 3]`` or ``[V, 3]`` (default: the avatar's).
            mask: ``[B, T]`` valid frames (a valid prefix per clip; default: all).
            windows: explicit ``(item, start, length)`` windows instead of random ones.
        """
        if vertices.dim() == 3:
            vertices = vertices[None]
            teacher_vertices = None if teacher_vertices is None else teacher_vertices[None]
            teacher_crops = teacher_crops if teacher_crops is None or teacher_crops.dim() == 5 else teacher_crops[None]
        if (teacher_vertices is None) == (teacher_crops is None):
            raise L2TError("lip-read loss: give exactly one of teacher_vertices and teacher_crops")
        b, t = vertices.shape[:2]
        lengths = [t] * b if mask is None else [int(n) for n in mask.bool().sum(1).tolist()]
        if teacher_crops is not None:
            if teacher_crops.dim() != 5 or teacher_crops.shape[0] != b or teacher_crops.shape[2] != 1:
                raise L2TError(f"teacher_crops must be [{b}, T, 1, H, W], got {list(teacher_crops.shape)}")
            if tuple(teacher_crops.shape[3:]) != self.renderer.crop_size:
                h, w = self.renderer.crop_size
                raise L2TError(f"teacher crops are {list(teacher_crops.shape[3:])}, the lip reader reads {h}x{w}")
            lengths = [min(n, int(teacher_crops.shape[1])) for n in lengths]
        elif tuple(teacher_vertices.shape) != tuple(vertices.shape):
            raise L2TError(f"teacher_vertices {list(teacher_vertices.shape)} must match {list(vertices.shape)}")
        chosen = self.sample_windows(lengths) if windows is None else windows
        if not chosen:
            return vertices.sum() * 0.0
        total = vertices.new_zeros(())
        for i, start, n in chosen:
            tpl = templates if templates is None or templates.dim() == 2 else templates[i]
            student = self.renderer.render(vertices[i, start : start + n], tpl)
            if teacher_crops is not None:
                teacher = teacher_crops[i, start : start + n].to(student)
            else:
                # no gradient: on CPU the fast compiled rasterizer (the same image, several times faster)
                fast = "torch" if vertices.device.type == "cpu" else None
                with torch.no_grad():
                    teacher = self.renderer.render(
                        teacher_vertices[i, start : start + n].to(vertices), tpl, backend=fast
                    )
            fs = self.features(student[None], fps)
            with torch.no_grad():
                ft = self.features(teacher[None], fps)
            if self.distance == "l2":
                total = total + (fs - ft).square().mean()
            else:
                total = total + (1.0 - F.cosine_similarity(fs, ft, dim=-1)).mean()
        return total / len(chosen)


# --------------------------------------------------------------------------- the training recipe hook
_OPTIONS = ("lipreader", "avatar", "teacher", "window", "windows", "distance", "start_step", "backend", "chunk_frames")


class _TeacherFolder:
    """Teacher crops ``<folder>/<clip>.npz`` (:func:`~l2t_gs.training.data.teacher_video.save_teacher_crops`),
    cached."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise L2TError(f"[loss.lipread]: teacher folder {folder} does not exist")
        self.folder, self.cache = folder, {}

    def crops(self, names: list[str], starts: list[int], frames: int, fps: float) -> tuple[Tensor, Tensor]:
        """Crops ``[B, frames, 1, H, W]`` of the batch's clip windows (zero past a clip's teacher video) and
        ``[B]`` the number of frames each one has."""

        parts = []
        for name, start in zip(names, starts, strict=True):
            if name not in self.cache:
                path = self.folder / f"{name}.npz"
                if not path.is_file():
                    raise L2TError(f"[loss.lipread]: no teacher crops for clip {name} ({path})")
                tc = load_teacher_crops(path)
                if abs(tc.fps - fps) > 1e-6:
                    raise L2TError(f"[loss.lipread]: teacher crops {path} are at {tc.fps:g} fps, the data {fps:g}")
                self.cache[name] = (tc.crops[:, 0] * 255).round().to(torch.uint8)
            parts.append(self.cache[name][start : start + frames])
        h, w = parts[0].shape[1:]
        out = torch.zeros(len(parts), frames, 1, h, w)
        for i, c in enumerate(parts):
            out[i, : c.shape[0], 0] = c.float() / 255.0
        return out, torch.tensor([c.shape[0] for c in parts])


@LOSSES.register("lipread", help="a frozen lip reader compares rendered mouth crops with the teacher's")
def lipread_loss_factory(options: dict[str, Any], model: Any, device: torch.device) -> Callable[[Any], Tensor]:
    """The ``lipread`` loss of :data:`~l2t_gs.training.losses.registry.LOSSES`.

    Options: see the module docstring (``lipreader`` is required). The returned function takes a
    ``LossContext`` (``pred``/``target [B, T, V, 3]`` in loss units = data units x ``scale``).
    """
    opts = dict(options)
    unknown = sorted(set(opts) - set(_OPTIONS))
    if unknown:
        raise L2TError(f"[loss.lipread]: unknown option(s) {', '.join(unknown)}; known: {', '.join(_OPTIONS)}")
    spec = opts.get("lipreader")
    if not isinstance(spec, str | os.PathLike) or not str(spec):
        raise L2TError('[loss.lipread]: set lipreader = "RUN_DIR_OR_CHECKPOINT" (or "module:factory")')
    start_step = opts.get("start_step", 0)
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise L2TError(f"[loss.lipread]: start_step must be an integer >= 0, got {start_step!r}")

    avatar = load_avatar(str(opts.get("avatar", "default")))
    n_verts = getattr(model, "n_verts", None)
    if n_verts is not None and int(n_verts) != avatar.n_verts:
        raise L2TError(
            f"[loss.lipread]: avatar '{avatar.name}' has {avatar.n_verts} vertices, the model predicts {n_verts}"
        )
    loss = LipReadLoss(
        load_lipreader(spec, device=device),
        avatar,
        window=opts.get("window", 12),
        windows=opts.get("windows", 2),
        distance=opts.get("distance", "l2"),
        backend=opts.get("backend", "torch-pure"),
        chunk_frames=opts.get("chunk_frames", 8),
    )
    teacher = str(opts.get("teacher", "gt"))
    folder = None if teacher == "gt" else _TeacherFolder(Path(teacher))

    def fn(ctx: Any) -> Tensor:
        if 0 <= ctx.step < start_step:
            return ctx.pred.sum() * 0.0
        batch = ctx.batch
        pred = ctx.pred / ctx.scale
        mask = ctx.mask.bool()
        kw: dict[str, Any] = {}
        if folder is None:
            kw["teacher_vertices"] = ctx.target / ctx.scale
        else:
            crops, available = folder.crops(batch.names, batch.starts, pred.shape[1], batch.fps)
            kw["teacher_crops"] = crops.to(pred)
            frames = torch.arange(pred.shape[1], device=pred.device)
            mask = mask & (frames[None] < available.to(pred.device)[:, None])
        return loss(pred, fps=batch.fps, templates=batch.templates, mask=mask, **kw)

    return fn
