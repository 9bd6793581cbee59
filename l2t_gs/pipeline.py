"""The main job: speech audio -> Audio2Mesh motion -> Gaussian avatar -> MP4 with the audio.

``render_video(audio, out, RenderConfig(...))`` streams: the model yields vertex chunks, each chunk is
deformed into splats, rasterized frame by frame and encoded straight into the MP4, so memory stays
bounded for hour-long audio. The CLI ``l2t-gs render`` is a thin wrapper over this function.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import shutil
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from l2t_gs.assets import asset_path
from l2t_gs.audio.io import load_audio
from l2t_gs.core.device import resolve_device
from l2t_gs.core.workers import cpu_threads, get_cpu_threads
from l2t_gs.errors import L2TError
from l2t_gs.gaussians import GaussianAvatar, export_world_ply, load_avatar
from l2t_gs.gaussians.export import world_ply_bytes
from l2t_gs.io.atomic import atomic_path, disk_full, output_parent
from l2t_gs.io.tempfiles import make_temp_dir
from l2t_gs.io.video import VideoWriter
from l2t_gs.models.audio2mesh import Audio2Mesh
from l2t_gs.models.checkpoint import load_model
from l2t_gs.models.life import life_track
from l2t_gs.motion.file import MotionFile, open_motion
from l2t_gs.motion.life import LifeConfig, LifeRig, LifeTrack
from l2t_gs.motion.transcript import TranscriptTracks, align_transcript, transcript_tracks
from l2t_gs.render import head_camera, rasterize
from l2t_gs.render.backends import select_backend
from l2t_gs.render.camera import camera_from_json
from l2t_gs.render.image import to_uint8
from l2t_gs.render.views import RENDER_CAMERAS


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
    export_mesh: str | None = None  # .npz with per-frame vertices and faces, or .glb glTF animation
    export_ply: str | None = None  # folder of world-space 3DGS PLYs, one per frame
    chunk_seconds: float = 10.0
    quiet: bool = False
    device: str = "auto"
    text: str | None = None  # transcript: force-aligned, its visemes and contacts join the model's motion
    # demo videos (see render_layout_frames): given motion, several views / sources side by side, strips
    motion: str | None = None  # .npy/.npz of per-frame vertices or rig coefficients, rendered instead of the model
    motion_fps: float | None = None  # frame rate of `motion` when its file does not record it
    layout: str = "single"  # "single" or "grid" (one tile per camera of `cameras`)
    cameras: tuple[str, ...] = ()  # the grid's cameras (default: front, three-quarter, side)
    compare: tuple[str, ...] = ()  # side by side, one row each: [LABEL=][motion:|model:|avatar:]SPEC
    waveform: bool = False  # a waveform strip with a moving cursor under the tiles
    captions: str | None = None  # "text": the aligned words of `text`; or a .json of word/phone segments
    export_arkit: str | None = None  # Live Link Face CSV of the 52 ARKit curves (rig-output models)
    camera_json: str | None = None  # a camera file (photo avatar's fit.json); overrides ``camera``
    head_motion: str = "still"  # still | natural (PoseVAE) | procedural; still + blinks off = speech only
    blinks: str = "off"  # on: blinks, brow raises on emphasis and gaze (seeded by ``seed``)
    motion_scale: float = 1.0  # scales head motion and look-aways

    def life(self) -> LifeConfig:
        """The head-motion, blink and gaze options as a :class:`~l2t_gs.motion.life.LifeConfig`."""
        return LifeConfig(self.head_motion, self.blinks, self.motion_scale, self.seed)


@dataclass
class RenderResult:
    """What :func:`render_video` produced and how long it took."""

    out: Path
    frames: int
    audio_seconds: float
    wall_seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    frame_workers: int = 1  # frames rendered at once (see frame_workers); stage times sum over them

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
    if cfg.camera_json is not None:  # a bad camera file fails before anything is written
        camera_from_json(cfg.camera_json)
    cfg.life().validate()


def _check_output(out: Path, suffix: str, what: str) -> None:
    if out.suffix.lower() != suffix:
        raise L2TError(f"{what} must end in {suffix}, got {out}")
    output_parent(out)
    if out.is_dir():
        raise L2TError(f"{what} is a directory: {out}")


def _check_ply_folder(folder: Path) -> None:
    """``--export-ply`` must name a new or empty folder in an existing, writable one."""
    if folder.exists() and not folder.is_dir():
        raise L2TError(f"--export-ply must name a folder, but {folder} is a file")
    if folder.is_dir() and any(folder.iterdir()):
        raise L2TError(f"--export-ply folder exists and is not empty: {folder}")
    output_parent(folder, "--export-ply parent directory")


def _check_ply_space(folder: Path, frame_bytes: int, n_frames: int) -> None:
    """Say on stderr how much ``--export-ply`` writes; refuse when the disk cannot hold it."""
    total = frame_bytes * n_frames
    print(
        f"note: --export-ply writes one PLY per frame, about {frame_bytes / 1e6:.1f} MB each: "
        f"{n_frames} frames, about {total / 1e9:.2f} GB in {folder}",
        file=sys.stderr,
    )
    free = shutil.disk_usage(folder.parent if str(folder.parent) else ".").free
    if total > free:
        raise L2TError(
            f"--export-ply needs about {total / 1e9:.2f} GB but only {free / 1e9:.2f} GB are free in "
            f"{folder.parent if str(folder.parent) else '.'}"
        )


class _MeshWriter:
    """Per-frame vertices streamed to a temporary .npy on disk, packed into an .npz at the end."""

    def __init__(self, path: Path, n_frames: int, faces: np.ndarray, n_verts: int) -> None:
        self.path, self.faces = path, faces
        self.tmpdir = make_temp_dir(path.parent, "mesh")
        self.npy = self.tmpdir / "vertices.npy"
        self.pos = 0
        try:
            self.mm = np.lib.format.open_memmap(self.npy, mode="w+", dtype=np.float32, shape=(n_frames, n_verts, 3))
            with open(self.npy, "r+b") as fh:  # reserve the space now: a full disk is an error, not a SIGBUS later
                try:
                    os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
                except OSError as exc:
                    if disk_full(exc):
                        raise L2TError(f"--export-mesh: no space left on the device for {path}") from None
                    # a file system without fallocate: the space is taken as frames are written
        except BaseException:
            self.abort()
            raise

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


class _GlbWriter:
    """Frames fitted into a glTF skinned mesh with morph targets (l2t_gs.rig.gltf_export), written at the end."""

    def __init__(self, job: _Job, cfg: RenderConfig, faces: np.ndarray, params: dict[str, np.ndarray]) -> None:
        from l2t_gs.rig.flame import FLAME_JOINTS
        from l2t_gs.rig.gltf_export import HeadAnimationWriter, head_gltf_rig

        self.path, self.faces, self.seconds, self.pos = Path(cfg.export_mesh), faces, job.seconds, 0
        self.pose = params["pose"]
        moving = tuple(n for j, n in enumerate(FLAME_JOINTS) if np.abs(self.pose[:, j]).max() > 0)
        rig = head_gltf_rig(job.model.head, job.neutral.cpu().numpy(), animated=moving)
        self.writer = HeadAnimationWriter(rig)
        self.colors = _vertex_colors(job.avatar)

    def write(self, verts: np.ndarray) -> None:
        self.writer.add(verts, self.pose[self.pos : self.pos + len(verts)])
        self.pos += len(verts)

    def close(self, fps: float) -> None:
        self.writer.write(self.path, self.faces, fps, duration=self.seconds, colors=self.colors)

    def abort(self) -> None:
        pass


def _export_params(job: _Job, cfg: RenderConfig) -> dict[str, np.ndarray] | None:
    """The clip's rig parameters for the .glb / ARKit exports: ``expr [T, E]``, ``pose [T, 5, 3]``.

    The model is run a second time for them (``predict_params``, same audio, style, rate, chunking and
    transcript as the rendered frames); the glTF fit checks them against the rendered vertices.
    """
    glb = bool(cfg.export_mesh) and Path(cfg.export_mesh).suffix.lower() == ".glb"
    if not (glb or cfg.export_arkit):
        return None
    if job.model is None:
        raise L2TError(
            "--export-mesh .glb and --export-arkit need a model's rig parameters; with --motion use --export-mesh .npz"
        )
    if job.model.rig is None:
        raise L2TError("--export-mesh .glb and --export-arkit need a rig-output model (output = 'rig')")
    p = job.model.predict_params(
        job.audio, style=cfg.style, fps=cfg.fps, chunk_seconds=cfg.chunk_seconds, transcript=job.transcript
    )
    expr = p["expr"].numpy()[: job.n_frames].copy()
    n = expr.shape[0]
    pose = np.zeros((n, 5, 3), dtype=np.float32)
    pose[:, 2] = p["jaw_pose"].numpy()[: job.n_frames]
    if job.life is not None:  # head motion (about the neck joint), gaze and blinks/brows join the curves
        pose[:, 1] = job.life.head[:n, :3]
        pose[:, 3:5] = job.life.eyes[:n].reshape(n, 2, 3)
        names = list(job.model.head.expr_names or [])
        for name, curve in (("blink_left", job.life.lid), ("blink_right", job.life.lid), ("brow_raise", job.life.brow)):
            if name in names and names.index(name) < expr.shape[1]:
                expr[:, names.index(name)] += curve[:n].astype(expr.dtype)
    return {"expr": expr, "pose": pose}


def _vertex_colors(avatar: GaussianAvatar) -> np.ndarray:
    """Per-vertex linear RGB ``[V, 3]``: the opacity-weighted mean DC colour of the splats on each
    vertex's triangles (grey where none); sRGB decoded for glTF's COLOR_0."""
    from l2t_gs.render.sh import sh_to_rgb

    rgb = sh_to_rgb(avatar.sh[:, 0].detach().cpu().double()).clamp(0, 1).numpy()  # [N, 3]
    alpha = torch.sigmoid(avatar.opacity_logits.detach().cpu().double()).numpy()
    tri = avatar.faces.cpu().numpy()[avatar.binding.cpu().numpy()]  # [N, 3] vertices of each splat's triangle
    v = avatar.n_verts
    wsum = np.bincount(tri.reshape(-1), np.repeat(alpha, 3), minlength=v)
    col = np.stack([np.bincount(tri.reshape(-1), np.repeat(alpha * rgb[:, c], 3), minlength=v) for c in range(3)], 1)
    srgb = np.where(wsum[:, None] > 0, col / np.maximum(wsum, 1e-12)[:, None], 0.5)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _write_arkit(path: Path, job: _Job, cfg: RenderConfig, params: dict[str, np.ndarray]) -> None:
    """The clip's ARKit curves (l2t_gs.rig.arkit) as a Live Link Face CSV."""
    from l2t_gs.core.rotation import axis_angle_to_matrix, matrix_to_axis_angle
    from l2t_gs.rig.arkit import euler_yaw_pitch_roll, load_arkit_mapping, rig_coefficients, write_live_link_csv

    pose = params["pose"]
    weights = load_arkit_mapping(job.model.head).from_coefficients(
        rig_coefficients(params["expr"], pose[:, 2], pose[:, 3:].reshape(-1, 6))
    )
    rot = axis_angle_to_matrix(torch.as_tensor(pose[:, :2], dtype=torch.float64))
    head = euler_yaw_pitch_roll(matrix_to_axis_angle(rot[:, 0] @ rot[:, 1]).numpy())  # global, then neck
    rotations = np.concatenate([head, euler_yaw_pitch_roll(pose[:, 3]), euler_yaw_pitch_roll(pose[:, 4])], axis=1)
    write_live_link_csv(path, weights, rotations, cfg.fps)


