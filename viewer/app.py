"""``AvatarViewer``: a viser page that shows a Gaussian avatar and plays Audio2Mesh motion on it.

Threads: viser's own (event loop, callback pool); one *player* thread that owns every scene update
(it advances the timeline at the motion frame rate and redraws when something changed); and one
*job* thread at a time for slow work (decoding an upload, running Audio2Mesh, rendering an MP4).
Untrusted bytes are decoded and MP4s rendered in child processes. :meth:`AvatarViewer.stop` ends all
of them; :meth:`AvatarViewer.serve_forever` stops on SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import viser

from l2t_gs.errors import L2TError
from l2t_gs.gaussians import load_avatar
from l2t_gs.gaussians.avatar_io import resolve_avatar_dir
from l2t_gs.io.tempfiles import make_temp_dir
from l2t_gs.models.checkpoint import load_model
from l2t_gs.models.life import life_track
from l2t_gs.motion.life import LifeConfig, LifeRig

from .access import LOOPBACK_NAMES, AccessPolicy, choose_port, new_token
from .render_job import run_render_child
from .state import (
    CAMERA_PRESETS,
    JAW_RANGE,
    PIPELINE_CAMERAS,
    SPLAT_SCALE,
    CameraPose,
    Motion,
    Timeline,
    camera_pose,
    default_model_path,
    expression_sliders,
    mesh_edges,
    pose_offset,
    rgb_from_sh,
    splat_arrays,
)
from .uploads import (
    MAX_CLIENT_INFLIGHT_BYTES,
    MAX_TOTAL_INFLIGHT_BYTES,
    MAX_UPLOAD_BYTES,
    AudioClip,
    UploadRejected,
    accept_upload,
    check_upload_header,
    display_name,
    load_local_audio,
)
from .viser_adapter import install_upload_size_guard, start_server

if TYPE_CHECKING:
    from l2t_gs.models.audio2mesh import Audio2Mesh

    from .viser_adapter import ProgressBarHandle, UploadSizeGuard

WIREFRAME_RGB = (30, 30, 30)
#: A viser GUI event (of any handle type), for :meth:`AvatarViewer._guarded`.
_Event = TypeVar("_Event", bound="viser.GuiEvent[Any]")


@dataclass
class ViewerOptions:
    """What ``l2t-gs view`` serves: the avatar, optional audio and model, where to listen."""

    avatar: str = "default"
    audio: str | None = None
    model: str | None = None  # checkpoint or run dir; None: the shipped default model if there is one
    host: str = "127.0.0.1"
    port: int = 8080
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    #: Caps on upload bytes in flight (see :mod:`l2t_gs.viewer.uploads`); never below ``max_upload_bytes``.
    max_client_inflight_bytes: int = MAX_CLIENT_INFLIGHT_BYTES
    max_total_inflight_bytes: int = MAX_TOTAL_INFLIGHT_BYTES
    #: False (``--no-token``): no token in the URL (the Host and Origin checks stay).
    token: bool = True
    head_motion: str = "natural"  # still | natural | procedural (l2t_gs.motion.life.LifeConfig)
    blinks: str = "on"
    motion_scale: float = 1.0
    seed: int = 0

    def life(self) -> LifeConfig:
        """The head-motion, blink and gaze options of the played motion and of "Render MP4"."""
        return LifeConfig(self.head_motion, self.blinks, self.motion_scale, self.seed)


class _Children:
    """Child processes of running jobs (killed on shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []

    def add(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs = [p for p in self._procs if p.poll() is None] + [proc]

    def kill_all(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)


def _log(message: str) -> None:
    print(f"l2t-gs view: {message}", file=sys.stderr, flush=True)


class AvatarViewer:
    """The viewer. ``AvatarViewer(options).start()`` serves it; ``stop()`` ends it and every thread it started.

    Raises :class:`L2TError` at construction for a bad avatar, audio file or explicitly given model.
    """

    def __init__(self, options: ViewerOptions, log: Callable[[str], None] = _log) -> None:
        self.options = options
        options.life().validate()
        self._log = log
        self.avatar_dir = resolve_avatar_dir(options.avatar).resolve()
        self.avatar = load_avatar(self.avatar_dir)
        self.neutral = self.avatar.neutral_vertices().float()
        self._rgbs = rgb_from_sh(self.avatar.sh)
        self._edges = mesh_edges(self.avatar.faces.numpy())
        self._expr_sliders = expression_sliders(self.avatar.head_model)

        self.model: Audio2Mesh | None = None
        self.model_path: Path | None = None
        self.model_note = ""
        self._load_model(options.model)
        self.audio: AudioClip | None = None
        if options.audio is not None:
            self.audio = load_local_audio(options.audio)

        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._stopped = False
        self._children = _Children()
        self._job: threading.Thread | None = None
        self._player: threading.Thread | None = None
        self.timeline = Timeline()
        self.motion: Motion | None = None
        self._dirty = True
        self._pose_values: dict[str, float] = {}
        self._pose_changed = False
        self._offset: torch.Tensor | None = None
        self._want_wireframe = False
        self._want_splats = True
        self._camera = "front"
        self.status = ""
        self.frames_drawn = 0
        self.server: viser.ViserServer | None = None
        self._splats: viser.GaussianSplatHandle | None = None
        self._mesh: viser.LineSegmentsHandle | None = None
        self._upload_guard: UploadSizeGuard | None = None
        self.url = ""
        self.access: AccessPolicy | None = None
        self._refusals: set[str] = set()
        self.workdir = make_temp_dir(None, "view")  # removed by a later run if this one is killed

    # ------------------------------------------------------------------ setup
    def _load_model(self, spec: str | None) -> None:
        """Load ``--model`` (errors are fatal) or the shipped default model (errors become a GUI note)."""
        path = Path(spec) if spec else default_model_path()
        if path is None:
            self.model_note = "no Audio2Mesh model available (start with --model PATH to animate audio)"
            return
        try:
            self.model = self._open_model(path)
            self.model_path = path
        except L2TError as exc:
            if spec:
                raise
            self.model_note = f"the default model could not be used ({exc})"

    def _open_model(self, path: Path) -> Audio2Mesh:
        try:
            model = load_model(path)
        except L2TError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. torch.load failing on a file that is no checkpoint
            raise L2TError(f"cannot load the Audio2Mesh model {path} ({type(exc).__name__}: {exc})") from None
        if model.n_verts != self.avatar.n_verts:
            raise L2TError(
                f"model {path} predicts {model.n_verts} vertices but avatar '{self.avatar.name}' has "
                f"{self.avatar.n_verts}: their topologies differ"
            )
        return model

    def start(self) -> str:
        """Start serving; returns the page's URL (with its token).

        Raises :class:`L2TError` in one line when the address cannot be listened on or no port is free;
        says on the log when the port moved because ``options.port`` was taken.
        """
        opts = self.options
        port = choose_port(opts.host, opts.port)
        self.access = access = AccessPolicy(host=opts.host, port=port, token=new_token() if opts.token else None)
        self.server = server = start_server(opts.host, port, access, self._refused)
        if server.get_port() != opts.port:
            self._log(f"port {opts.port} is taken: serving on port {server.get_port()} instead")
        self.url = access.url(_url_host(server.get_host()))
        server.scene.set_up_direction("+y")
        pose = camera_pose("front", self.neutral, aspect=1.0)
        cam = server.initial_camera
        cam.position, cam.look_at, cam.up = pose.position, pose.look_at, pose.up
        cam.fov = float(np.deg2rad(pose.fov_deg))
        first = splat_arrays(self.avatar, self.neutral, self._rgbs)
        self._splats = server.scene.add_gaussian_splats(
            "/avatar", first.centers, first.covariances, first.rgbs, first.opacities, scale=1.0 / SPLAT_SCALE
        )
        self._build_gui(server.gui)
        self._install_upload_guard(server)
        self._player = threading.Thread(target=self._play_loop, name="l2t-view-player", daemon=True)
        self._player.start()
        if self.audio is not None:
            self._start_job(functools.partial(self._animate, self.audio, None), None)
        else:
            self._set_status(self._idle_status())
        if opts.host.strip("[]").lower() not in LOOPBACK_NAMES:
            who = "anyone who can reach it" + (" and has the URL's token" if access.token else "")
            self._log(f"warning: listening on {opts.host}: {who} can use the viewer (plain HTTP, no encryption)")
        return self.url

    def _refused(self, reason: str) -> None:
        """Log a refused request, each distinct reason once (a hostile page may retry in a loop)."""
        if reason not in self._refusals and len(self._refusals) < 100:
            self._refusals.add(reason)
            self._log(reason)

    def _idle_status(self) -> str:
        parts = [f"Avatar '{self.avatar.name}' ({self.avatar.num_splats} splats)."]
        if self.model is not None:
            parts.append("Upload speech audio to animate it.")
        else:
            parts.append(self.model_note[0].upper() + self.model_note[1:] + ".")
        return " ".join(parts)

    def _build_gui(self, gui: viser.GuiApi) -> None:
        self._md_status: viser.GuiMarkdownHandle = gui.add_markdown("")
        with gui.add_folder("Playback"):
            self._btn_play: viser.GuiButtonHandle = gui.add_button("Play", icon=viser.Icon.PLAYER_PLAY, disabled=True)
            self._sl_frame: viser.GuiSliderHandle[int] = gui.add_slider("Frame", 0, 1, 1, 0, disabled=True)
            self._sl_speed: viser.GuiSliderHandle[float] = gui.add_slider("Speed", 0.25, 2.0, 0.25, 1.0)
            self._cb_loop: viser.GuiCheckboxHandle = gui.add_checkbox("Loop", True)
        with gui.add_folder("Audio"):
            self._upload: viser.GuiUploadButtonHandle = gui.add_upload_button(
                "Upload audio",
                icon=viser.Icon.UPLOAD,
                mime_type="audio/*",
                hint=f"wav, flac, ogg, mp3 or m4a; up to {self.options.max_upload_bytes / 1024**2:.0f} MB",
            )
            self._progress: ProgressBarHandle = gui.add_progress_bar(0.0, visible=False, animated=True)
            self._btn_mp4: viser.GuiButtonHandle = gui.add_button(
                "Render MP4", icon=viser.Icon.MOVIE, disabled=self.audio is None, hint="render with `l2t-gs render`"
            )
        with gui.add_folder("View"):
            self._cams: viser.GuiButtonGroupHandle = gui.add_button_group("Camera", CAMERA_PRESETS)
            self._cb_splats: viser.GuiCheckboxHandle = gui.add_checkbox("Splats", True)
            self._cb_wire: viser.GuiCheckboxHandle = gui.add_checkbox(
                "Mesh wireframe", False, hint="the deformed mesh's edges (hide the splats to see all of it)"
            )
        with gui.add_folder("Pose (while paused)"):
            self._sl_jaw: viser.GuiSliderHandle[float] = gui.add_slider(
                "jaw open", JAW_RANGE[0], JAW_RANGE[1], 0.01, 0.0
            )
            self._sl_expr: list[viser.GuiSliderHandle[float]] = [
                gui.add_slider(s.label, s.low, s.high, 0.01, 0.0) for s in self._expr_sliders
            ]
            self._btn_reset: viser.GuiButtonHandle = gui.add_button("Reset pose")

        self._btn_play.on_click(self._guarded(self._on_play))
        self._sl_frame.on_update(self._guarded(self._on_frame))
        self._sl_speed.on_update(self._guarded(self._on_speed))
        self._cb_loop.on_update(self._guarded(self._on_loop))
        self._upload.on_upload(self._guarded(self._on_upload))
        self._btn_mp4.on_click(self._guarded(self._on_render))
        for slider in (self._sl_jaw, *self._sl_expr):
            slider.on_update(self._guarded(self._on_pose))
        self._btn_reset.on_click(self._guarded(lambda _e: self._clear_pose()))
        self._cams.on_click(self._guarded(self._on_camera))
        self._cb_wire.on_update(self._guarded(self._on_wireframe))
        self._cb_splats.on_update(self._guarded(self._on_wireframe))

    def _guarded(self, fn: Callable[[_Event], None]) -> Callable[[_Event], None]:
        """A GUI callback that reports errors in the GUI instead of raising in viser's thread pool."""

        def run(event: _Event) -> None:
            try:
                fn(event)
            except L2TError as exc:
                self._error(event.client, str(exc))
            except Exception as exc:  # noqa: BLE001 - a callback must never take the server down
                self._log("".join(traceback.format_exception(exc)).rstrip())
                self._error(event.client, f"internal error: {type(exc).__name__}: {exc}")

        return run

    def _install_upload_guard(self, server: viser.ViserServer) -> None:
        """Drop uploads over the per-file limit or the caps on bytes in flight before their bytes are buffered.

        Needs viser internals (:mod:`l2t_gs.viewer.viser_adapter`); the size is checked again after the
        upload in any case.
        """
        limit = self.options.max_upload_bytes

        def reject(client: viser.ClientHandle | None, name: str, size: int, reason: str | None) -> None:
            if reason is None:  # over the per-file limit
                try:
                    check_upload_header(name, size, limit)
                    reason = f"'{display_name(name)}' is larger than the {limit / 1024**2:.0f} MB limit"
                except UploadRejected as exc:
                    reason = str(exc)
            self._error(client, f"upload rejected: {reason}")

        client_limit = max(self.options.max_client_inflight_bytes, limit)
        total_limit = max(self.options.max_total_inflight_bytes, client_limit)
        self._upload_guard = install_upload_size_guard(
            server, limit, reject, client_limit=client_limit, total_limit=total_limit
        )
        if self._upload_guard is None:  # pragma: no cover - other viser versions
            self._log("note: early upload size check unavailable with this viser version")

    # ------------------------------------------------------------------ status
    def _set_status(self, text: str, *, error: bool = False, log: bool = True) -> None:
        """Show plain ``text`` in the status line (escaped for Markdown) and log it."""
        self.status = text
        if self.server is not None:
            self._md_status.content = ("**Error:** " if error else "") + _md(text)
        if log:
            self._log(("error: " if error else "") + text)

    def _error(self, client: viser.ClientHandle | None, text: str) -> None:
        self._set_status(text, error=True)
        if client is not None:
            with contextlib.suppress(Exception):
                client.add_notification("l2t-gs", text, color="red", auto_close_seconds=10.0)

    def _notify(self, client: viser.ClientHandle | None, text: str) -> None:
        if client is not None:
            with contextlib.suppress(Exception):
                client.add_notification("l2t-gs", text, auto_close_seconds=6.0)

    # ------------------------------------------------------------------ GUI callbacks
    def _on_play(self, _event: viser.GuiEvent[viser.GuiButtonHandle]) -> None:
        with self._lock:
            if self.timeline.playing:
                self.timeline.pause()
            elif self.timeline.play():
                self._clear_pose()
        self._wake.set()

    def _on_frame(self, event: viser.GuiEvent[viser.GuiSliderHandle[int]]) -> None:
        if event.client is None:  # set by the player
            return
        with self._lock:
            self.timeline.seek(int(self._sl_frame.value))
            self._dirty = True
        self._wake.set()

    def _on_speed(self, _event: viser.GuiEvent[viser.GuiSliderHandle[float]]) -> None:
        with self._lock:
            self.timeline.speed = float(self._sl_speed.value)

    def _on_loop(self, _event: viser.GuiEvent[viser.GuiCheckboxHandle]) -> None:
        with self._lock:
            self.timeline.loop = bool(self._cb_loop.value)

    def _on_pose(self, event: viser.GuiEvent[viser.GuiSliderHandle[float]]) -> None:
        if event.client is None:  # reset by the viewer
            return
        with self._lock:
            if self.timeline.playing:
                return
            self._pose_values = {"jaw": float(self._sl_jaw.value)}
            self._pose_values.update(
                {str(s.index): float(h.value) for s, h in zip(self._expr_sliders, self._sl_expr, strict=True)}
            )
            self._pose_changed = True
        self._wake.set()

    def _clear_pose(self) -> None:
        """Forget the slider pose (sliders are set back to 0 by the player)."""
        with self._lock:
            self._pose_values = {}
            self._pose_changed = True
        self._wake.set()

    def _on_camera(self, event: viser.GuiEvent[viser.GuiButtonGroupHandle]) -> None:
        preset = str(event.target.value)
        self._camera = preset
        client = event.client
        if client is None:
            return
        pose = camera_pose(preset, self.neutral, aspect=client.camera.aspect)
        set_client_camera(client, pose)

    def _on_wireframe(self, _event: viser.GuiEvent[viser.GuiCheckboxHandle]) -> None:
        with self._lock:
            self._want_wireframe = bool(self._cb_wire.value)
            self._want_splats = bool(self._cb_splats.value)
            self._dirty = True
        self._wake.set()

    def _on_upload(self, event: viser.GuiEvent[viser.GuiUploadButtonHandle]) -> None:
        file = event.target.value
        name, content = str(file.name), bytes(file.content)
        if not self._start_job(functools.partial(self._accept_and_animate, name, content, event.client), event.client):
            self._error(event.client, "busy: wait for the current job to finish, then upload again")

    def _on_render(self, event: viser.GuiEvent[viser.GuiButtonHandle]) -> None:
        if self.audio is None:
            raise L2TError("upload audio first")
        if not self._start_job(functools.partial(self._render_mp4, event.client), event.client):
            self._error(event.client, "busy: wait for the current job to finish")

    # ------------------------------------------------------------------ jobs
    def _start_job(self, job: Callable[[], None], client: viser.ClientHandle | None) -> bool:
        """Run ``job`` on the job thread (errors go to ``client``); False when a job runs or the viewer stops."""
        with self._lock:
            if self._stopping.is_set() or (self._job is not None and self._job.is_alive()):
                return False

            def run() -> None:
                try:
                    job()
                except Exception as exc:  # noqa: BLE001 - a job must never take the server down
                    if self._stopping.is_set():
                        return
                    if isinstance(exc, UploadRejected):
                        self._error(client, f"upload rejected: {exc}")
                    elif isinstance(exc, L2TError):
                        self._error(client, str(exc))
                    else:
                        self._log("".join(traceback.format_exception(exc)).rstrip())
                        self._error(client, f"internal error: {type(exc).__name__}: {exc}")
                finally:
                    self._progress.visible = False

            self._job = threading.Thread(target=run, name="l2t-view-job", daemon=True)
            self._job.start()
            return True

    def _accept_and_animate(self, name: str, content: bytes, client: viser.ClientHandle | None) -> None:
        self._set_status("Checking the upload...", log=False)
        clip = accept_upload(
            name, content, self.workdir, max_bytes=self.options.max_upload_bytes, on_start=self._children.add
        )
        old, self.audio = self.audio, clip
        if old is not None and old.path.parent == self.workdir:
            old.path.unlink(missing_ok=True)
        self._btn_mp4.disabled = False
        self._notify(client, f"accepted '{clip.name}' ({clip.seconds:.1f} s)")
        self._animate(clip, client)

    def _animate(self, clip: AudioClip, client: viser.ClientHandle | None) -> None:
        """Run Audio2Mesh on ``clip`` (progress in the GUI), then play the motion."""
        if self.model is None:
            self._set_status(f"Audio '{clip.name}' ({clip.seconds:.1f} s) loaded; {self.model_note}.")
            return
        model = self.model
        total = model.n_frames(clip.samples.shape[0], model.fps)
        self._set_status(f"Running Audio2Mesh on '{clip.name}' ({clip.seconds:.1f} s)...")
        self._progress.value, self._progress.visible = 0.0, True
        t0 = time.perf_counter()
        chunks, done = [], 0
        life = life_track(clip.samples, total, model.fps, self.options.life())
        life_rig = LifeRig(self.avatar.head_model, self.neutral) if life is not None else None
        for chunk in model.predict_stream(clip.samples, self.neutral):
            if self._stopping.is_set():
                return
            if life_rig is not None:
                chunk = life_rig.apply(chunk.detach().float().cpu(), life, done)
            chunks.append((chunk.detach().float().cpu() - self.neutral).half())
            done += int(chunk.shape[0])
            self._progress.value = float(min(100.0, 100.0 * done / max(total, 1)))
        motion = Motion(torch.cat(chunks), self.neutral, model.fps)
        with self._lock:
            self.motion = motion
            self.timeline.load(len(motion), motion.fps)
            self.timeline.speed = float(self._sl_speed.value)
            self.timeline.loop = bool(self._cb_loop.value)
            self._pose_values, self._pose_changed = {}, True
            self.timeline.play()
            self._dirty = True
        self._sl_frame.max = max(len(motion) - 1, 1)
        self._sl_frame.value = 0
        self._sl_frame.disabled = False
        self._btn_play.disabled = False
        self._wake.set()
        self._set_status(
            f"Playing '{clip.name}': {len(motion)} frames at {motion.fps:g} fps "
            f"(Audio2Mesh took {time.perf_counter() - t0:.1f} s)."
        )
        self._notify(client, "motion ready")

    def _render_mp4(self, client: viser.ClientHandle | None) -> None:
        clip = self.audio
        if clip is None:
            raise L2TError("upload audio first")
        camera = self._camera if self._camera in PIPELINE_CAMERAS else "front"
        out = self.workdir / f"{Path(clip.name).stem or 'speech'}.mp4"
        options = {
            "avatar": str(self.avatar_dir),
            "model": str(self.model_path) if self.model_path is not None else None,
            "camera": camera,
            "quiet": False,
            "head_motion": self.options.head_motion,
            "blinks": self.options.blinks,
            "motion_scale": self.options.motion_scale,
            "seed": self.options.seed,
        }
        self._set_status(f"Rendering '{out.name}' ({camera} camera)...")
        self._progress.value, self._progress.visible = 0.0, True

        def progress(done: int, total: int) -> None:
            self._progress.value = float(min(100.0, 100.0 * done / max(total, 1)))

        t0 = time.perf_counter()
        try:
            run_render_child(clip.path, out, options, on_progress=progress, on_start=self._children.add)
            if self._stopping.is_set():
                return
            data = out.read_bytes()
        finally:
            out.unlink(missing_ok=True)
        if client is not None:
            client.send_file_download(out.name, data)
        elif self.server is not None:
            self.server.send_file_download(out.name, data)
        self._set_status(
            f"Rendered '{out.name}' ({len(data) / 1024**2:.1f} MB) in {time.perf_counter() - t0:.0f} s: "
            "sent for download."
        )

    # ------------------------------------------------------------------ player
    def _play_loop(self) -> None:
        last = time.monotonic()
        shown = (-1, False)  # (frame, playing) last drawn / synced
        while not self._stopping.is_set():
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                frame = self.timeline.advance(now - last)
                playing = self.timeline.playing
                dirty, self._dirty = self._dirty, False
                pose_changed, self._pose_changed = self._pose_changed, False
                pose = dict(self._pose_values)
                fps = self.timeline.fps * max(self.timeline.speed, 1e-3)
            last = now
            try:
                if pose_changed:
                    self._apply_pose(pose)
                if dirty or pose_changed or frame != shown[0]:
                    self._draw(frame, playing)
                if (frame, playing) != shown:
                    self._sync_controls(frame, playing, playing != shown[1])
                shown = (frame, playing)
            except Exception as exc:  # noqa: BLE001 - keep playing; report once per failure
                self._log("".join(traceback.format_exception(exc)).rstrip())
                self._set_status(f"while drawing: {exc}", error=True, log=False)
                self._wake.wait(1.0)
            if playing:
                self._wake.wait(max(0.005, 1.0 / fps - (time.monotonic() - now)))  # never spin
            else:
                self._wake.wait(0.5)

    def _apply_pose(self, pose: dict[str, float]) -> None:
        jaw = pose.get("jaw", 0.0)
        expr = {int(k): v for k, v in pose.items() if k != "jaw"}
        offset = pose_offset(self.avatar, jaw, expr)
        with self._lock:
            self._offset = offset
        if not pose:  # cleared: show the sliders at 0
            for slider in (self._sl_jaw, *self._sl_expr):
                slider.value = 0.0

    def _draw(self, frame: int, playing: bool) -> None:
        with self._lock:
            motion, offset, wire, show = self.motion, self._offset, self._want_wireframe, self._want_splats
        verts = motion.vertices(frame) if motion is not None and len(motion) else self.neutral
        if offset is not None and not playing:
            verts = verts + offset
        arrays = splat_arrays(self.avatar, verts, self._rgbs)
        server, splats = self.server, self._splats
        assert server is not None and splats is not None, "the player runs only after start()"
        with server.atomic():
            splats.set_gaussians(arrays.centers, arrays.covariances, arrays.rgbs, arrays.opacities)
            if splats.visible != show:
                splats.visible = show
            if wire:
                points = verts.numpy()[self._edges]
                if self._mesh is None:
                    self._mesh = server.scene.add_line_segments(
                        "/mesh", points, WIREFRAME_RGB, thickness=1.0, thickness_units="screen"
                    )
                else:
                    self._mesh.points = points
            elif self._mesh is not None:
                self._mesh.remove()
                self._mesh = None
        self.frames_drawn += 1

    def _sync_controls(self, frame: int, playing: bool, state_changed: bool) -> None:
        if self.motion is not None:
            self._sl_frame.value = frame
        if state_changed:
            self._btn_play.label = "Pause" if playing else "Play"
            self._btn_play.icon = viser.Icon.PLAYER_PAUSE if playing else viser.Icon.PLAYER_PLAY
            for slider in (self._sl_jaw, *self._sl_expr):
                slider.disabled = playing

    # ------------------------------------------------------------------ lifecycle
    def serve_forever(self) -> None:
        """Serve until SIGINT or SIGTERM (or :meth:`stop` from another thread), then stop cleanly."""
        if self.server is None:
            self.start()
        got = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda _s, _f: got.set())
        try:
            while not got.is_set() and not self._stopping.is_set():
                got.wait(0.25)
        finally:
            self._log("stopping")
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def stop(self) -> None:
        """Stop playback, jobs, child processes and the server; delete temporary files. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        self._wake.set()
        self._children.kill_all()
        for thread in (self._player, self._job):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=30.0)
        self._children.kill_all()
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def set_client_camera(client: viser.ClientHandle, pose: CameraPose) -> None:
    """Point a viser client's camera (position, look-at, up, field of view) atomically."""
    try:
        with client.atomic():
            client.camera.fov = float(np.deg2rad(pose.fov_deg))
            client.camera.up_direction = pose.up
            client.camera.position = pose.position  # moves look_at along: set look_at after it
            client.camera.look_at = pose.look_at
    except AssertionError:  # viser asserts until the browser has reported its camera once
        raise L2TError("the browser has not reported its camera yet; try again") from None


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _md(text: str) -> str:
    """Text safe to embed in Markdown (no markup, no HTML)."""
    return "".join(f"\\{c}" if c in "\\`*_{}[]()#+-.!|<>~" else c for c in str(text))
