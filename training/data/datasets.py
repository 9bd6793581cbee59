"""Speech/motion datasets in FaceFormer's layout: VOCASET, BIWI and the project's own corpora.

Layout of a dataset root::

    <root>/wav/<name>.wav            speech, any rate and channel count (delivered mono at ``audio_sr``)
    <root>/vertices_npy/<name>.npy   motion, float [frames, V*3] (or [frames, V, 3]) at ``vertices_fps``
    <root>/templates.pkl             pickle: dict subject -> (V, 3) neutral mesh (Python 2 pickles work)
    <root>/phones/<name>.json        optional: phone segments [{"phone": "AA", "start": 0.1, "end": 0.2}, ...]
                                     (seconds from the start of the audio)
    <root>/dataset.json              optional: describes a custom dataset (below)

Clip names are ``<subject>_<clip>`` (``FaceTalk_170728_03272_TA_sentence01``, ``F2_e01``); see
:mod:`l2t_gs.training.data.splits` for how subjects and sentence numbers are read from names and for the
standard VOCASET/BIWI splits (and where they were checked).

``dataset.json`` (format version 1; every key but ``fps`` is optional)::

    {
      "version": 1,
      "name": "l2t-corpus",              # shown in messages; default: the root folder's name
      "description": "...",
      "fps": 30,                         # motion rate the loader delivers
      "vertices_fps": 60,                # rate of the .npy files; an integer multiple of fps (default: fps)
      "n_verts": 5023,                   # vertex count (default: from templates.pkl, which must agree)
      "frame_tolerance": 5,              # allowed |frames - audio seconds x fps| in motion frames (default 5)
      "subjects": ["spk_a", "spk_b"],    # all subjects, in a stable order (default: templates.pkl keys sorted);
                                         # when given, clips of other subjects are rejected
      "train_subjects": ["spk_a"],       # one-hot speaker order (default: the subjects of split "train")
      "splits": {                        # split name -> one rule or a list of rules (their union);
        "train": {"subjects": ["spk_a"], "sentences": [1, 40]},
        "val": [{"subjects": ["spk_b"], "sentences": [1, 10]}, {"clips": ["spk_a_s41"]}],
        "test": {"subjects": ["spk_b"], "sentences": [11, 20]}
      }
    }

A rule holds any of ``subjects`` (list), ``sentences`` (inclusive ``[first, last]`` of the trailing number
of the clip name) and ``clips`` (list of names); all given conditions must hold. Without ``"splits"`` every
clip is in ``"train"``. The split name ``"all"`` is reserved: it always selects every clip.

Validation (``validate=True``) reads only file headers, so it stays fast on full datasets: it rejects, with
one line naming the file, missing wav/npy partners, unknown subjects, templates or motion files with the
wrong vertex count, unreadable audio/motion/phone files, motion whose frame count differs from the audio
duration x fps by more than ``frame_tolerance`` frames (5 for VOCASET/BIWI: 0.17 s at 30 fps, 0.2 s at
25 fps; VOCA's own data implies 59-61 fps from frame counts and audio lengths, TimoBolkart/voca issue #5),
and empty splits. ``validate="full"`` also reads every file (NaN/inf vertices, undecodable audio).
Items are loaded lazily, and each ``__getitem__`` checks its vertices for NaN/inf as well.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, Sampler

from l2t_gs.audio.io import load_audio
from l2t_gs.errors import L2TError
from l2t_gs.motion.contacts import contact_targets
from l2t_gs.rig.loader import pickled_array, unpickle_restricted
from l2t_gs.speech.segments import PhoneSegment
from l2t_gs.training.data.splits import DatasetSpec, SplitRule, builtin_spec, clip_sentence, clip_subject

__all__ = [
    "Clip",
    "ClipBatch",
    "LengthBucketSampler",
    "PhoneSegment",
    "SpeechMotionDataset",
    "collate_padded",
    "collate_single",
    "load_dataset",
    "phone_clips",
    "read_dataset_json",
]

WAV_DIR = "wav"
VERTICES_DIR = "vertices_npy"
PHONES_DIR = "phones"
TEMPLATES_FILE = "templates.pkl"
DATASET_JSON = "dataset.json"

Kind = Literal["auto", "vocaset", "biwi", "custom"]
_KINDS = ("auto", "vocaset", "biwi", "custom")
_VOCASET_NAME = re.compile(r".+_sentence\d+$")
_BIWI_NAME = re.compile(r"[FM]\d+_e\d+$")
_MAX_LISTED = 5


# --------------------------------------------------------------------------- items
@dataclass
class Clip:
    """One utterance: audio [n] float32 at ``audio_sr``, vertices [T, V, 3] float32 at ``fps``, template [V, 3]."""

    name: str
    subject: str
    audio: torch.Tensor
    vertices: torch.Tensor
    template: torch.Tensor
    fps: float
    audio_sr: int
    phones: list[PhoneSegment] | None = None

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    def contact_targets(self) -> torch.Tensor | None:
        """Per-frame lip-contact targets [T, 2] (bilabial, labiodental) from the phones (``None`` without);
        see :func:`l2t_gs.motion.contacts.contact_targets`."""
        if not self.phones:
            return None

        return torch.from_numpy(contact_targets(self.phones, self.fps, self.num_frames))


@dataclass
class ClipBatch:
    """Zero-padded clips: audio [B, N], vertices [B, T, V, 3], templates [B, V, 3], lengths [B] (int64)."""

    names: list[str]
    subjects: list[str]
    audio: torch.Tensor
    audio_lengths: torch.Tensor
    vertices: torch.Tensor
    frame_lengths: torch.Tensor
    templates: torch.Tensor
    fps: float
    audio_sr: int
    phones: list[list[PhoneSegment] | None]


@dataclass(frozen=True)
class _Entry:
    name: str
    subject: str
    wav: Path
    npy: Path
    phones: Path | None


# --------------------------------------------------------------------------- file readers
def _audio_duration(path: Path) -> float:
    """Duration of an audio file in seconds, from its header."""
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise L2TError(f"cannot read audio {path}: {_one_line(exc)}") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise L2TError(f"audio {path} is empty")
    return info.frames / info.samplerate


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file without reading its data."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            else:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                shape, dtype = arr.shape, arr.dtype
                del arr
    except Exception as exc:
        raise L2TError(f"cannot read motion file {path}: {_one_line(exc)}") from None
    return tuple(int(s) for s in shape), np.dtype(dtype)


def _check_motion_header(path: Path, shape: tuple[int, ...], dtype: np.dtype, n_verts: int) -> int:
    """Validate a motion array's shape/dtype; return its frame count (in the file's rate)."""
    if dtype.kind not in "fiu":
        raise L2TError(f"motion file {path} holds {dtype} values, not numbers")
    ok = (len(shape) == 2 and shape[1] == n_verts * 3) or (len(shape) == 3 and shape[1:] == (n_verts, 3))
    if not ok:
        if len(shape) in (2, 3) and (shape[1] % 3 == 0 if len(shape) == 2 else shape[-1] == 3):
            found = shape[1] // 3 if len(shape) == 2 else shape[1]
            raise L2TError(
                f"motion file {path} has {found} vertices per frame, expected {n_verts} (shape {list(shape)})"
            )
        raise L2TError(f"motion file {path} has shape {list(shape)}, expected [frames, {n_verts * 3}]")
    if shape[0] == 0:
        raise L2TError(f"motion file {path} has no frames")
    return shape[0]


def _read_motion(path: Path, n_verts: int, stride: int) -> np.ndarray:
    """Motion file -> float32 [T, V, 3], every ``stride``-th frame, checked for NaN/inf."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise L2TError(f"cannot read motion file {path}: {_one_line(exc)}") from None
    if not isinstance(arr, np.ndarray):
        raise L2TError(f"motion file {path} is not a single .npy array")
    _check_motion_header(path, arr.shape, arr.dtype, n_verts)
    verts = np.ascontiguousarray(arr.reshape(arr.shape[0], n_verts, 3)[::stride], dtype=np.float32)
    finite = np.isfinite(verts)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.all(axis=(1, 2)))[0])
        raise L2TError(f"motion file {path} has NaN or infinite values (first in frame {bad * stride})")
    return verts