@dataclass
class _Job:
    """What one render needs, loaded and checked (see :func:`_prepare`)."""

    audio: np.ndarray  # [S] float32 at 16 kHz
    seconds: float
    n_frames: int
    avatar: GaussianAvatar
    model: Audio2Mesh | None  # None: cfg.motion drives the avatar
    device: torch.device
    neutral: torch.Tensor  # [V, 3]
    transcript: TranscriptTracks | None = None  # cfg.text's tracks for the whole clip
    motion: MotionFile | None = None  # cfg.motion, opened
    life: LifeTrack | None = None  # head motion, blinks and gaze (None: still + off)
    life_rig: LifeRig | None = None


def _prepare(audio_path: str | os.PathLike, cfg: RenderConfig) -> _Job:
    _check_config(cfg)
    audio = load_audio(audio_path, sr=16000)
    seconds = audio.shape[0] / 16000.0
    n_frames = int(round(seconds * cfg.fps))
    if n_frames < 1:
        raise L2TError(f"audio is too short to render a frame at {cfg.fps} fps: {audio_path}")
    avatar = load_avatar(cfg.avatar)
    device = resolve_device(cfg.device)
    motion = open_motion(cfg.motion, cfg.motion_fps) if cfg.motion else None
    model = None if motion else load_model(cfg.model if cfg.model else default_model_path(), device=device)
    _check_topology(avatar, model, motion)
    neutral = avatar.neutral_vertices().to(device=device, dtype=torch.float32)
    transcript = None
    if cfg.text is not None and model is not None:  # before any output exists: a bad transcript leaves nothing
        if model.rig is None:
            raise L2TError("--text needs a rig-output model (output = 'rig'); this model predicts vertices")
        segments = align_transcript(audio, cfg.text, 16000)
        transcript = transcript_tracks(segments, cfg.fps, Audio2Mesh.n_frames(audio.shape[0], cfg.fps), model.head)
    life = life_track(audio, n_frames, cfg.fps, cfg.life())
    life_rig = LifeRig(avatar.head_model, neutral) if life is not None else None
    return _Job(audio, seconds, n_frames, avatar.to(device), model, device, neutral, transcript, motion, life, life_rig)


