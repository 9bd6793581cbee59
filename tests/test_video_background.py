"""The background (threaded) MP4 encoder gives the same file as the inline one, and fails cleanly."""

from __future__ import annotations

import av
import numpy as np
import pytest

from l2t_gs.io.video import VideoWriter, probe_video


def _frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(n)])


def _decode(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_background_encoder_writes_the_same_video(tmp_path):
    sr, fps, n = 16000, 25, 40
    audio = (0.1 * np.sin(np.arange(int(n / fps * sr)) / sr * 2 * np.pi * 300)).astype(np.float32)
    frames = _frames(n)
    for name, background in (("inline.mp4", False), ("thread.mp4", True)):
        with VideoWriter(tmp_path / name, fps, 64, 48, audio=audio, sample_rate=sr, background=background,
                         queue_frames=3) as vw:  # fmt: skip
            buf = np.empty_like(frames[0])
            for f in frames:
                buf[...] = f  # one reused buffer: the writer must copy what it queues
                vw.write(buf)
            if background:
                assert vw._worker is not None and vw._queue.maxsize == 3
    a, b = _decode(tmp_path / "inline.mp4"), _decode(tmp_path / "thread.mp4")
    assert a.shape == b.shape == (n, 48, 64, 3)
    assert np.array_equal(a, b)
    info = probe_video(tmp_path / "thread.mp4")
    assert info["video"]["frames"] == n and info["audio"]["codec"] == "aac"


def test_background_encoder_error_reaches_the_caller_and_leaves_no_file(tmp_path):
    vw = VideoWriter(tmp_path / "x.mp4", 25, 64, 48, background=True)

    def broken(img):
        raise OSError("disk full")

    vw._encode = broken
    with pytest.raises(OSError, match="disk full"):
        with vw:
            for f in _frames(30):
                vw.write(f)
    assert vw._worker is None
    assert list(tmp_path.iterdir()) == []
