"""The main job: speech audio -> Audio2Mesh motion -> Gaussian avatar -> MP4 with the audio.

``render_video(audio, out, RenderConfig(...))`` streams: the model yields vertex chunks, each chunk is
deformed into splats, rasterized frame by frame and encoded straight into the MP4, so memory stays
bounded for hour-long audio. The CLI ``l2t-gs render`` is a thin wrapper over this function.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from l2t_gs.assets import asset_path
from l2t_gs.audio.io import load_audio
from l2t_gs.core.device import resolve_device
from l2t_gs.errors import L2TError
from l2t_gs.gaussians import GaussianAvatar, export_world_ply, load_avatar
from l2t_gs.io.atomic import atomic_path
from l2t_gs.io.video import VideoWriter
from l2t_gs.models.audio2mesh import Audio2Mesh
from l2t_gs.models.checkpoint import load_model
from l2t_gs.motion.transcript import TranscriptTracks, align_transcript, transcript_tracks
from l2t_gs.render import head_camera, rasterize
from l2t_gs.render.camera import RENDER_CAMERAS
from l2t_gs.render.image import to_uint8


@dataclass
class RenderConfig:
    """Options of :func:`render_video` (the CLI flags of ``l2t-gs render``)."""

    avatar: str = "default"
    model: str | None = None  # checkpoint or run dir; None: the shipped default model
    size: int = 512
    fps: float = 25.0
    camera: str = "front"
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    backend: str = "auto"
    style: str | int | None = None  # training speaker style; None: the model's mean style
    seed: int = 0
    export_mesh: str | None = None  # .npz with per-frame vertices and faces
    export_ply: str | None = None  # folder of world-space 3DGS PLYs, one per frame
    chunk_seconds: float = 10.0
    quiet: bool = False
    device: str = "auto"
    text: str | None = None  # transcript: force-aligned, its visemes and contacts join the model's motion


@dataclass
class RenderResult:
    """What :func:`render_video` produced and how long it took."""

    out: Path
    frames: int
    audio_seconds: float
    wall_seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def seconds_per_audio_second(self) -> float:
        return self.wall_seconds / max(self.audio_seconds, 1e-9)


def default_model_path() -> Path:
    """The shipped default Audio2Mesh model."""
    path = asset_path("models", "default", "model.pt")
    if not path.is_file():
        raise L2TError("no default model is shipped with this install; pass --model PATH (a checkpoint or run dir)")
    return path


def _check_config(cfg: RenderConfig) -> None:
    if not 16 <= cfg.size <= 4096 or cfg.size % 2:
        raise L2TError(f"--size must be an even number of pixels in 16..4096, got {cfg.size}")
    if not 1 <= cfg.fps <= 120:
        raise L2TError(f"--fps must be in 1..120, got {cfg.fps}")
    if cfg.camera not in RENDER_CAMERAS:
        raise L2TError(f"--camera must be one of {', '.join(RENDER_CAMERAS)}, got {cfg.camera!r}")
    if cfg.chunk_seconds <= 0:
        raise L2TError(f"chunk_seconds must be positive, got {cfg.chunk_seconds}")


def _check_output(out: Path, suffix: str, what: str) -> None:
    if out.suffix.lower() != suffix:
        raise L2TError(f"{what} must end in {suffix}, got {out}")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise L2TError(f"output directory does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise L2TError(f"output directory is not writable: {parent}")
    if out.is_dir():
        raise L2TError(f"{what} is a directory: {out}")


class _MeshWriter:
    """Per-frame vertices streamed to a temporary .npy on disk, packed into an .npz at the end."""

    def __init__(self, path: Path, n_frames: int, faces: np.ndarray, n_verts: int) -> None:
        self.path, self.faces = path, faces
        self.tmpdir = tempfile.mkdtemp(prefix=".l2t-mesh-", dir=path.parent if str(path.parent) else ".")
        self.npy = Path(self.tmpdir) / "vertices.npy"
        self.mm = np.lib.format.open_memmap(self.npy, mode="w+", dtype=np.float32, shape=(n_frames, n_verts, 3))
        self.pos = 0

    def write(self, verts: np.ndarray) -> None:
        self.mm[self.pos : self.pos + len(verts)] = verts
        self.pos += len(verts)

    def close(self, fps: float) -> None:
        self.mm.flush()
        del self.mm
        with atomic_path(self.path, suffix=".npz") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            zf.write(self.npy, "vertices.npy")
            for name, arr in (("faces", self.faces), ("fps", np.array(fps, dtype=np.float32))):
                with zf.open(f"{name}.npy", "w") as fh:
                    np.lib.format.write_array(fh, np.asarray(arr))
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            del self.mm
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@dataclass
class _Job:
    """What one render needs, loaded and checked (see :func:`_prepare`)."""

    audio: np.ndarray  # [S] float32 at 16 kHz
    seconds: float
    n_frames: int
    avatar: GaussianAvatar
    model: Audio2Mesh
    device: torch.device
    neutral: torch.Tensor  # [V, 3]
    transcript: TranscriptTracks | None = None  # cfg.text's tracks for the whole clip


def _prepare(audio_path: str | os.PathLike, cfg: RenderConfig) -> _Job:
    _check_config(cfg)
    audio = load_audio(audio_path, sr=16000)
    seconds = audio.shape[0] / 16000.0
    n_frames = int(round(seconds * cfg.fps))
    if n_frames < 1:
        raise L2TError(f"audio is too short to render a frame at {cfg.fps} fps: {audio_path}")
    avatar = load_avatar(cfg.avatar)
    device = resolve_device(cfg.device)
    model = load_model(cfg.model if cfg.model else default_model_path(), device=device)
    if model.n_verts != avatar.n_verts:
        raise L2TError(
            f"avatar {avatar.name!r} has {avatar.n_verts} vertices but the model predicts {model.n_verts}: "
            "the avatar's topology does not match the model"
        )
    neutral = avatar.neutral_vertices().to(device=device, dtype=torch.float32)
    transcript = None
    if cfg.text is not None:  # before any output exists: an unusable transcript leaves nothing behind
        if model.rig is None:
            raise L2TError("--text needs a rig-output model (output = 'rig'); this model predicts vertices")
        segments = align_transcript(audio, cfg.text, 16000)
        transcript = transcript_tracks(segments, cfg.fps, Audio2Mesh.n_frames(audio.shape[0], cfg.fps), model.head)
    return _Job(audio, seconds, n_frames, avatar.to(device), model, device, neutral, transcript)


def _frames(job: _Job, cfg: RenderConfig, stages: dict[str, float]) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Stream ``(vertices [V, 3], frame uint8 [H, W, 3])`` for every video frame; adds stage timings."""
    torch.manual_seed(cfg.seed)
    device, neutral, n_frames = job.device, job.neutral, job.n_frames
    bg = torch.tensor([list(cfg.background)], dtype=torch.float32, device=device)
    fixed_cam = None
    if cfg.camera != "orbit":
        fixed_cam = [t.to(device) for t in head_camera(cfg.camera, neutral, cfg.size, cfg.size)]
    stream = job.model.predict_stream(
        job.audio, neutral, style=cfg.style, fps=cfg.fps, chunk_seconds=cfg.chunk_seconds, transcript=job.transcript
    )
    written = 0
    while written < n_frames:
        t = time.perf_counter()
        chunk = next(stream, None)
        stages["model"] += time.perf_counter() - t
        if chunk is None:
            break
        for verts in chunk[: n_frames - written]:
            t = time.perf_counter()
            splats = job.avatar.splat_params(verts)
            stages["deform"] += time.perf_counter() - t
            t = time.perf_counter()
            if fixed_cam is None:
                frac = written / max(n_frames, 1)
                viewmats, ks = (x.to(device) for x in head_camera("orbit", neutral, cfg.size, cfg.size, frac))
            else:
                viewmats, ks = fixed_cam
            rgb, _, _ = rasterize(
                **splats, viewmats=viewmats, Ks=ks, width=cfg.size, height=cfg.size, backgrounds=bg,
                backend=cfg.backend, packed=False,  # dense meta: nothing to gather, it is not used
            )  # fmt: skip
            img = to_uint8(rgb[0])
            stages["rasterize"] += time.perf_counter() - t
            written += 1
            yield verts, img
    if written != n_frames:  # pragma: no cover - the model contract gives round(seconds * fps)
        raise L2TError(f"the model produced {written} frames, expected {n_frames}")