def frame_workers(backend: str, device: torch.device) -> int:
    """Frames rendered at once: one per CPU thread when the compiled CPU rasterizer draws them (its
    kernels then run one thread each, which scales better than one frame over every core), else 1."""
    n = get_cpu_threads()
    if n < 2 or device.type != "cpu":
        return 1
    try:
        chosen = select_backend(backend, device, torch.float32, needs_grad=False)
    except L2TError:
        return 1  # the render itself reports it
    return n if chosen.name == "cpu-fast" else 1


def _frames(job: _Job, cfg: RenderConfig, stages: dict[str, float]) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
    """Stream ``(vertices [V, 3], frame uint8 [H, W, 3])`` for every video frame; adds stage timings.

    With several :func:`frame_workers`, frames are deformed and rasterized on a thread each, a few
    frames ahead, and yielded in order ("deform" and "rasterize" then sum the workers' times).
    """
    torch.manual_seed(cfg.seed)
    device, neutral, n_frames = job.device, job.neutral, job.n_frames
    bg = torch.tensor([list(cfg.background)], dtype=torch.float32, device=device)
    fixed_cam = None
    if cfg.camera_json is not None:
        fixed_cam = [t.to(device) for t in camera_from_json(cfg.camera_json, cfg.size, cfg.size)[:2]]
    elif cfg.camera != "orbit":
        fixed_cam = [t.to(device) for t in head_camera(cfg.camera, neutral, cfg.size, cfg.size)]
    n_workers = frame_workers(cfg.backend, device)
    timing_lock = threading.Lock()

    def draw(verts: torch.Tensor, index: int) -> np.ndarray:
        with torch.no_grad(), cpu_threads(1) if n_workers > 1 else contextlib.nullcontext():
            t = time.perf_counter()
            splats = job.avatar.splat_params(verts)
            t1 = time.perf_counter()
            img = _render_view(splats, fixed_cam, neutral, cfg, index / max(n_frames, 1), bg)
            with timing_lock:  # workers add to the same entries
                stages["deform"] += t1 - t
                stages["rasterize"] += time.perf_counter() - t1
        return img

    def posed() -> Iterator[tuple[int, torch.Tensor]]:
        stream = _vertex_chunks(job.model, job.motion, job.avatar, job.audio, neutral, cfg, cfg.style, job.transcript)
        index = 0
        while index < n_frames:
            t = time.perf_counter()
            chunk = next(stream, None)
            stages["model"] += time.perf_counter() - t
            if chunk is None:
                break
            chunk = chunk[: n_frames - index]
            if job.life_rig is not None:  # head motion, blinks and gaze: the whole chunk at once
                t = time.perf_counter()
                chunk = job.life_rig.apply(chunk, job.life, index)
                stages["deform"] += time.perf_counter() - t
            for verts in chunk:
                yield index, verts
                index += 1

    written = 0
    if n_workers == 1:
        for index, verts in posed():
            yield verts, draw(verts, index)
            written += 1
    else:
        pool = ThreadPoolExecutor(n_workers, thread_name_prefix="l2t-frame")
        pending: collections.deque = collections.deque()
        try:
            for index, verts in posed():
                pending.append((verts, pool.submit(draw, verts, index)))
                if len(pending) >= 2 * n_workers:
                    done_verts, fut = pending.popleft()
                    yield done_verts, fut.result()
                    written += 1
            while pending:
                done_verts, fut = pending.popleft()
                yield done_verts, fut.result()
                written += 1
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)
    if written != n_frames:  # pragma: no cover - the model contract gives round(seconds * fps)
        raise L2TError(f"the model produced {written} frames, expected {n_frames}")


