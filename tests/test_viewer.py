"""The viser viewer: non-GUI logic, the viewer in-process, and ``l2t-gs view`` in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.errors import L2TError
from l2t_gs.render.views import RENDER_CAMERAS, STILL_VIEWS
from l2t_gs.viewer import render_job, uploads
from l2t_gs.viewer.state import (
    CAMERA_PRESETS,
    PIPELINE_CAMERAS,
    SPLAT_SCALE,
    Motion,
    Timeline,
    camera_pose,
    covariances_from_quats_scales,
    expression_sliders,
    mesh_edges,
    pose_offset,
    rgb_from_sh,
    slider_params,
    splat_arrays,
)
from l2t_gs.viewer.uploads import UploadRejected, accept_upload, check_upload_header, display_name

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def avatar():
    from l2t_gs.gaussians import load_avatar

    return load_avatar("default")


def _speech(seconds: float, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t)
    return (0.3 * env * (np.sin(2 * np.pi * 220 * t) + 0.5 * np.sin(2 * np.pi * 880 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Speech-like clips (wav, flac, ogg at 22.05 kHz) and a tiny random Audio2Mesh checkpoint for the built-in head."""
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("viewer-media")
    x = _speech(2.0, 22050)
    out = {}
    for ext, subtype in (("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")):
        out[ext] = root / f"speech.{ext}"
        sf.write(str(out[ext]), x, 22050, subtype=subtype)
    torch.manual_seed(0)
    cfg = Audio2MeshConfig(output="rig", d_model=32, n_layers=1, enc_dim=32, enc_layers=1, dropout=0.0)
    model = Audio2Mesh(cfg, ["spk"], 7931)
    for p in model.decoder.out.parameters():
        torch.nn.init.normal_(p, std=0.05)
    out["model"] = save_checkpoint(root / "tiny.pt", model.eval())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def _http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return int(resp.status)


# --------------------------------------------------------------------------- splats
def _rotation_brute_force(q: np.ndarray) -> np.ndarray:
    """Rotation of a (non-unit) wxyz quaternion via its axis and angle (Rodrigues)."""
    q = q / np.linalg.norm(q)
    angle = 2.0 * math.atan2(np.linalg.norm(q[1:]), q[0])
    axis = q[1:] / max(np.linalg.norm(q[1:]), 1e-300)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def test_covariances_match_brute_force():
    rng = np.random.default_rng(0)
    quats = rng.normal(size=(200, 4)) * rng.uniform(0.1, 3.0, size=(200, 1))  # not normalised
    scales = rng.uniform(1e-3, 0.2, size=(200, 3))
    got = covariances_from_quats_scales(quats, scales)
    for i in range(200):
        r = _rotation_brute_force(quats[i])
        expect = sum(scales[i, k] ** 2 * np.outer(r[:, k], r[:, k]) for k in range(3))
        np.testing.assert_allclose(got[i], expect, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got, got.transpose(0, 2, 1), atol=1e-7)
    # torch inputs agree and identity quaternions give diagonal covariances
    same = covariances_from_quats_scales(torch.tensor(quats), torch.tensor(scales))
    np.testing.assert_allclose(same, got, rtol=1e-5, atol=1e-9)
    diag = covariances_from_quats_scales(np.tile([1.0, 0, 0, 0], (2, 1)), np.array([[1.0, 2, 3], [0.5, 0.5, 0.5]]))
    np.testing.assert_allclose(diag[0], np.diag([1.0, 4, 9]), atol=1e-6)
    with pytest.raises(L2TError):
        covariances_from_quats_scales(np.zeros((3, 3)), np.zeros((3, 3)))


