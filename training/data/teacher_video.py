"""Teacher mouth crops: from a 2D talking-face video (OpenCV face detection) or from rendered motion.

(a) :func:`mouth_crops_from_video` reads a user's talking-face mp4 aligned with the audio (the output
of a 2D talking-face method, or a filmed speaker) in two streaming passes with PyAV, so memory stays
bounded whatever the video's length and resolution:

1. every frame, downscaled to ``detect_width`` pixels and turned gray, goes through OpenCV's frontal
   face Haar cascade (shipped with ``opencv-python-headless`` in ``cv2.data.haarcascades``); the
   largest face is kept. Frames without a detection take the box interpolated from their
   neighbours; the box track is then smoothed with a centred moving average of ``smooth_s`` seconds.
2. the mouth window of each frame is cut from the full-resolution frame: the lower third of the face
   box, centred on the mouth (``center_x``, ``center_y`` in box units), ``width`` box widths wide, with
   the crop's aspect ratio; it is low-pass filtered and resampled to the crop size (gray, BT.601 luma).

The crops are then resampled in time to the motion frame rate (linear blend of the two nearest video
frames at each motion frame's centre time, ``(i + 0.5) / fps``). The defaults put the window where the
mouth renderer (:mod:`l2t_gs.training.data.mouth`) frames the lips on the default avatar, measured by
running the detector on frontal renders of it (``tests/test_teacher_video.py`` checks the match).

(b) :func:`render_teacher_crops`: crops of ground-truth (or any) motion rendered through an avatar,
identical to what the lip-reading loss renders for the student.

Errors (one line, :class:`~l2t_gs.errors.L2TError`): an unreadable file or one without video, a
frame rate below ``min_fps`` (or half the motion rate), a duration that differs from the motion's by
more than ``tolerance_s``, and a video where the face is found in fewer than ``min_detect`` of the frames.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import atomic_path
from l2t_gs.training.data.mouth import MouthRenderer

if TYPE_CHECKING:
    from l2t_gs.gaussians import GaussianAvatar
    from l2t_gs.training.data.mouth import MouthRenderer

__all__ = [
    "TeacherCropSpec",
    "TeacherCrops",
    "detect_face_boxes",
    "load_teacher_crops",
    "mouth_crops_from_video",
    "render_teacher_crops",
    "resample_frames",
    "save_teacher_crops",
    "smooth_boxes",
]


@dataclass(frozen=True)
class TeacherCropSpec:
    """Where the mouth window lies in the detected face box, and detection settings.

    Attributes:
        center_x, center_y: window centre in face-box units (0 = left/top edge, 1 = right/bottom edge).
        width: window width in face-box widths (its height follows the crop's aspect ratio).
        smooth_s: length of the moving average over the box track (seconds; 0: none).
        min_detect: least fraction of frames with a detected face.
        detect_width: frames are downscaled to this width for detection.
        min_face: smallest face searched for, as a fraction of the detection frame's shorter side.
        cascade: the Haar cascade file (a name in ``cv2.data.haarcascades`` or a path).
    """

    center_x: float = 0.5
    center_y: float = 0.9
    width: float = 0.46
    smooth_s: float = 0.3
    min_detect: float = 0.5
    detect_width: int = 320
    min_face: float = 0.15
    cascade: str = "haarcascade_frontalface_default.xml"


@dataclass
class TeacherCrops:
    """Mouth crops of a video at the motion rate.

    Attributes:
        crops: ``[T, 1, H, W]`` float32 gray levels in 0..1 at ``fps``.
        fps: their frame rate. source_fps: the video's. source: the video's path.
        boxes: ``[N, 4]`` smoothed face boxes ``(x, y, w, h)`` of the N video frames (pixels).
        detected: ``[N]`` whether the detector found the face in each video frame.
    """

    crops: Tensor
    fps: float
    source_fps: float = 0.0
    source: str = ""
    boxes: np.ndarray | None = None
    detected: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.crops.shape[0])


# --------------------------------------------------------------------------- video reading
def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise L2TError(
            'teacher videos need OpenCV (cv2): pip install "l2t-gs[teacher]", or have opencv-python installed'
        ) from None
    return cv2


def _open(path: Path) -> Any:
    import av

    if not path.is_file():
        raise L2TError(f"teacher video not found: {path}")
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise L2TError(f"cannot read teacher video {path}: {_one_line(exc)}") from None
    if not container.streams.video:
        container.close()
        raise L2TError(f"teacher video {path} has no video stream")
    return container


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    """Decode ``(time in seconds, RGB uint8 [H, W, 3])`` for every frame, in presentation order."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base) if frame.pts is not None else math.nan
            yield t, frame.to_ndarray(format="rgb24")
    except L2TError:
        raise
    except Exception as exc:
        raise L2TError(f"cannot decode teacher video {path}: {_one_line(exc)}") from None
    finally:
        container.close()


def _gray(rgb: np.ndarray) -> np.ndarray:
    cv2 = _cv2()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _cascade(spec: TeacherCropSpec) -> Any:
    cv2 = _cv2()
    path = Path(spec.cascade)
    if not path.is_file():
        path = Path(cv2.data.haarcascades) / spec.cascade
    detector = cv2.CascadeClassifier(str(path))
    if detector.empty():
        raise L2TError(f"cannot load the face detector cascade {spec.cascade}")
    return detector


# --------------------------------------------------------------------------- detection and smoothing
def detect_face_boxes(frames: Iterator[np.ndarray], spec: TeacherCropSpec | None = None) -> np.ndarray:
    """The largest frontal face ``(x, y, w, h)`` in each frame (gray or RGB uint8), NaN where none: ``[N, 4]``."""
    cv2 = _cv2()
    spec = spec or TeacherCropSpec()
    detector = _cascade(spec)
    boxes = []
    for img in frames:
        gray = img if img.ndim == 2 else _gray(img)
        scale = min(1.0, spec.detect_width / gray.shape[1])
        small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        side = max(20, int(spec.min_face * min(small.shape)))
        found = detector.detectMultiScale(
            cv2.equalizeHist(small), scaleFactor=1.05, minNeighbors=4, minSize=(side, side)
        )
        if len(found):
            boxes.append(np.asarray(max(found, key=lambda b: b[2] * b[3]), dtype=np.float64) / scale)
        else:
            boxes.append(np.full(4, np.nan))
    return np.stack(boxes) if boxes else np.zeros((0, 4))


def smooth_boxes(boxes: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """Fill NaN boxes by linear interpolation (edges: nearest) and smooth with a centred moving average.

    ``boxes [N, 4]`` (at least one finite row) -> ``[N, 4]``; the window is ``seconds x fps`` frames (odd).
    """
    n = boxes.shape[0]
    ok = np.isfinite(boxes).all(axis=1)
    if not ok.any():
        raise ValueError("no finite box to interpolate from")
    idx = np.arange(n)
    filled = np.stack([np.interp(idx, idx[ok], boxes[ok, j]) for j in range(4)], axis=1)
    k = int(round(seconds * fps)) // 2 * 2 + 1
    if k <= 1 or n == 1:
        return filled
    half = k // 2
    padded = np.pad(filled, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(k) / k
    return np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(4)], axis=1)


def _mouth_window(box: np.ndarray, spec: TeacherCropSpec, aspect: float) -> tuple[float, float, float, float]:
    """``(cx, cy, w, h)`` of the mouth window of a face box ``(x, y, w, h)``; ``aspect`` = crop h / w."""
    x, y, w, h = box
    ww = spec.width * w
    return x + spec.center_x * w, y + spec.center_y * h, ww, ww * aspect


def _cut(gray: np.ndarray, window: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    """Resample the window ``(cx, cy, w, h)`` of a gray frame to ``size = (H, W)`` (anti-aliased, edges replicated)."""
    cv2 = _cv2()
    cx, cy, ww, wh = window
    out_h, out_w = size
    sx, sy = ww / out_w, wh / out_h
    # region of interest with a margin for the blur, clipped to the frame
    m = 3.0 * max(sx, sy)
    x0, y0 = max(0, int(math.floor(cx - ww / 2 - m))), max(0, int(math.floor(cy - wh / 2 - m)))
    x1 = min(gray.shape[1], int(math.ceil(cx + ww / 2 + m)) + 1)
    y1 = min(gray.shape[0], int(math.ceil(cy + wh / 2 + m)) + 1)
    if x1 <= x0 or y1 <= y0:  # the window lies outside the frame: take the nearest edge pixels
        x0, y0 = min(max(0, x0), gray.shape[1] - 1), min(max(0, y0), gray.shape[0] - 1)
        x1, y1 = x0 + 1, y0 + 1
    roi = gray[y0:y1, x0:x1].astype(np.float32)
    if sx > 1 or sy > 1:  # low-pass before subsampling
        roi = cv2.GaussianBlur(roi, (0, 0), sigmaX=max(0.5 * sx, 1e-3), sigmaY=max(0.5 * sy, 1e-3))
    # output pixel (i + 0.5) maps to frame coordinate (cx - ww/2) + (i + 0.5) * sx (pixel centres at +0.5)
    affine = np.array(
        [[sx, 0.0, cx - ww / 2 + 0.5 * sx - 0.5 - x0], [0.0, sy, cy - wh / 2 + 0.5 * sy - 0.5 - y0]], dtype=np.float64
    )
    return cv2.warpAffine(
        roi, affine, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def resample_frames(frames: np.ndarray, times: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """Linear-in-time resampling of ``frames [N, ...]`` shown at ``times [N]`` (frame centres, seconds)
    to ``num_frames`` frames centred at ``(i + 0.5) / fps``; times outside take the nearest frame."""
    target = (np.arange(num_frames) + 0.5) / fps
    pos = np.interp(target, times, np.arange(len(times), dtype=np.float64))
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(times) - 1)
    w = (pos - lo).reshape(-1, *([1] * (frames.ndim - 1)))
    return (1.0 - w) * frames[lo] + w * frames[hi]


# --------------------------------------------------------------------------- the whole pipeline
def mouth_crops_from_video(
    path: str | os.PathLike,
    fps: float,
    crop_size: tuple[int, int] = (48, 48),
    *,
    num_frames: int | None = None,
    duration: float | None = None,
    tolerance_s: float = 0.2,
    min_fps: float | None = None,
    spec: TeacherCropSpec | None = None,
) -> TeacherCrops:
    """Mouth crops ``[T, 1, H, W]`` of a talking-face video, at the motion rate ``fps``.

    Args:
        path: the video (any container/codec PyAV decodes; mp4 in practice).
        fps: motion frame rate to deliver.
        crop_size: ``(H, W)``, the lip reader's.
        num_frames: motion frames to deliver (default: the video's duration x ``fps``, rounded).
        duration: expected duration in seconds (e.g. the audio's); checked like ``num_frames / fps``.
        tolerance_s: allowed difference between the video's duration and the expected one.
        min_fps: lowest acceptable video frame rate (default: half of ``fps``).
        spec: window placement and detection settings (:class:`TeacherCropSpec`).
    """
    spec = spec or TeacherCropSpec()
    path = Path(path)
    if not fps > 0:
        raise L2TError(f"fps must be positive, got {fps}")
    h, w = crop_size
    # pass 1: timing and face boxes (detection on downscaled gray frames)
    times: list[float] = []

    def gray_frames() -> Iterator[np.ndarray]:
        for t, rgb in _frames(path):
            times.append(t)
            yield _gray(rgb)

    raw_boxes = detect_face_boxes(gray_frames(), spec)
    n = len(times)
    if n == 0:
        raise L2TError(f"teacher video {path} has no decodable frames")
    t = np.asarray(times, dtype=np.float64)
    timed = bool(np.isfinite(t).all()) and (n == 1 or bool((np.diff(t) > 0).all()))
    src_fps = _frame_rate(path, t if timed else np.zeros(0))
    low = min_fps if min_fps is not None else 0.5 * fps
    if not src_fps >= low:
        raise L2TError(
            f"teacher video {path} runs at {src_fps:.3g} fps, below the {low:.3g} fps needed for {fps:g} fps motion"
        )
    if not timed:
        t = np.arange(n) / src_fps
    t = t - t[0]
    video_s = float(t[-1] + 1.0 / src_fps)
    expected = None
    if num_frames is not None:
        if num_frames < 1:
            raise L2TError(f"num_frames must be >= 1, got {num_frames}")
        expected = num_frames / fps
    if duration is not None:
        if expected is not None and abs(duration - expected) > tolerance_s:
            raise L2TError(f"num_frames / fps = {expected:.2f} s but duration = {duration:.2f} s")
        expected = duration if expected is None else expected
    if expected is not None and abs(video_s - expected) > tolerance_s:
        raise L2TError(
            f"teacher video {path} lasts {video_s:.2f} s but the motion needs {expected:.2f} s "
            f"(more than {tolerance_s:g} s apart): is it the video of this clip, at the right frame rate?"
        )
    detected = np.isfinite(raw_boxes).all(axis=1)
    if detected.mean() < spec.min_detect:
        raise L2TError(
            f"no face detected in teacher video {path}: found in {int(detected.sum())} of {n} frames "
            f"(need {spec.min_detect:.0%}); it needs a frontal, unoccluded face"
        )
    boxes = smooth_boxes(raw_boxes, src_fps, spec.smooth_s)

    # pass 2: cut the mouth windows at full resolution
    crops = np.zeros((n, h, w), dtype=np.float32)
    k = 0
    for _, rgb in _frames(path):
        if k >= n:
            break
        crops[k] = _cut(_gray(rgb), _mouth_window(boxes[k], spec, h / w), (h, w))
        k += 1
    if k != n:
        raise L2TError(f"teacher video {path} decoded differently on the second pass ({k} vs {n} frames)")
    if num_frames is None:
        num_frames = max(1, int(round(video_s * fps)))
    centres = t + 0.5 / src_fps
    out = resample_frames(crops, centres, fps, num_frames) / 255.0
    return TeacherCrops(
        crops=torch.from_numpy(np.clip(out, 0.0, 1.0).astype(np.float32))[:, None],
        fps=float(fps),
        source_fps=src_fps,
        source=str(path),
        boxes=boxes,
        detected=detected,
    )


def _frame_rate(path: Path, times: np.ndarray) -> float:
    """The video's frame rate: from its frame times when they are usable, else the stream's rate."""
    if len(times) > 1 and np.isfinite(times).all():
        step = float(np.median(np.diff(times)))
        if step > 0:
            return 1.0 / step
    container = _open(path)
    try:
        rate = container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
    finally:
        container.close()
    return float(rate) if rate else 0.0


# --------------------------------------------------------------------------- rendered teachers, files
def render_teacher_crops(
    renderer: MouthRenderer | GaussianAvatar, vertices: Tensor, template: Tensor | None = None
) -> Tensor:
    """Crops ``[T, 1, H, W]`` (or ``[B, T, 1, H, W]``) of motion ``vertices`` rendered without gradient.

    ``renderer``: a :class:`~l2t_gs.training.data.mouth.MouthRenderer`, or an avatar (default crop geometry).
    """

    if not isinstance(renderer, MouthRenderer):
        renderer = MouthRenderer(renderer)
    with torch.no_grad():
        return renderer.render(vertices.detach(), template)


def save_teacher_crops(path: str | os.PathLike, crops: TeacherCrops) -> Path:
    """Write crops to an ``.npz`` (``crops`` uint8 [T, H, W], ``fps``, ``source``) atomically."""
    target = Path(path)
    data = (crops.crops[:, 0].clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    with atomic_path(target, suffix=".npz") as tmp:
        np.savez_compressed(tmp, crops=data, fps=np.float64(crops.fps), source=np.str_(crops.source))
    return target


def load_teacher_crops(path: str | os.PathLike) -> TeacherCrops:
    """Read crops written by :func:`save_teacher_crops`."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data, fps, source = z["crops"], float(z["fps"]), str(z["source"])
    except (OSError, KeyError, ValueError) as exc:
        raise L2TError(f"cannot read teacher crops {p}: {_one_line(exc)}") from None
    if data.ndim != 3 or data.dtype != np.uint8:
        raise L2TError(f"teacher crops {p} must hold uint8 [T, H, W], got {data.dtype} {list(data.shape)}")
    return TeacherCrops(torch.from_numpy(data.astype(np.float32) / 255.0)[:, None], fps, source=source)