@torch.no_grad()
def render_frames(audio_path: str | os.PathLike, cfg: RenderConfig | None = None) -> Iterator[np.ndarray]:
    """The video frames (uint8 [H, W, 3]) :func:`render_video` would encode, streamed, for notebooks and tests."""
    cfg = cfg or RenderConfig()
    if is_layout(cfg):
        yield from render_layout_frames(audio_path, cfg)
        return
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
        mesh_suffix = Path(cfg.export_mesh).suffix.lower()
        if mesh_suffix not in (".npz", ".glb"):
            raise L2TError(f"--export-mesh must end in .npz or .glb, got {cfg.export_mesh}")
        _check_output(Path(cfg.export_mesh), mesh_suffix, "--export-mesh")
    if cfg.export_arkit:
        _check_output(Path(cfg.export_arkit), ".csv", "--export-arkit")
    if cfg.export_ply:
        _check_ply_folder(Path(cfg.export_ply))
    if is_layout(cfg):
        return render_layout_video(audio_path, out, cfg)
    job = _prepare(audio_path, cfg)
    if cfg.export_ply:
        _check_ply_space(Path(cfg.export_ply), world_ply_bytes(job.avatar), job.n_frames)
    avatar, n_frames = job.avatar, job.n_frames

    # "setup": reading, loading and checking before the first frame; "deform" and "rasterize" sum the
    # frame workers' times (RenderResult.frame_workers), so with several they exceed the wall time
    stages = dict.fromkeys(("model", "deform", "rasterize", "encode"), 0.0) | {"setup": time.perf_counter() - t0}
    mesh_writer = None
    ply_tmp = None
    written = 0
    params = _export_params(job, cfg)  # rig parameters for the .glb / ARKit exports (None without them)
    bar = tqdm(total=n_frames, unit="frame", desc="rendering", disable=cfg.quiet, leave=False)
    try:
        if cfg.export_mesh:
            faces = avatar.head_model.faces.cpu().numpy().astype(np.int64)
            if mesh_suffix == ".glb":
                mesh_writer = _GlbWriter(job, cfg, faces, params)
            else:
                mesh_writer = _MeshWriter(Path(cfg.export_mesh), n_frames, faces, avatar.n_verts)
        if cfg.export_ply:
            ply_tmp = make_temp_dir(Path(cfg.export_ply).parent, "plys", mode=0o777)  # umask applies
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
        if cfg.export_arkit:
            _write_arkit(Path(cfg.export_arkit), job, cfg, params)
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
    workers = frame_workers(cfg.backend, job.device)
    return RenderResult(out, written, job.seconds, time.perf_counter() - t0, stages, workers)