def _read_phones(path: Path) -> list[PhoneSegment]:
    """Phone segments from ``phones/<name>.json``: a list of {"phone", "start", "end"} (seconds)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise L2TError(f"cannot read phone file {path}: {_one_line(exc)}") from None
    if not isinstance(raw, list):
        raise L2TError(f"phone file {path} must hold a list of {{'phone', 'start', 'end'}} segments")
    out: list[PhoneSegment] = []
    for i, seg in enumerate(raw):
        if not isinstance(seg, dict) or not {"phone", "start", "end"} <= seg.keys():
            raise L2TError(f"phone file {path}: segment {i} lacks 'phone', 'start' or 'end'")
        phone, start, end = seg["phone"], seg["start"], seg["end"]
        nums_ok = all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) for t in (start, end)
        )
        if not isinstance(phone, str) or not nums_ok or not 0 <= start <= end:
            raise L2TError(f"phone file {path}: segment {i} ({seg!r}) needs a text phone and 0 <= start <= end")
        out.append(PhoneSegment(phone, float(start), float(end)))
    return out


def load_templates(path: Path) -> dict[str, np.ndarray]:
    """``templates.pkl`` -> subject -> float32 (V, 3). Uses the project's restricted (numpy-only) unpickler."""
    if not path.is_file():
        raise L2TError(f"missing templates file {path}")
    raw = unpickle_restricted(path, "templates file")
    if not isinstance(raw, Mapping) or not raw:
        raise L2TError(f"templates file {path} must hold a non-empty dict subject -> (V, 3) array")
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        subject = key.decode("latin1") if isinstance(key, bytes) else str(key)
        arr = np.asarray(pickled_array(value, subject, f"templates file {path}"))
        if arr.dtype.kind not in "fiu" or arr.size == 0 or arr.size % 3:
            raise L2TError(f"templates file {path}: template of {subject!r} is not a (V, 3) array (shape {arr.shape})")
        tpl = arr.reshape(-1, 3).astype(np.float32)
        if not np.isfinite(tpl).all():
            raise L2TError(f"templates file {path}: template of {subject!r} has NaN or infinite values")
        out[subject] = tpl
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return re.sub(r"^Error opening '.*?': ", "", line)  # soundfile repeats the path


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_MAX_LISTED])
    return shown + (f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


# --------------------------------------------------------------------------- dataset.json
_JSON_KEYS = {
    "version",
    "name",
    "description",
    "fps",
    "vertices_fps",
    "n_verts",
    "frame_tolerance",
    "subjects",
    "train_subjects",
    "splits",
}
_RULE_KEYS = {"subjects", "sentences", "clips"}


def read_dataset_json(path: str | Path) -> DatasetSpec:
    """Parse a ``dataset.json`` (schema in this module's docstring) into a :class:`DatasetSpec`."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise L2TError(f"cannot read {path}: {_one_line(exc)}") from None
    if not isinstance(raw, dict):
        raise L2TError(f"{path} must hold a JSON object")
    unknown = sorted(set(raw) - _JSON_KEYS)
    if unknown:
        raise L2TError(f"{path}: unknown key(s) {_listed(unknown)} (known: {', '.join(sorted(_JSON_KEYS))})")
    if raw.get("version", 1) != 1:
        raise L2TError(f"{path}: unsupported version {raw['version']!r} (this loader reads version 1)")

    def number(key: str, default: float | None = None) -> float:
        v = raw.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise L2TError(f"{path}: {key!r} must be a positive number, got {v!r}")
        return float(v)

    def names(value: Any, what: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
            raise L2TError(f"{path}: {what} must be a list of names")
        return tuple(value)

    if "fps" not in raw:
        raise L2TError(f"{path}: missing 'fps' (the motion frame rate)")
    fps = number("fps")
    vertices_fps = number("vertices_fps", fps)
    ratio = vertices_fps / fps
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise L2TError(f"{path}: 'vertices_fps' ({vertices_fps:g}) must be an integer multiple of 'fps' ({fps:g})")
    n_verts = raw.get("n_verts")
    if n_verts is not None and (isinstance(n_verts, bool) or not isinstance(n_verts, int) or n_verts <= 0):
        raise L2TError(f"{path}: 'n_verts' must be a positive integer, got {n_verts!r}")
    tol = raw.get("frame_tolerance", 5)
    if isinstance(tol, bool) or not isinstance(tol, int) or tol < 0:
        raise L2TError(f"{path}: 'frame_tolerance' must be a non-negative integer, got {tol!r}")
    subjects = names(raw["subjects"], "'subjects'") if "subjects" in raw else None

    splits: dict[str, tuple[SplitRule, ...]] = {}
    raw_splits = raw.get("splits", {"train": {}})
    if not isinstance(raw_splits, dict):
        raise L2TError(f"{path}: 'splits' must be an object split name -> rule(s)")
    for split, rules in raw_splits.items():
        if split == "all":
            raise L2TError(f"{path}: the split name 'all' is reserved (it selects every clip)")
        rule_list = rules if isinstance(rules, list) else [rules]
        parsed = []
        for rule in rule_list:
            where = f"split {split!r}"
            if not isinstance(rule, dict) or set(rule) - _RULE_KEYS:
                raise L2TError(f"{path}: {where} rules must be objects with keys among subjects, sentences, clips")
            sentences = rule.get("sentences")
            if sentences is not None:
                if (
                    not isinstance(sentences, list)
                    or len(sentences) != 2
                    or not all(isinstance(n, int) and not isinstance(n, bool) for n in sentences)
                    or sentences[0] > sentences[1]
                ):
                    raise L2TError(f"{path}: {where} 'sentences' must be [first, last] integers")
                sentences = (sentences[0], sentences[1])
            rule_subjects = names(rule["subjects"], f"{where} 'subjects'") if "subjects" in rule else None
            if subjects is not None and rule_subjects is not None:
                extra = [s for s in rule_subjects if s not in subjects]
                if extra:
                    raise L2TError(f"{path}: {where} names subject(s) {_listed(extra)} missing from 'subjects'")
            clips = frozenset(names(rule["clips"], f"{where} 'clips'")) if "clips" in rule else None
            parsed.append(SplitRule(rule_subjects, sentences, clips))
        splits[str(split)] = tuple(parsed)

    spec = DatasetSpec(
        name=str(raw.get("name") or path.parent.name),
        kind="custom",
        fps=fps,
        vertices_fps=vertices_fps,
        n_verts=n_verts,
        splits=splits,
        subjects=subjects,
        train_subjects=(),
        frame_tolerance=tol,
        description=str(raw.get("description", "")),
    )
    if "train_subjects" in raw:
        train = names(raw["train_subjects"], "'train_subjects'")
        extra = [s for s in train if subjects is not None and s not in subjects]
        if extra:
            raise L2TError(f"{path}: 'train_subjects' names subject(s) {_listed(extra)} missing from 'subjects'")
    else:
        train = (spec.split_subjects("train") or ()) if "train" in splits else ()
    return dataclasses.replace(spec, train_subjects=train)


# --------------------------------------------------------------------------- dataset
class SpeechMotionDataset(Dataset[Clip]):
    """Clips of one split, loaded lazily: ``dataset[i]`` reads that clip's audio, motion and phones.

    Attributes: ``spec`` (:class:`DatasetSpec`), ``root``, ``split``, ``fps`` (motion rate), ``n_verts``,
    ``audio_sr``, ``names`` (clip names), ``subjects`` (subjects present, in the spec's order).
    """

    def __init__(
        self,
        root: Path,
        spec: DatasetSpec,
        split: str,
        entries: Sequence[_Entry],
        templates: Mapping[str, np.ndarray],
        n_verts: int,
        audio_sr: int,
    ) -> None:
        self.root = root
        self.spec = spec
        self.split = split
        self.n_verts = n_verts
        self.audio_sr = audio_sr
        self._entries = list(entries)
        present = {e.subject for e in self._entries}
        order = [s for s in (spec.subjects or ()) if s in present]
        self.subjects: tuple[str, ...] = tuple(order + sorted(present - set(order)))
        self._templates = {s: torch.from_numpy(templates[s].copy()) for s in self.subjects}
        self._frames: list[int | None] = [None] * len(self._entries)

    @property
    def fps(self) -> float:
        return self.spec.fps

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"SpeechMotionDataset({self.spec.name!r}, split={self.split!r}, clips={len(self)}, "
            f"subjects={len(self.subjects)}, fps={self.fps:g}, n_verts={self.n_verts})"
        )

    def clip_subjects(self) -> list[str]:
        """The subject of every clip, in clip order."""
        return [e.subject for e in self._entries]

    def template(self, subject: str) -> torch.Tensor:
        """Neutral mesh of ``subject``: float32 [V, 3] (a copy)."""
        return self._templates[subject].clone()

    def __getitem__(self, index: int) -> Clip:
        e = self._entries[index]
        verts = _read_motion(e.npy, self.n_verts, self.spec.stride)
        self._frames[index] = verts.shape[0]
        return Clip(
            name=e.name,
            subject=e.subject,
            audio=torch.from_numpy(load_audio(e.wav, sr=self.audio_sr)),
            vertices=torch.from_numpy(verts),
            template=self.template(e.subject),
            fps=self.fps,
            audio_sr=self.audio_sr,
            phones=_read_phones(e.phones) if e.phones is not None else None,
        )

    def num_frames(self, index: int) -> int:
        """Frame count of clip ``index`` at ``fps``, from the motion file's header (cached)."""
        n = self._frames[index]
        if n is None:
            e = self._entries[index]
            shape, dtype = _npy_header(e.npy)
            n = math.ceil(_check_motion_header(e.npy, shape, dtype, self.n_verts) / self.spec.stride)
            self._frames[index] = n
        return n

    def lengths(self) -> list[int]:
        """Frame counts of all clips at ``fps`` (for length bucketing)."""
        return [self.num_frames(i) for i in range(len(self))]

    def validate(self, full: bool = False) -> None:
        """Check every clip's headers (and with ``full``, all data); raise :class:`L2TError` on the first problem."""
        tol = self.spec.frame_tolerance
        for i, e in enumerate(self._entries):
            frames = self.num_frames(i)
            seconds = _audio_duration(e.wav)
            expected = seconds * self.fps
            if abs(frames - expected) > tol:
                raise L2TError(
                    f"motion file {e.npy} has {frames} frames at {self.fps:g} fps ({frames / self.fps:.2f} s) but "
                    f"audio {e.wav} lasts {seconds:.2f} s ({expected:.1f} frames); at most {tol} frames may differ "
                    "(frame_tolerance=)"
                )
            if e.phones is not None:
                _read_phones(e.phones)
            if full:
                _read_motion(e.npy, self.n_verts, self.spec.stride)
                load_audio(e.wav, sr=self.audio_sr)


# --------------------------------------------------------------------------- loading
def _list_names(folder: Path, suffix: str) -> set[str]:
    try:
        return {p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix) and p.is_file()}
    except OSError as exc:
        raise L2TError(f"cannot list {folder}: {exc.strerror or exc}") from None


def _detect_kind(root: Path, templates: Mapping[str, np.ndarray], names: set[str]) -> str:
    """``custom`` with a dataset.json, else by template vertex count (5023/23370), else by clip names."""
    if (root / DATASET_JSON).is_file():
        return "custom"
    counts = {t.shape[0] for t in templates.values()}
    for kind in ("vocaset", "biwi"):
        if counts == {builtin_spec(kind).n_verts}:
            return kind
    if names and all(_VOCASET_NAME.match(n) for n in names):
        return "vocaset"
    if names and all(_BIWI_NAME.match(n) for n in names):
        return "biwi"
    raise L2TError(
        f"cannot tell which dataset {root} is: no {DATASET_JSON}, templates have {sorted(counts)} vertices "
        "(VOCASET 5023, BIWI 23370) and clip names match neither <subject>_sentenceNN nor <subject>_eNN; "
        "pass kind='vocaset' or 'biwi' (with n_verts=) or write a dataset.json"
    )


def load_dataset(
    root: str | Path,
    kind: Kind = "auto",
    split: str = "train",
    subjects: Sequence[str] | str | None = None,
    *,
    audio_sr: int = 16000,
    validate: bool | Literal["full"] = True,
    n_verts: int | None = None,
    frame_tolerance: int | None = None,
) -> SpeechMotionDataset:
    """Open a dataset in FaceFormer's layout and select one split.

    ``kind``: ``"auto"`` (dataset.json -> custom, else 5023 vertices -> VOCASET, 23370 -> BIWI, else by clip
    names), ``"vocaset"``, ``"biwi"`` or ``"custom"``. ``split``: a split of the dataset (VOCASET: train,
    val, test; BIWI: train, val, test (Test-A), test_b (Test-B)) or ``"all"``. ``subjects``: keep only
    these subjects (each must be in templates.pkl and in the split). ``audio_sr``: rate audio is resampled
    to. ``validate``: True checks file headers, ``"full"`` reads every file, False checks only the file
    listing. ``n_verts``: override the expected vertex count (e.g. small test data in VOCASET naming).
    ``frame_tolerance``: override the allowed frames-vs-audio difference (motion frames).
    """
    root = Path(root)
    if kind not in _KINDS:
        raise L2TError(f"unknown dataset kind {kind!r} (choose from {', '.join(_KINDS)})")
    if isinstance(audio_sr, bool) or not isinstance(audio_sr, int) or audio_sr <= 0:
        raise L2TError(f"audio_sr must be a positive integer, got {audio_sr!r}")
    if not root.is_dir():
        raise L2TError(f"dataset folder {root} does not exist")
    for sub in (WAV_DIR, VERTICES_DIR):
        if not (root / sub).is_dir():
            raise L2TError(f"dataset {root} has no {sub}/ folder (expected {root / sub})")

    templates = load_templates(root / TEMPLATES_FILE)
    wav_names = _list_names(root / WAV_DIR, ".wav")
    npy_names = _list_names(root / VERTICES_DIR, ".npy")

    if kind == "auto":
        kind = _detect_kind(root, templates, wav_names | npy_names)  # type: ignore[assignment]
    if kind == "custom":
        if not (root / DATASET_JSON).is_file():
            raise L2TError(f"custom dataset {root} has no {DATASET_JSON} (expected {root / DATASET_JSON})")
        spec = read_dataset_json(root / DATASET_JSON)
    else:
        spec = builtin_spec(kind)
    if n_verts is not None:
        if isinstance(n_verts, bool) or not isinstance(n_verts, int) or n_verts <= 0:
            raise L2TError(f"n_verts must be a positive integer, got {n_verts!r}")
        spec = dataclasses.replace(spec, n_verts=n_verts)
    if frame_tolerance is not None:
        if isinstance(frame_tolerance, bool) or not isinstance(frame_tolerance, int) or frame_tolerance < 0:
            raise L2TError(f"frame_tolerance must be a non-negative integer, got {frame_tolerance!r}")
        spec = dataclasses.replace(spec, frame_tolerance=frame_tolerance)
    label = f"dataset {spec.name} ({root})"
    tpl_file = root / TEMPLATES_FILE
    if spec.subjects is not None and kind == "custom":
        missing = [s for s in spec.subjects if s not in templates]
        if missing:
            raise L2TError(f"{tpl_file} has no template for subject(s) {_listed(missing)} listed in {DATASET_JSON}")

    # split and subject selection
    if split != "all" and split not in spec.splits:
        raise L2TError(f"{label} has no clips in split {split!r} (it defines: {', '.join(spec.split_names())}, all)")
    wanted: tuple[str, ...] | None = None
    if subjects is not None:
        wanted = (subjects,) if isinstance(subjects, str) else tuple(subjects)
        allowed = spec.split_subjects(split) if split != "all" else None
        for s in wanted:
            if s not in templates:
                raise L2TError(f"unknown subject {s!r}: not in {tpl_file} (known: {_listed(sorted(templates))})")
            if allowed is not None and s not in allowed:
                raise L2TError(f"subject {s!r} is not in split {split!r} of {label} (its subjects: {_listed(allowed)})")

    known = tuple(templates) + tuple(spec.subjects or ())
    selected: list[tuple[str, str]] = []
    for name in sorted(wav_names | npy_names):
        subject = clip_subject(name, known)
        if not spec.in_split(split, name, subject, clip_sentence(name)):
            continue
        if wanted is not None and subject not in wanted:
            continue
        selected.append((name, subject))

    lacking_npy = [str(root / VERTICES_DIR / f"{n}.npy") for n, _ in selected if n not in npy_names]
    if lacking_npy:
        raise L2TError(f"{label}: {len(lacking_npy)} clip(s) have audio but no motion file: {_listed(lacking_npy)}")
    lacking_wav = [str(root / WAV_DIR / f"{n}.wav") for n, _ in selected if n not in wav_names]
    if lacking_wav:
        raise L2TError(f"{label}: {len(lacking_wav)} clip(s) have motion but no audio file: {_listed(lacking_wav)}")
    strict = kind == "custom" and spec.subjects is not None
    for name, subject in selected:
        if subject not in templates or (strict and subject not in (spec.subjects or ())):
            where = tpl_file if subject not in templates else root / DATASET_JSON
            raise L2TError(f"clip {root / WAV_DIR / name}.wav: unknown subject {subject!r} (not in {where})")
    if not selected:
        who = f" for subject(s) {', '.join(wanted)}" if wanted else ""
        raise L2TError(f"{label} has no clips in split {split!r}{who}")

    # vertex count: expected (spec / override) or agreed by the templates in use
    used = sorted({s for _, s in selected})
    expected = spec.n_verts
    if expected is None:
        counts = {templates[s].shape[0] for s in used}
        if len(counts) > 1:
            raise L2TError(f"{tpl_file}: templates have different vertex counts {sorted(counts)}; set n_verts")
        expected = counts.pop()
    for s in used:
        if templates[s].shape[0] != expected:
            hint = "" if kind == "custom" else f" for {spec.name} (pass n_verts= to override)"
            raise L2TError(
                f"{tpl_file}: template of subject {s!r} has {templates[s].shape[0]} vertices, expected {expected}{hint}"
            )

    phones_dir = root / PHONES_DIR
    entries = []
    for name, subject in selected:
        ph = phones_dir / f"{name}.json"
        entries.append(
            _Entry(
                name,
                subject,
                root / WAV_DIR / f"{name}.wav",
                root / VERTICES_DIR / f"{name}.npy",
                ph if ph.is_file() else None,
            )
        )
    dataset = SpeechMotionDataset(root, spec, split, entries, templates, expected, audio_sr)
    if validate:
        dataset.validate(full=validate == "full")
    return dataset


def phone_clips(
    dataset: SpeechMotionDataset, subjects: Sequence[str] | None = None, limit: int | None = None
) -> Iterator[Clip]:
    """The clips of ``dataset`` that have phone segments, in order, loaded one at a time (a caller that
    keeps only what it needs does not hold every clip's meshes): only subjects matching one of the
    fnmatch patterns ``subjects`` (all when empty), at most ``limit`` clips."""
    n = 0
    for i, subject in enumerate(dataset.clip_subjects()):
        if limit is not None and n >= limit:
            return
        if subjects and not any(fnmatch.fnmatchcase(subject, pat) for pat in subjects):
            continue
        clip = dataset[i]
        if clip.phones:
            n += 1
            yield clip


# --------------------------------------------------------------------------- batching
def collate_single(batch: Sequence[Clip]) -> Clip:
    """Collate for ``batch_size=1`` (FaceFormer-style training): returns the one clip as is."""
    if len(batch) != 1:
        raise ValueError(f"collate_single expects batches of one clip, got {len(batch)}")
    return batch[0]


def collate_padded(batch: Sequence[Clip]) -> ClipBatch:
    """Zero-pad clips of different lengths into a :class:`ClipBatch` (lengths give the valid parts)."""
    if not batch:
        raise ValueError("collate_padded got an empty batch")
    b = len(batch)
    n_max = max(c.audio.shape[0] for c in batch)
    t_max = max(c.num_frames for c in batch)
    v = batch[0].vertices.shape[1]
    audio = torch.zeros(b, n_max, dtype=torch.float32)
    verts = torch.zeros(b, t_max, v, 3, dtype=torch.float32)
    for i, c in enumerate(batch):
        audio[i, : c.audio.shape[0]] = c.audio
        verts[i, : c.num_frames] = c.vertices
    return ClipBatch(
        names=[c.name for c in batch],
        subjects=[c.subject for c in batch],
        audio=audio,
        audio_lengths=torch.tensor([c.audio.shape[0] for c in batch], dtype=torch.int64),
        vertices=verts,
        frame_lengths=torch.tensor([c.num_frames for c in batch], dtype=torch.int64),
        templates=torch.stack([c.template for c in batch]),
        fps=batch[0].fps,
        audio_sr=batch[0].audio_sr,
        phones=[c.phones for c in batch],
    )


class LengthBucketSampler(Sampler[list[int]]):
    """Batch sampler grouping clips of similar length (use as ``DataLoader(batch_sampler=...)``).

    With ``shuffle``, indices are shuffled, sorted by length within pools of ``pool_batches`` batches, cut
    into batches and the batches shuffled; the order depends on ``seed`` and :meth:`set_epoch`. Without
    it, batches run from shortest to longest.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        pool_batches: int = 50,
    ) -> None:
        if batch_size < 1 or pool_batches < 1:
            raise ValueError("batch_size and pool_batches must be >= 1")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.pool_batches = pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
            pool = self.batch_size * self.pool_batches
            order = [i for k in range(0, n, pool) for i in sorted(order[k : k + pool], key=self.lengths.__getitem__)]
        else:
            order = sorted(range(n), key=self.lengths.__getitem__)
        batches = [order[k : k + self.batch_size] for k in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[i] for i in perm]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
