"""MP4 writing: H.264 + AAC, durations, atomicity."""

from __future__ import annotations

import numpy as np
import pytest

from l2t_gs.errors import L2TError
from l2t_gs.io.video import VideoWriter, probe_video


def _frames(n: int, h: int = 64, w: int = 96) -> np.ndarray:
    ramp = np.linspace(0, 255, n, dtype=np.float32)
    return np.broadcast_to(ramp[:, None, None, None], (n, h, w, 3)).astype(np.uint8)


def test_video_with_audio_has_matching_durations(tmp_path):
    sr, fps = 16000, 25
    audio = (0.1 * np.sin(np.arange(int(2.3 * sr)) / sr * 2 * np.pi * 220)).astype(np.float32)
    n = round(audio.shape[0] / sr * fps)
    out = tmp_path / "a.mp4"
    with VideoWriter(out, fps, 96, 64, audio=audio, sample_rate=sr) as vw:
        for chunk in np.array_split(_frames(n), 5):
            vw.write(chunk)
    info = probe_video(out)
    assert info["video"]["codec"] == "h264" and info["audio"]["codec"] == "aac"
    assert info["video"]["frames"] == n
    assert (info["video"]["width"], info["video"]["height"]) == (96, 64)
    assert abs(info["video"]["duration"] - audio.shape[0] / sr) <= 1 / fps
    assert abs(info["audio"]["duration"] - audio.shape[0] / sr) <= 0.05


def test_failure_leaves_no_file(tmp_path):
    out = tmp_path / "b.mp4"
    with pytest.raises(RuntimeError), VideoWriter(out, 25, 32, 32) as vw:
        vw.write(_frames(3, 32, 32))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(L2TError, match="even"):
        VideoWriter(tmp_path / "c.mp4", 25, 31, 32)
    with pytest.raises(L2TError, match="does not exist"):
        VideoWriter(tmp_path / "nope" / "c.mp4", 25, 32, 32)
    vw = VideoWriter(tmp_path / "d.mp4", 25, 32, 32)
    with pytest.raises(ValueError):
        vw.write(np.zeros((2, 16, 16, 3), np.uint8))
    vw.abort()
    assert list(tmp_path.iterdir()) == []