# --------------------------------------------------------------------------- given motion, demo layouts
def _check_topology(avatar: GaussianAvatar, model: Audio2Mesh | None, motion: MotionFile | None) -> None:
    """The model's or the motion file's vertex count must be the avatar's."""
    n, what = (model.n_verts, "the model predicts") if model is not None else (None, "")
    if motion is not None and motion.n_verts is not None:
        n, what = motion.n_verts, f"the motion {motion.path.name} has"
    if n is not None and n != avatar.n_verts:
        raise L2TError(
            f"avatar {avatar.name!r} has {avatar.n_verts} vertices but {what} {n}: "
            "the avatar's topology does not match the model"
        )


def _vertex_chunks(
    model: Audio2Mesh | None,
    motion: MotionFile | None,
    avatar: GaussianAvatar,
    audio: np.ndarray,
    neutral: torch.Tensor,
    cfg: RenderConfig,
    style: str | int | None,
    transcript: TranscriptTracks | None,
) -> Iterator[torch.Tensor]:
    """Vertex chunks ``[t, V, 3]`` (float32, on ``neutral``'s device) at ``cfg.fps``: the model's motion for
    ``audio``, or the motion file's frames resampled in time (rig coefficients through the avatar's rig)."""
    if motion is None:
        yield from model.predict_stream(
            audio, neutral, style=style, fps=cfg.fps, chunk_seconds=cfg.chunk_seconds, transcript=transcript
        )
        return
    n_frames = int(round(audio.shape[0] / 16000.0 * cfg.fps))
    for part in motion.chunks(cfg.fps, n_frames, max(1, round(cfg.chunk_seconds * cfg.fps))):
        if "vertices" in part:
            verts = torch.from_numpy(part["vertices"])
        else:
            verts = avatar.vertices_from_params({k: torch.from_numpy(v) for k, v in part.items()})
        yield verts.to(device=neutral.device, dtype=torch.float32)