def test_rgb_from_sh_uses_dc_plus_half_clamped():
    from l2t_gs.render.sh import SH_C0

    sh = np.zeros((3, 4, 3), np.float32)
    sh[0, 0] = 0.0
    sh[1, 0] = 10.0
    sh[2, 0] = [-10.0, 0.2 / SH_C0, -0.3 / SH_C0]
    sh[:, 1:] = 5.0  # higher degrees are ignored
    rgb = rgb_from_sh(sh)
    np.testing.assert_allclose(rgb, [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [0.0, 0.7, 0.2]], atol=1e-6)


def test_splat_arrays_follow_the_mesh_and_survive_float16(avatar):
    neutral = avatar.neutral_vertices()
    arrays = splat_arrays(avatar, neutral)
    frames = avatar.deform(neutral[None])
    n = avatar.num_splats
    assert arrays.centers.shape == (n, 3) and arrays.covariances.shape == (n, 3, 3)
    assert arrays.rgbs.shape == (n, 3) and arrays.opacities.shape == (n, 1)
    np.testing.assert_allclose(arrays.centers / SPLAT_SCALE, frames.means[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(arrays.opacities[:, 0], frames.opacities.numpy(), atol=1e-6)
    # viser sends the covariance as float16: the scaled variances of typical splats stay precise
    var = np.trace(arrays.covariances, axis1=1, axis2=2)
    typical = (var > np.quantile(var, 0.1)) & (var < np.quantile(var, 0.9))
    f16 = arrays.covariances[typical].astype(np.float16).astype(np.float32)
    rel = np.abs(np.trace(f16, axis1=1, axis2=2) - var[typical]) / var[typical]
    assert float(np.median(rel)) < 1e-3 and float(rel.max()) < 1e-2
    # a different mesh moves the splats
    jaw = avatar.vertices_from_params({"jaw_pose": torch.tensor([0.3, 0.0, 0.0])})[0]
    moved = splat_arrays(avatar, jaw, arrays.rgbs)
    assert float(np.abs(moved.centers - arrays.centers).max()) > 0.005 * SPLAT_SCALE


def test_mesh_edges_are_unique():
    tetra = np.array([[0, 1, 2], [0, 3, 1], [1, 3, 2], [2, 3, 0]])
    edges = mesh_edges(tetra)
    assert edges.tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]


# --------------------------------------------------------------------------- timeline
def test_timeline_plays_loops_and_stops():
    tl = Timeline()
    assert not tl.play() and tl.frame == 0 and tl.advance(1.0) == 0
    tl.load(10, fps=5.0)
    assert not tl.playing
    assert tl.advance(1.0) == 0  # paused: no motion
    assert tl.play()
    assert tl.advance(0.5) == 2  # 0.5 s at 5 fps
    tl.speed = 2.0
    assert tl.advance(0.5) == 7
    assert tl.advance(0.4) == 1 and tl.playing  # wrapped around: 7 + 4 = 11 -> 1
    tl.loop, tl.speed = False, 1.0
    assert tl.advance(10.0) == 9 and not tl.playing  # stops on the last frame
    assert tl.play() and tl.frame == 0  # playing again starts over
    assert tl.seek(42) == 9 and tl.seek(-3) == 0 and tl.seek(4) == 4
    tl.pause()
    assert tl.advance(1.0) == 4
    tl.load(3, fps=30.0)
    assert tl.frame == 0 and not tl.playing
    with pytest.raises(L2TError):
        tl.load(3, fps=0.0)


def test_motion_stores_offsets_compactly(avatar):
    neutral = avatar.neutral_vertices()
    seq = neutral[None] + torch.randn(4, *neutral.shape) * 0.003
    motion = Motion((seq - neutral).half(), neutral, 30.0)
    assert len(motion) == 4 and motion.offsets.dtype == torch.float16
    assert float((motion.vertices(2) - seq[2]).abs().max()) < 1e-5


# --------------------------------------------------------------------------- cameras and pose sliders
def test_camera_presets_frame_the_head(avatar):
    verts = avatar.neutral_vertices()
    lo, hi = verts.min(0).values.numpy(), verts.max(0).values.numpy()
    centre = (lo + hi) / 2
    for preset, direction in (("front", [0, 0, 1]), ("side", [1, 0, 0])):
        pose = camera_pose(preset, verts, aspect=1.5)
        np.testing.assert_allclose(pose.look_at, centre, atol=1e-6)
        offset = np.subtract(pose.position, pose.look_at)
        assert 0.3 < np.linalg.norm(offset) < 3.0
        np.testing.assert_allclose(offset / np.linalg.norm(offset), direction, atol=1e-6)
    tq = np.subtract(camera_pose("three-quarter", verts).position, centre)
    assert tq[0] > 0.2 * np.linalg.norm(tq) and tq[2] > 0.5 * np.linalg.norm(tq)
    with pytest.raises(L2TError):
        camera_pose("orbit", verts)


def test_pose_sliders_for_the_builtin_head(avatar):
    sliders = expression_sliders(avatar.head_model)
    names = [s.label for s in sliders]
    assert names[:4] == ["lip_close", "lip_press", "pucker", "spread"] and len(sliders) == 12
    assert all((s.low, s.high) == (0.0, 1.0) for s in sliders)
    unnamed = types.SimpleNamespace(exprdirs=torch.zeros(5, 3, 100), expr_names=[])
    assert [(s.label, s.low) for s in expression_sliders(unnamed)][:2] == [("expr 0", -2.0), ("expr 1", -2.0)]
    params = slider_params(0.2, {3: 0.5, 99: 1.0}, 12)
    assert params["expr"][3] == 0.5 and float(params["expr"].abs().sum()) == 0.5
    assert params["jaw_pose"].tolist() == pytest.approx([0.2, 0.0, 0.0])
    assert pose_offset(avatar, 0.0, {0: 0.0}) is None
    offset = pose_offset(avatar, 0.3, {})
    lower = torch.as_tensor(np.asarray(avatar.head_model.masks["lip_lower"]))
    assert float(offset[lower, 1].mean()) < -0.005  # the jaw opens: the lower lip goes down


# --------------------------------------------------------------------------- uploads
def test_upload_header_checks():
    assert check_upload_header("Speech.MP3", 1000) == ".mp3"
    for name, size, reason in (
        ("notes.txt", 10, "not an accepted audio file"),
        ("speech", 10, "not an accepted audio file"),
        ("speech.wav", 0, "empty"),
        ("speech.wav", uploads.MAX_UPLOAD_BYTES + 1, "limit is 50.0 MB"),
    ):
        with pytest.raises(UploadRejected, match=reason):
            check_upload_header(name, size)
    assert display_name("../../etc/pass<wd>.wav") == "pass_wd_.wav"
    assert display_name("a*b`c|d.wav") == "a_b_c_d.wav"
    assert display_name("") == "upload"


def test_uploads_are_validated_by_decoding(tmp_path, media, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    for ext in ("wav", "flac", "ogg"):
        clip = accept_upload(f"My Speech.{ext}", media[ext].read_bytes(), work)
        assert clip.path.parent == work and clip.path.suffix == f".{ext}"
        assert clip.samples.dtype == np.float32 and abs(clip.seconds - 2.0) < 0.05
        clip.path.unlink()
    wav = media["wav"].read_bytes()
    bad = {
        "noise.mp3": os.urandom(20000),
        "text.wav": b"RIFF this is not really a wave file" * 50,
        "cut.flac": media["flac"].read_bytes()[:60],
        "empty.ogg": b"",
        "speech.exe": wav,
    }
    for name, content in bad.items():
        with pytest.raises(UploadRejected):
            accept_upload(name, content, work)
    with pytest.raises(UploadRejected, match="limit"):
        accept_upload("speech.wav", wav, work, max_bytes=1000)
    monkeypatch.setattr(uploads, "MAX_AUDIO_SECONDS", 1.0)
    with pytest.raises(UploadRejected, match="up to 1 s"):
        accept_upload("speech.wav", wav, work)
    assert list(work.iterdir()) == []  # nothing is kept from rejected uploads


def test_decoding_runs_out_of_memory_in_the_child_only(tmp_path, media):
    path = tmp_path / "speech.wav"
    path.write_bytes(media["wav"].read_bytes())
    with pytest.raises(UploadRejected):
        uploads.decode_isolated(path, "'speech.wav'", memory_bytes=32 * 1024**2)
    assert uploads.decode_isolated(path, "'speech.wav'").shape[0] == 32000


# --------------------------------------------------------------------------- MP4 through the pipeline
def test_render_pipeline_call(monkeypatch):
    from l2t_gs.pipeline import RenderConfig

    calls = []
    monkeypatch.setattr(render_job, "render_video", lambda audio, out, cfg: calls.append((audio, out, cfg)))
    render_job.render_with_pipeline("a.wav", "o.mp4", {"avatar": "/x", "camera": "side", "quiet": False})
    assert calls == [("a.wav", "o.mp4", RenderConfig(avatar="/x", camera="side"))]
    # every camera button of the viewer is one `l2t-gs render` accepts
    assert set(PIPELINE_CAMERAS) <= set(RENDER_CAMERAS) and set(CAMERA_PRESETS) == set(STILL_VIEWS)


# --------------------------------------------------------------------------- the viewer in-process
class _Client:
    """Stands in for a viser client in GUI events."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.downloads: list[tuple[str, int]] = []
        self.camera = types.SimpleNamespace(aspect=1.5)

    def add_notification(self, title: str, body: str, **_kw) -> None:
        self.notes.append(body)

    def send_file_download(self, name: str, data: bytes) -> None:
        self.downloads.append((name, len(data)))

    def atomic(self):
        import contextlib

        return contextlib.nullcontext()


def _event(client=None, target=None):
    return types.SimpleNamespace(client=client, target=target)


def _upload(viewer, name: str, content: bytes, client) -> None:
    file = types.SimpleNamespace(name=name, content=content)
    viewer._guarded(viewer._on_upload)(_event(client, types.SimpleNamespace(value=file)))
    assert _wait(lambda: viewer._job is not None and not viewer._job.is_alive(), 60)


def test_viewer_in_process(media, monkeypatch):
    pytest.importorskip("viser")
    from l2t_gs.viewer import app, viser_adapter

    before = set(threading.enumerate())
    viewer = app.AvatarViewer(
        app.ViewerOptions(audio=str(media["wav"]), model=str(media["model"]), port=_free_port()), log=lambda _m: None
    )
    try:
        url = viewer.start()
        assert _http_status(url) == 200
        # the audio given at start is animated and plays
        assert _wait(lambda: viewer.motion is not None, 60), viewer.status
        assert len(viewer.motion) == 60 and viewer.timeline.playing
        assert _wait(lambda: viewer.timeline.frame > 0 and viewer.frames_drawn > 2, 20)
        assert not viewer._btn_play.disabled and viewer._btn_play.label == "Pause"
        # pause, scrub, pose sliders
        client = _Client()
        viewer._guarded(viewer._on_play)(_event(client))
        assert _wait(lambda: viewer._btn_play.label == "Play", 10) and not viewer.timeline.playing
        viewer._sl_frame.value = 30
        viewer._guarded(viewer._on_frame)(_event(client))
        assert viewer.timeline.frame == 30
        viewer._sl_jaw.value = 0.3
        viewer._guarded(viewer._on_pose)(_event(client))
        assert _wait(lambda: viewer._offset is not None, 10)
        drawn = viewer.frames_drawn
        viewer._guarded(viewer._on_play)(_event(client))  # playing clears the slider pose
        assert _wait(lambda: viewer._offset is None and viewer._sl_jaw.value == 0.0, 10)
        assert _wait(lambda: viewer.frames_drawn > drawn + 2, 10)
        viewer._guarded(viewer._on_play)(_event(client))
        # wireframe on and off; camera presets
        viewer._cb_wire.value = True
        assert _wait(lambda: viewer._mesh is not None, 10)
        assert viewer._mesh.points.shape == (len(viewer._edges), 2, 3)
        viewer._cb_splats.value = False
        assert _wait(lambda: not viewer._splats.visible, 10)
        viewer._cb_wire.value = False
        viewer._cb_splats.value = True
        assert _wait(lambda: viewer._mesh is None and viewer._splats.visible, 10)
        viewer._guarded(viewer._on_camera)(_event(client, types.SimpleNamespace(value="side")))
        assert viewer._camera == "side"
        side = camera_pose("side", viewer.neutral, aspect=1.5)
        assert client.camera.position == side.position and client.camera.look_at == side.look_at

        # bad uploads are rejected with a message; the server keeps serving
        for name, content in (("notes.txt", b"hello"), ("noise.mp3", os.urandom(5000)), ("x.wav", b"")):
            _upload(viewer, name, content, client)
            assert "upload rejected" in client.notes[-1], client.notes
            assert "rejected" in viewer.status
        assert _http_status(url) == 200
        # the early size guard (viser internals, all in viser_adapter) drops an over-large upload as it starts
        guard = viewer._upload_guard
        assert guard is not None, "viser_adapter no longer fits the installed viser"
        guard.transfers["t1"] = {"client_id": 0, "filename": "big.wav", "transferred_bytes": 0, "total_bytes": 10**9}
        guard.on_start(0, viser_adapter.FileTransferStartUpload("button", "t1", "big.wav", "audio/wav", 2000, 10**9))
        assert "t1" not in guard.transfers and "'big.wav' is 953.7 MB; the limit is 50.0 MB" in viewer.status

        # a good upload is animated and played
        old_motion = viewer.motion
        _upload(viewer, "take two.flac", media["flac"].read_bytes(), client)
        assert viewer.motion is not old_motion and viewer.timeline.playing, viewer.status
        assert viewer.audio.name == "take two.flac" and not viewer._btn_mp4.disabled

        # "Render MP4" (the render child stubbed: the real one is the slow test below) sends the file
        rendered = []

        def fake_render(audio_path, out_path, options, **_kw):
            rendered.append((audio_path, options["camera"]))
            out_path.write_bytes(b"mp4" * 1000)
            return out_path

        monkeypatch.setattr(app, "run_render_child", fake_render)
        viewer._guarded(viewer._on_render)(_event(client))
        assert _wait(lambda: not viewer._job.is_alive(), 30)
        assert rendered == [(viewer.audio.path, "side")] and client.downloads == [("take two.mp4", 3000)]
        assert "sent for download" in viewer.status
    finally:
        viewer.stop()
    assert _wait(lambda: set(threading.enumerate()) <= before, 15), [
        t.name for t in set(threading.enumerate()) - before
    ]
    assert not viewer.workdir.exists()


@pytest.mark.slow
def test_viewer_renders_mp4_through_the_pipeline(media):
    pytest.importorskip("viser")
    from l2t_gs.viewer import app

    viewer = app.AvatarViewer(
        app.ViewerOptions(audio=str(media["wav"]), model=str(media["model"]), port=_free_port()), log=lambda _m: None
    )
    client = _Client()
    try:
        viewer.start()
        assert _wait(lambda: viewer.motion is not None, 60)
        viewer._guarded(viewer._on_render)(_event(client))
        assert _wait(lambda: not viewer._job.is_alive(), 300)
        assert client.downloads and client.downloads[0][0] == "speech.mp4" and client.downloads[0][1] > 1000
    finally:
        viewer.stop()


# --------------------------------------------------------------------------- l2t-gs view in a browser
def _view_cmd() -> list[str]:
    """``l2t-gs view`` when the CLI registers it, else the equivalent ``python -m l2t_gs.viewer``."""
    import argparse

    from l2t_gs.cli.main import build_parser

    subs = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    script = Path(sys.executable).with_name("l2t-gs")
    if any("view" in a.choices for a in subs) and script.exists():
        return [str(script), "view"]  # the console script: independent of the cwd, unlike `python -m`
    return [sys.executable, "-m", "l2t_gs.viewer"]


class _Server:
    """``l2t-gs view`` in a subprocess; ``url`` once it serves."""

    def __init__(self, tmp_path: Path, *args: str, port: int | None = None) -> None:
        self.port = _free_port() if port is None else port
        self.log = tmp_path / f"view-{self.port}.log"
        self._err = open(self.log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [*_view_cmd(), "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
            start_new_session=True,
        )
        self.url = ""
        lines: list[str] = []

        def read() -> None:
            for line in self.proc.stdout:
                lines.append(line)
                m = re.search(r"serving .* at (http://\S+)", line)
                if m:
                    self.url = m.group(1)

        threading.Thread(target=read, daemon=True).start()
        if not _wait(lambda: bool(self.url) or self.proc.poll() is not None, 60):
            self.close()
            pytest.fail(f"the viewer did not start: {self.log.read_text()}")
        assert self.url, f"the viewer exited: {''.join(lines)} {self.log.read_text()}"

    def stop(self, sig: int, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self._err.close()
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._err.close()


def _processes_with(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _centre_coverage(png: bytes) -> float:
    """Fraction of non-background (not near-white) pixels in the middle of the view, left of the GUI panel."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)
    h, w, _ = img.shape
    box = img[h // 2 - h // 8 : h // 2 + h // 8, w // 2 - w // 10 : w // 2 + w // 10]
    return float((np.abs(box - 255).sum(-1) > 40).mean())


class Chromium:
    """Headless Chromium showing ``url``, driven through the DevTools protocol over a websocket
    (the ``websockets`` package comes with viser). Use as a context manager."""

    def __init__(self, url: str, profile: Path, size: tuple[int, int] = (960, 640)) -> None:
        self.url, self.profile, self.size = url, profile, size
        self._ids = iter(range(1, 10**9))

    def __enter__(self) -> Chromium:
        from websockets.sync.client import connect

        cmd = [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={self.profile}", f"--window-size={self.size[0]},{self.size[1]}",
            "--remote-debugging-port=0", "--remote-allow-origins=*", self.url,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port_file = self.profile / "DevToolsActivePort"
            assert _wait(lambda: port_file.is_file() and port_file.read_text().strip(), 30), "chromium did not start"
            port = int(port_file.read_text().split()[0])
            pages: list = []

            def find_page() -> bool:
                targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
                pages[:] = [t for t in targets if t["type"] == "page"]
                return bool(pages)

            assert _wait(find_page, 30), "no chromium page"
            self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
            w, h = self.size
            self.call("Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def call(self, method: str, **params):
        i = next(self._ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == i:
                assert "error" not in msg, msg
                return msg["result"]

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def text(self) -> str:
        """The page's visible text."""
        expr = "document.body ? document.body.innerText : ''"
        return str(self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value", ""))

    def text_until(self, until, timeout: float = 30.0) -> str:
        """The page's text once ``until(text)`` holds or time runs out."""
        end = time.monotonic() + timeout
        text = self.text()
        while not until(text) and time.monotonic() < end:
            time.sleep(0.25)
            text = self.text()
        return text

    def screenshot_until(self, until, timeout: float = 120.0) -> bytes:
        """Screenshots until ``until(png)`` holds or time runs out; returns the last."""
        end = time.monotonic() + timeout
        png = self.screenshot()
        while not until(png) and time.monotonic() < end:
            time.sleep(0.5)
            png = self.screenshot()
        return png

    def upload(self, path: Path) -> None:
        """Choose ``path`` in the page's (viser upload button's) file input."""
        root = self.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        nodes = self.call("DOM.querySelectorAll", nodeId=root, selector="input[type=file]")["nodeIds"]
        assert len(nodes) == 1, nodes
        self.call("DOM.setFileInputFiles", files=[str(path)], nodeId=nodes[0])


def test_view_in_headless_chromium_uploads_and_sigint(tmp_path, media):
    pytest.importorskip("viser")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    server = _Server(tmp_path, "--avatar", "default", "--max-upload-mb", "1")
    big = tmp_path / "long.wav"
    sf.write(str(big), np.zeros(16000 * 40, np.float32), 16000)  # 1.2 MB
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(os.urandom(30000))
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert _http_status(server.url) == 200
        with Chromium(server.url, tmp_path / "profile") as browser:
            png = browser.screenshot_until(lambda p: _centre_coverage(p) > 0.5)
            (tmp_path / "viewer.png").write_bytes(png)
            assert _centre_coverage(png) > 0.5, f"no avatar in the middle of the view (see {tmp_path / 'viewer.png'})"
            # real uploads through the page: too large, not audio, then a good one
            # the good upload is animated by the shipped default model ("Playing"), or only loaded
            # when no model is available
            for path, expects in (
                (big, ("upload rejected: 'long.wav' is 1.2 MB; the limit is 1.0 MB",)),
                (junk, ("upload rejected: 'junk.mp3': not a supported audio file",)),
                (media["flac"], ("Audio 'speech.flac' (2.0 s) loaded", "Playing 'speech.flac'")),
            ):
                browser.upload(path)
                ok = _wait(lambda es=expects: any(e in server.log.read_text() for e in es), 30)
                assert ok, server.log.read_text()
            assert _http_status(server.url) == 200
        assert server.stop(signal.SIGINT) == 0, server.log.read_text()
    finally:
        server.close()
    assert "stopping" in server.log.read_text()
    assert _processes_with(f"--port {server.port}") == []
    with pytest.raises(OSError):
        _http_status(server.url)


def test_view_animates_audio_and_stops_on_sigterm(tmp_path, media):
    pytest.importorskip("viser")
    server = _Server(tmp_path, "--audio", str(media["wav"]), "--model", str(media["model"]))
    try:
        assert _wait(lambda: "Playing" in server.log.read_text(), 60), server.log.read_text()
        assert _http_status(server.url) == 200
        assert server.stop(signal.SIGTERM) == 0, server.log.read_text()
    finally:
        server.close()
    assert _processes_with(f"--port {server.port}") == []


def test_python_m_viewer_is_l2t_gs_view(tmp_path):
    """``python -m l2t_gs.viewer`` runs the command's own arguments; loading them pulls in neither viser nor torch."""
    out = subprocess.run(
        [sys.executable, "-m", "l2t_gs.viewer", "--port", "0"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 1 and "l2t-gs: error: --port must be in 1..65535, got 0" in out.stderr, out.stderr
    probe = "import sys, l2t_gs.viewer.command; print(sorted({'viser', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_view_reports_user_errors(tmp_path, media):
    pytest.importorskip("viser")
    from l2t_gs.viewer.app import AvatarViewer, ViewerOptions

    out = subprocess.run(
        [*_view_cmd(), "--port", str(_free_port()), "--avatar", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and "avatar directory not found" in out.stderr, out.stderr
    for options, message in (
        (ViewerOptions(model=str(tmp_path / "missing.pt")), "checkpoint not found"),
        (ViewerOptions(audio=str(tmp_path / "missing.wav")), "audio file not found"),
        (ViewerOptions(audio=str(media["wav"]), model=str(media["wav"])), "(corrupt|cannot load)"),
    ):
        with pytest.raises(L2TError, match=message):
            AvatarViewer(options)
