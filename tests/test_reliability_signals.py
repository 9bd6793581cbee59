"""Interruption: SIGTERM and SIGHUP unwind a command like Ctrl-C (temporaries removed, exit 143 / 129);
SIGINT keeps exit 130. In-process tests signal the process from inside the encoder loop; the slow ones
send the signals to a real ``l2t-gs render`` from outside."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import HELLO, leftovers, speech_wav

from l2t_gs.cli.main import main
from l2t_gs.io import video
from l2t_gs.io.tempfiles import TAG

L2T_GS = Path(sys.executable).with_name("l2t-gs")


def _signal_after_frames(monkeypatch: pytest.MonkeyPatch, sig: int, frames: int = 2) -> None:
    original = video.VideoWriter.write
    seen = [0]  # frames handed to the writer; its own frames_written is counted by the background encoder

    def write(self: video.VideoWriter, img) -> None:
        original(self, img)
        before, seen[0] = seen[0], seen[0] + (1 if img.ndim == 3 else img.shape[0])
        if before < frames <= seen[0]:
            assert any(p.name.startswith(TAG) for p in self.path.parent.iterdir())  # mid-write: temporaries exist
            os.kill(os.getpid(), sig)

    monkeypatch.setattr(video.VideoWriter, "write", write)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_signal_mid_render_cleans_up_and_exits_with_its_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], sig: int, code: int
) -> None:
    wav = speech_wav(tmp_path / "in.wav", seconds=1.0)
    # a test run started in the background (`cmd &`) inherits SIGINT ignored, as any background job does:
    # give this test the Ctrl-C handler an interactive run has
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    _signal_after_frames(monkeypatch, sig)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    args = ["render", str(wav), "-o", str(tmp_path / "o.mp4"), "--size", "64", "--fps", "10", "--quiet"]
    args += ["--export-mesh", str(tmp_path / "m.npz"), "--export-ply", str(tmp_path / "plys")]
    try:
        assert main(args) == code
    finally:
        signal.signal(signal.SIGINT, previous_int)
    err = capsys.readouterr().err
    assert ("interrupted" if sig == signal.SIGINT else f"terminated ({signal.Signals(sig).name})") in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav"], leftovers(tmp_path)
    assert leftovers(tmp_path) == []
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # handlers restored after the command


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_to_a_running_render_process(tmp_path: Path, sig: int, code: int) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cmd = [str(L2T_GS), "render", str(HELLO), "-o", str(out / "o.mp4"), "--size", "64", "--quiet"]
    cmd += ["--export-mesh", str(out / "m.npz"), "--export-ply", str(out / "plys")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # wait until the render writes: the video, mesh and PLY temporaries all exist
        assert _wait_for(lambda: len(list(out.glob(f"{TAG}{proc.pid}-*"))) >= 3, 180), list(out.iterdir())
        time.sleep(0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert f"terminated ({signal.Signals(sig).name})" in err and "Traceback" not in err, err
    assert list(out.iterdir()) == []


@pytest.mark.slow
def test_sigkill_leftovers_are_removed_by_the_next_render(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    cmd = [str(L2T_GS), "render", str(HELLO), "-o", str(out / "o.mp4"), "--size", "64", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([*cmd, "--export-mesh", str(out / "m.npz")], env=env, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: len(list(out.glob(f"{TAG}{proc.pid}-*"))) >= 2, 180)
    finally:
        proc.kill()
        proc.wait()
    left = sorted(p.name for p in out.glob(f"{TAG}{proc.pid}-*"))
    assert len(left) >= 2  # SIGKILL cannot be handled: the temporaries stay ...
    short = speech_wav(tmp_path / "short.wav", seconds=0.4)
    assert main(["render", str(short), "-o", str(out / "o.mp4"), "--size", "64", "--fps", "10", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["o.mp4"]  # ... until the next run writes there