def _render_view(
    splats: dict,
    fixed_cam: list[torch.Tensor] | None,
    neutral: torch.Tensor,
    cfg: RenderConfig,
    frac: float,
    bg: torch.Tensor,
    camera: str = "orbit",
) -> np.ndarray:
    """One ``[size, size, 3]`` uint8 view of ``splats``: from ``fixed_cam`` (viewmats, Ks), or from ``camera``
    at orbit position ``frac`` when ``fixed_cam`` is ``None``."""
    if fixed_cam is None:
        viewmats, ks = (x.to(bg.device) for x in head_camera(camera, neutral, cfg.size, cfg.size, frac))
    else:
        viewmats, ks = fixed_cam
    rgb, _, _ = rasterize(
        **splats, viewmats=viewmats, Ks=ks, width=cfg.size, height=cfg.size, backgrounds=bg, backend=cfg.backend,
        packed=False,  # dense meta: nothing to gather, it is not used
    )  # fmt: skip
    return to_uint8(rgb[0])


#: Cameras of ``--layout grid`` when none are given.
GRID_CAMERAS: tuple[str, ...] = ("front", "three-quarter", "side")
_SPEC_KINDS = ("motion", "model", "avatar")


def is_layout(cfg: RenderConfig) -> bool:
    """Whether ``cfg`` asks for a composed demo video (:func:`render_layout_frames`) rather than one view."""
    return cfg.layout != "single" or bool(cfg.compare or cfg.cameras) or cfg.waveform or cfg.captions is not None


def parse_compare_item(item: str) -> tuple[str, str, str]:
    """``[LABEL=][KIND:]SPEC`` -> (label, kind, spec). Without ``KIND``: a ``.npy``/``.npz`` file is a motion,
    a ``.pt`` file or a folder holding ``best.pt``/``last.pt``/``model.pt`` is a model, anything else an
    avatar (a name or folder). The label defaults to the file's stem or the avatar's name."""
    label, sep, rest = item.partition("=")
    if not sep or "/" in label or not label:
        label, rest = "", item
    kind, sep, spec = rest.partition(":")
    if not sep or kind not in _SPEC_KINDS:
        spec, path = rest, Path(rest)
        if path.suffix.lower() in (".npy", ".npz"):
            kind = "motion"
        elif path.suffix.lower() == ".pt" or (path.is_dir() and any((path / n).is_file() for n in CHECKPOINT_NAMES)):
            kind = "model"
        else:
            kind = "avatar"
    if not spec:
        raise L2TError(f"--compare: empty item {item!r}")
    return label or Path(spec).stem or spec, kind, spec


CHECKPOINT_NAMES = ("best.pt", "last.pt", "model.pt")


@dataclass
class _Row:
    """One source of a layout: what moves, on which avatar."""

    label: str
    avatar: GaussianAvatar
    neutral: torch.Tensor
    model: Audio2Mesh | None
    motion: MotionFile | None
    transcript: TranscriptTracks | None = None