@torch.no_grad()
def render_frames(audio_path: str | os.PathLike, cfg: RenderConfig | None = None) -> Iterator[np.ndarray]:
    """The video frames (uint8 [H, W, 3]) :func:`render_video` would encode, streamed, for notebooks and tests."""
    cfg = cfg or RenderConfig()
    stages = dict.fromkeys(("model", "deform", "rasterize", "encode"), 0.0)
    for _, img in _frames(_prepare(audio_path, cfg), cfg, stages):
        yield img


@torch.no_grad()
def render_video(audio_path: str | os.PathLike, out_path: str | os.PathLike, cfg: RenderConfig) -> RenderResult:
    """Render ``audio_path`` (wav/flac/ogg/mp3/m4a, any rate, mono or stereo) to an MP4 at ``out_path``.

    The MP4 holds H.264 video at ``cfg.fps`` and the audio as AAC; its frame count is
    ``round(seconds * fps)``, so the durations agree within one frame. Nothing is left at
    ``out_path`` (or the export paths) if anything fails. Runs without autograd, so the rasterizer
    takes its fast forward-only path on a CPU.
    """
    t0 = time.perf_counter()
    _check_config(cfg)
    out = Path(out_path)
    _check_output(out, ".mp4", "the output video")
    if cfg.export_mesh:
        _check_output(Path(cfg.export_mesh), ".npz", "--export-mesh")
    if cfg.export_ply and Path(cfg.export_ply).exists() and any(Path(cfg.export_ply).iterdir()):
        raise L2TError(f"--export-ply folder exists and is not empty: {cfg.export_ply}")
    job = _prepare(audio_path, cfg)
    avatar, n_frames = job.avatar, job.n_frames

    stages = dict.fromkeys(("model", "deform", "rasterize", "encode"), 0.0)
    mesh_writer = None
    ply_tmp = None
    written = 0
    bar = tqdm(total=n_frames, unit="frame", desc="rendering", disable=cfg.quiet, leave=False)
    try:
        if cfg.export_mesh:
            faces = avatar.head_model.faces.cpu().numpy().astype(np.int64)
            mesh_writer = _MeshWriter(Path(cfg.export_mesh), n_frames, faces, job.model.n_verts)
        if cfg.export_ply:
            ply_dir = Path(cfg.export_ply)
            parent = ply_dir.parent if str(ply_dir.parent) else Path(".")
            if not parent.is_dir():
                raise L2TError(f"--export-ply parent directory does not exist: {parent}")
            ply_tmp = Path(tempfile.mkdtemp(prefix=f".{ply_dir.name}.", dir=parent))
        # encoding runs in a worker thread, overlapped with the next frames ("encode" = time waiting on it)
        video = VideoWriter(out, cfg.fps, cfg.size, cfg.size, audio=job.audio, sample_rate=16000, background=True)
        with video:
            for verts, img in _frames(job, cfg, stages):
                if mesh_writer is not None:
                    mesh_writer.write(verts[None].cpu().numpy())
                if ply_tmp is not None:
                    export_world_ply(avatar, ply_tmp / f"frame_{written:06d}.ply", verts.cpu())
                t = time.perf_counter()
                video.write(img)
                stages["encode"] += time.perf_counter() - t
                written += 1
                bar.update()
        if mesh_writer is not None:
            mesh_writer.close(cfg.fps)
            mesh_writer = None
        if ply_tmp is not None:
            target = Path(cfg.export_ply)
            if target.exists():
                target.rmdir()  # checked empty above
            os.replace(ply_tmp, target)
            ply_tmp = None
    except BaseException:
        if mesh_writer is not None:
            mesh_writer.abort()
        if ply_tmp is not None:
            shutil.rmtree(ply_tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return RenderResult(out, written, job.seconds, time.perf_counter() - t0, stages)
