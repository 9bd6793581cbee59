"""Teacher mouth crops from a talking-face video (OpenCV Haar face detection) and from rendered motion.

The talking-face video is rendered here: the default avatar speaking (jaw and lip motion), seen from the
front, encoded as H.264 mp4. OpenCV's frontal-face cascade does find this face, so the whole pipeline
(decode, detect, smooth, cut, resample) runs on it, and its crops can be compared with the mouth
renderer's crops of the same motion. (The window's place in the face box, ``TeacherCropSpec``, was
calibrated on such renders; the box a Haar cascade draws shifts by a few percent of its height with the
face's size in pixels, so the match is checked at one typical size, a face box of about 80 pixels.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2t_gs.errors import L2TError
from l2t_gs.gaussians import load_avatar
from l2t_gs.io.video import VideoWriter
from l2t_gs.render import head_camera, rasterize
from l2t_gs.training.data.mouth import MouthCropSpec, MouthRenderer

cv2 = pytest.importorskip("cv2")

from l2t_gs.training.data.teacher_video import (  # noqa: E402
    TeacherCropSpec,
    load_teacher_crops,
    mouth_crops_from_video,
    render_teacher_crops,
    resample_frames,
    save_teacher_crops,
    smooth_boxes,
)

FPS = 25
FRAMES = 20
SIZE = 160


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def avatar():
    return load_avatar("default")


@pytest.fixture(scope="module")
def talking_video(avatar, tmp_path_factory):
    """(mp4 path, vertices [FRAMES, V, 3]): the avatar opening and closing its mouth at 25 fps."""
    t = torch.arange(FRAMES, dtype=torch.float32) / FPS
    names = list(avatar.head_model.expr_names)
    expr = torch.zeros(FRAMES, avatar.head_model.n_expr)
    expr[:, names.index("spread")] = 0.5 + 0.5 * torch.sin(2 * torch.pi * 1.3 * t)
    jaw = torch.zeros(FRAMES, 3)
    jaw[:, 0] = 0.12 * (1 - torch.cos(2 * torch.pi * 2.0 * t))
    verts = avatar.vertices_from_params({"expr": expr, "jaw_pose": jaw})
    view, k = head_camera("front", avatar.neutral_vertices(), SIZE, SIZE, fill=0.85)
    splats = avatar.deform(verts)
    frames = []
    for i in range(FRAMES):
        img, _, _ = rasterize(
            **splats.frame(i), viewmats=view, Ks=k, width=SIZE, height=SIZE, backend="torch",
            backgrounds=torch.full((1, 3), 0.3),
        )  # fmt: skip
        frames.append((img[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    path = tmp_path_factory.mktemp("video") / "talk.mp4"
    with VideoWriter(path, FPS, SIZE, SIZE, crf=12) as writer:
        writer.write(np.stack(frames))
    return path, verts


def _z(a: np.ndarray) -> np.ndarray:
    return (a - a.mean()) / a.std()


def test_video_crops_match_the_rendered_mouth_of_the_same_motion(avatar, talking_video):
    path, verts = talking_video
    tc = mouth_crops_from_video(path, FPS, (32, 32), num_frames=FRAMES)
    assert tc.crops.shape == (FRAMES, 1, 32, 32) and tc.crops.dtype == torch.float32
    assert tc.source_fps == pytest.approx(FPS) and bool(tc.detected.all())
    assert 0.0 <= float(tc.crops.min()) and float(tc.crops.max()) <= 1.0
    # the smoothed face box is steady: the head does not move
    assert float(np.ptp(tc.boxes, axis=0).max()) < 0.05 * SIZE
    rendered = render_teacher_crops(MouthRenderer(avatar, MouthCropSpec(height=32, width=32), backend="torch"), verts)
    a, b = tc.crops[:, 0].numpy(), rendered[:, 0].numpy()
    assert float((_z(a) * _z(b)).mean()) > 0.8  # same framing, same mouth shapes
    # and the motion is there: per-frame changes correlate over time
    da, db = np.abs(np.diff(a, axis=0)).mean((1, 2)), np.abs(np.diff(b, axis=0)).mean((1, 2))
    assert float(np.corrcoef(da, db)[0, 1]) > 0.7


def test_resampling_to_the_motion_rate_and_round_trip(talking_video, tmp_path):
    path, _ = talking_video
    at25 = mouth_crops_from_video(path, FPS, (16, 16))
    at50 = mouth_crops_from_video(path, 2 * FPS, (16, 16), duration=FRAMES / FPS)
    assert len(at25) == FRAMES and len(at50) == 2 * FRAMES
    # at 50 fps, frame 2k+1 lies a quarter frame after video frame k: 3/4 of it and 1/4 of frame k+1
    blend = 0.75 * at25.crops[4] + 0.25 * at25.crops[5]
    torch.testing.assert_close(at50.crops[9], blend, atol=1e-5, rtol=0)
    saved = save_teacher_crops(tmp_path / "clip.npz", at25)
    back = load_teacher_crops(saved)
    assert back.fps == FPS and back.source == str(path)
    torch.testing.assert_close(back.crops, at25.crops, atol=0.5 / 255 + 1e-6, rtol=0)


def test_user_errors_are_one_line(talking_video, tmp_path):
    path, _ = talking_video
    with pytest.raises(L2TError, match="not found"):
        mouth_crops_from_video(tmp_path / "missing.mp4", FPS)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    with pytest.raises(L2TError, match="cannot read teacher video"):
        mouth_crops_from_video(garbage, FPS)
    with pytest.raises(L2TError, match=r"lasts 0.80 s but the motion needs 2.00 s"):
        mouth_crops_from_video(path, FPS, num_frames=2 * FPS)
    with pytest.raises(L2TError, match="below the 30 fps"):
        mouth_crops_from_video(path, 60, min_fps=30)
    blank = tmp_path / "blank.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(blank, FPS, 64, 64) as writer:
        writer.write(rng.integers(0, 255, (10, 64, 64, 3), dtype=np.uint8))
    with pytest.raises(L2TError, match="no face detected"):
        mouth_crops_from_video(blank, FPS)
    with pytest.raises(L2TError, match="cascade"):
        mouth_crops_from_video(path, FPS, spec=TeacherCropSpec(cascade="no_such_cascade.xml"))


def test_box_track_interpolation_smoothing_and_frame_resampling():
    boxes = np.array([[10, 10, 50, 50], [np.nan] * 4, [14, 10, 50, 50], [10, 10, 50, 50]], dtype=np.float64)
    filled = smooth_boxes(boxes, fps=10, seconds=0.0)
    np.testing.assert_allclose(filled[1], [12, 10, 50, 50])
    smoothed = smooth_boxes(boxes, fps=10, seconds=0.3)  # 3-frame moving average, edges repeated
    np.testing.assert_allclose(smoothed[:, 0], [32 / 3, 12, 12, 34 / 3])
    frames = np.arange(4, dtype=np.float64)[:, None]
    times = (np.arange(4) + 0.5) / 10
    np.testing.assert_allclose(resample_frames(frames, times, 10, 4), frames)
    np.testing.assert_allclose(resample_frames(frames, times, 20, 8)[:, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