def _read_captions(cfg: RenderConfig, audio: np.ndarray) -> list:
    """Caption tokens: the words of ``cfg.text`` force-aligned to ``audio`` (``captions="text"``), or the
    segments of a JSON file (a list of ``{"word"|"phone"|"text", "start", "end"}``; silences dropped)."""
    import json

    from l2t_gs.render.layout import Caption

    if cfg.captions == "text":
        if not cfg.text:
            raise L2TError("--captions without a file needs --text or --text-file (the words to show)")
        from l2t_gs.speech.align import force_align

        aligned = force_align(audio, " ".join(cfg.text.split()), sr=16000)
        if aligned.words:
            return [Caption(w.word, w.start, w.end) for w in aligned.words]
        return [Caption(p.phone, p.start, p.end) for p in aligned.phones if p.phone not in ("sil", "")]
    path = Path(str(cfg.captions))
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise L2TError(f"--captions: cannot read {path}: {exc}") from None
    items = items.get("words", items.get("segments", items)) if isinstance(items, dict) else items
    out = []
    for it in items if isinstance(items, list) else []:
        text = next((it[k] for k in ("word", "phone", "text") if isinstance(it, dict) and k in it), None)
        try:
            start, end = float(it["start"]), float(it["end"])
        except (TypeError, KeyError, ValueError):
            raise L2TError(f"--captions {path}: each item needs a word/phone/text, start and end") from None
        if text is None:
            raise L2TError(f"--captions {path}: each item needs a word/phone/text, start and end")
        if str(text).lower() not in ("sil", "sp", "spn", ""):
            out.append(Caption(str(text), start, end))
    if not out:
        raise L2TError(f"--captions {path}: no segments (a JSON list of word/phone segments)")
    return out


def _layout_rows(cfg: RenderConfig, device: torch.device) -> list[_Row]:
    """The layout's sources: one per ``--compare`` item (each overriding the base motion, model or avatar),
    else the base (``--motion`` or ``--model`` on ``--avatar``)."""
    if len(cfg.compare) == 1:
        raise L2TError("--compare needs two or more items (motion files, models or avatars)")
    items = [parse_compare_item(c) for c in cfg.compare] or [("", "", "")]
    avatars: dict[str, GaussianAvatar] = {}
    models: dict[str, Audio2Mesh] = {}
    rows = []
    for label, kind, spec in items:
        avatar_spec = spec if kind == "avatar" else cfg.avatar
        if avatar_spec not in avatars:
            avatars[avatar_spec] = load_avatar(avatar_spec).to(device)
        avatar = avatars[avatar_spec]
        motion_spec = spec if kind == "motion" else (cfg.motion if kind != "model" else None)
        motion = open_motion(motion_spec, cfg.motion_fps) if motion_spec else None
        model = None
        if motion is None:
            model_spec = str(spec if kind == "model" else (cfg.model or default_model_path()))
            if model_spec not in models:
                models[model_spec] = load_model(model_spec, device=device)
            model = models[model_spec]
        _check_topology(avatar, model, motion)
        neutral = avatar.neutral_vertices().to(device=device, dtype=torch.float32)
        rows.append(_Row(label or avatar.name, avatar, neutral, model, motion))
    return rows


def render_layout_frames(audio_path: str | os.PathLike, cfg: RenderConfig) -> Iterator[np.ndarray]:
    """The frames (uint8 ``[H, W, 3]``) of a demo video, streamed.

    The sources (``cfg.compare`` items, else the base model or motion) stand side by side in one row with
    one camera, or one row per source and one column per camera (``cfg.cameras``; ``layout="grid"``
    without cameras: front, three-quarter, side); labels sit above the tiles when there is more than one,
    then optional caption and waveform strips (:class:`l2t_gs.render.layout.Layout`). Each tile equals
    the single-view render of its source and camera; frames are composed as the vertex chunks stream in.
    """
    yield from _layout_frames(load_audio(audio_path, sr=16000), str(audio_path), cfg)


@torch.no_grad()  # a generator: grad mode is restored between frames
def _layout_frames(audio: np.ndarray, where: str, cfg: RenderConfig) -> Iterator[np.ndarray]:
    """:func:`render_layout_frames` on loaded 16 kHz ``audio`` (``where`` names it in messages)."""
    from l2t_gs.render.layout import Layout

    _check_config(cfg)
    if cfg.layout not in ("single", "grid"):
        raise L2TError(f"--layout must be single or grid, got {cfg.layout!r}")
    cameras = tuple(cfg.cameras) or (GRID_CAMERAS if cfg.layout == "grid" else (cfg.camera,))
    bad = [c for c in cameras if c not in RENDER_CAMERAS]
    if bad:
        raise L2TError(f"--cameras: unknown camera(s) {', '.join(bad)}; choose from {', '.join(RENDER_CAMERAS)}")
    seconds = audio.shape[0] / 16000.0
    n_frames = int(round(seconds * cfg.fps))
    if n_frames < 1:
        raise L2TError(f"audio is too short to render a frame at {cfg.fps} fps: {where}")
    device = resolve_device(cfg.device)
    captions = _read_captions(cfg, audio) if cfg.captions is not None else None
    rows = _layout_rows(cfg, device)
    rigged = [r for r in rows if r.model is not None and r.model.rig is not None]
    if cfg.text is not None and rigged:  # the transcript shapes the lips of rig-output models (as a single view)
        segments = align_transcript(audio, cfg.text, 16000)
        for row in rigged:
            n_model = Audio2Mesh.n_frames(audio.shape[0], cfg.fps)
            row.transcript = transcript_tracks(segments, cfg.fps, n_model, row.model.head)
    several = len(rows) * len(cameras) > 1
    labels = []
    for row in rows:
        for cam in cameras:
            parts = [row.label] if len(rows) > 1 or cfg.compare else []
            parts += [cam] if len(cameras) > 1 else []
            labels.append(" · ".join(parts))
    if not several and not cfg.compare:
        labels = []
    bg255 = tuple(int(round(255 * float(c))) for c in cfg.background)
    # one camera: the sources side by side in one row; several: one row per source, one column per camera
    shape = (1, len(rows)) if len(cameras) == 1 else (len(rows), len(cameras))
    layout = Layout(*shape, cfg.size, labels, audio if cfg.waveform else None, seconds, captions, background=bg255)
    torch.manual_seed(cfg.seed)
    bg = torch.tensor([list(cfg.background)], dtype=torch.float32, device=device)
    fixed = {
        (i, cam): None if cam == "orbit" else [t.to(device) for t in head_camera(cam, r.neutral, cfg.size, cfg.size)]
        for i, r in enumerate(rows)
        for cam in cameras
    }

    def frames_of(row: _Row) -> Iterator[torch.Tensor]:
        for chunk in _vertex_chunks(
            row.model, row.motion, row.avatar, audio, row.neutral, cfg, cfg.style, row.transcript
        ):
            yield from chunk

    streams = [frames_of(r) for r in rows]
    for f in range(n_frames):
        tiles = []
        for i, (row, stream) in enumerate(zip(rows, streams, strict=True)):
            verts = next(stream, None)
            if verts is None:  # pragma: no cover - the sources give round(seconds * fps) frames
                raise L2TError(f"{row.label}: the motion ended at frame {f} of {n_frames}")
            splats = row.avatar.splat_params(verts)
            for cam in cameras:
                tiles.append(_render_view(splats, fixed[i, cam], row.neutral, cfg, f / max(n_frames, 1), bg, cam))
        yield layout.compose(tiles, f / cfg.fps)


def render_layout_video(audio_path: str | os.PathLike, out_path: str | os.PathLike, cfg: RenderConfig) -> RenderResult:
    """:func:`render_layout_frames` encoded into an MP4 with the audio (H.264 + AAC), written atomically;
    the frame count is ``round(seconds * fps)`` as for a single view."""
    t0 = time.perf_counter()
    out = Path(out_path)
    _check_output(out, ".mp4", "the output video")
    if cfg.export_mesh or cfg.export_ply:
        raise L2TError(
            "--export-mesh and --export-ply render one view; leave out --layout/--compare/--waveform/--captions"
        )
    audio = load_audio(audio_path, sr=16000)
    frames = _layout_frames(audio, str(audio_path), cfg)
    first = next(frames)
    n_frames = int(round(audio.shape[0] / 16000.0 * cfg.fps))
    bar = tqdm(total=n_frames, unit="frame", desc="rendering", disable=cfg.quiet, leave=False)
    written = 0
    try:
        with VideoWriter(out, cfg.fps, first.shape[1], first.shape[0], audio=audio, sample_rate=16000) as video:
            for img in itertools.chain([first], frames):
                video.write(img)
                written += 1
                bar.update()
    finally:
        bar.close()
    return RenderResult(out, written, audio.shape[0] / 16000.0, time.perf_counter() - t0)
