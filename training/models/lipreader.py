"""The lip reader: a small visual speech network over grayscale mouth-crop sequences.

* :data:`VISEMES` groups the canonical phones (:data:`l2t_gs.speech.phones.PHONES`) into 13 classes of
  similar mouth shape; :func:`frame_labels` turns phone segments into per-frame class ids.
* :class:`LipReaderNet`: a 3D convolution over (time, y, x), a 2D CNN per frame, global pooling and a
  temporal stack (dilated residual 1D convolutions, or a bidirectional GRU); ``features`` are the
  temporal stack's output ``[B, T, D]`` and a linear layer classifies each frame.
* :class:`LipReader` is the interface every lip reader offers (the project's network or a user's
  own, see ``docs/lipreader.md``); :func:`load_lipreader` loads a checkpoint, a run directory or a
  user factory ``module:function``.

Checkpoints are ``torch.save`` dicts read back with ``weights_only=True``: ``format``
(``"l2t-gs/lipreader"``), ``format_version``, ``l2t_gs_version``, ``config`` (:class:`LipReaderConfig`),
``crop`` (:class:`~l2t_gs.training.data.mouth.MouthCropSpec`), ``classes`` (label names), ``model`` (state
dict) and optionally ``train`` (training state, ignored here).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from l2t_gs.errors import L2TError
from l2t_gs.io.checkpoint import CheckpointFormat, cpu_state_dict, save_payload
from l2t_gs.speech.phones import PHONES, SIL, map_cmu
from l2t_gs.training.data.mouth import MouthCropSpec

__all__ = [
    "CHECKPOINT",
    "FORMAT",
    "FORMAT_VERSION",
    "PHONE_TO_VISEME",
    "VISEMES",
    "VISEME_NAMES",
    "LipReader",
    "LipReaderConfig",
    "LipReaderNet",
    "class_names",
    "crop_spec_of",
    "frame_labels",
    "load_lipreader",
    "read_lipreader_checkpoint",
    "save_lipreader",
]

FORMAT = "l2t-gs/lipreader"
FORMAT_VERSION = 1
RUN_FILES = ("best.pt", "last.pt", "model.pt")
#: The lip reader kind of checkpoint file (reading, checks and error messages: :mod:`l2t_gs.io.checkpoint`).
CHECKPOINT = CheckpointFormat(
    FORMAT,
    FORMAT_VERSION,
    what="lip reader checkpoint",
    kind="an l2t-gs lip reader checkpoint",
    required=("config", "crop", "classes", "model"),
    run_files=RUN_FILES,
    hint="a checkpoint, a run directory or module:factory",
)

#: Viseme classes (name -> canonical phones): groups of phones that look alike on the lips and jaw.
VISEMES: dict[str, tuple[str, ...]] = {
    "sil": (SIL,),
    "bilabial": ("p", "b", "m"),  # lips closed
    "labiodental": ("f", "v"),  # lower lip on the upper teeth
    "dental": ("th", "dh"),  # tongue tip between the teeth
    "alveolar": ("t", "d", "n", "l"),  # slightly open, tongue behind the teeth
    "sibilant": ("s", "z"),  # teeth close, lips spread a little
    "postalveolar": ("sh", "zh", "ch", "jh"),  # lips forward, slightly rounded
    "velar": ("k", "g", "ng", "hh"),  # open jaw, lips neutral
    "rhotic": ("r", "er"),  # lips slightly rounded
    "round_close": ("w", "uw", "uh"),  # small rounded opening
    "round_open": ("ao", "ow", "oy"),  # rounded, jaw lowered
    "open": ("aa", "ae", "ah", "aw", "ay"),  # jaw open
    "spread": ("eh", "ey", "ih", "iy", "y"),  # lips spread
}
VISEME_NAMES: tuple[str, ...] = tuple(VISEMES)
PHONE_TO_VISEME: dict[str, int] = {p: i for i, phones in enumerate(VISEMES.values()) for p in phones}
assert sorted(PHONE_TO_VISEME) == sorted(PHONES), "every canonical phone needs exactly one viseme"
LABEL_SETS = ("viseme", "phone")


def class_names(labels: str) -> tuple[str, ...]:
    """Class names of a label set: ``"viseme"`` (:data:`VISEME_NAMES`) or ``"phone"`` (the canonical phones)."""
    if labels == "viseme":
        return VISEME_NAMES
    if labels == "phone":
        return PHONES
    raise L2TError(f"labels must be one of {', '.join(LABEL_SETS)}, got {labels!r}")


def _canonical(phone: str) -> str:
    p = phone.strip().lower()
    if p in PHONE_TO_VISEME:
        return p
    try:
        return map_cmu(phone)[0]
    except KeyError:
        raise L2TError(f"phone {phone!r} is not a canonical phone (see l2t_gs.speech.phones.PHONES)") from None


def frame_labels(segments: Sequence[Any], fps: float, num_frames: int, labels: str = "viseme") -> np.ndarray:
    """Class id of every frame ``[num_frames]`` int64: the phone at the frame's centre, ``(i + 0.5) / fps``.

    ``segments``: objects with ``phone``, ``start``, ``end`` (seconds; sorted); uncovered frames are ``sil``.
    """
    names = class_names(labels)
    times = (np.arange(num_frames) + 0.5) / fps
    sil = PHONE_TO_VISEME[SIL] if labels == "viseme" else PHONES.index(SIL)
    if not segments:
        return np.full(num_frames, sil, dtype=np.int64)
    table = PHONE_TO_VISEME if labels == "viseme" else {p: i for i, p in enumerate(names)}
    ids = np.array([table[_canonical(s.phone)] for s in segments] + [sil], dtype=np.int64)
    starts = np.array([s.start for s in segments], dtype=np.float64)
    ends = np.array([s.end for s in segments], dtype=np.float64)
    idx = np.searchsorted(starts, times, side="right") - 1
    inside = (idx >= 0) & (times < ends[np.clip(idx, 0, None)])
    return ids[np.where(inside, idx, len(segments))]


# --------------------------------------------------------------------------- the interface
@runtime_checkable
class LipReader(Protocol):
    """What :class:`~l2t_gs.training.losses.lipread.LipReadLoss` needs from a lip reader (see ``docs/lipreader.md``).

    Attributes:
        crop_size: ``(height, width)`` of the crops it reads.
        fps: the frame rate it expects (crops are resampled to it).
    Optional: ``crop_spec`` (a :class:`~l2t_gs.training.data.mouth.MouthCropSpec` or its dict) to change the
    framing of rendered crops.
    """

    crop_size: tuple[int, int]
    fps: float

    def features(self, crops: Tensor) -> Tensor:
        """``crops [B, T, 1, H, W]`` gray levels in 0..1 -> features ``[B, T, D]`` (differentiable)."""
        ...


def crop_spec_of(reader: Any) -> MouthCropSpec:
    """The crop geometry a lip reader wants: its ``crop_spec`` if it has one, else the default at its ``crop_size``."""
    h, w = (int(x) for x in reader.crop_size)
    spec = getattr(reader, "crop_spec", None)
    if isinstance(spec, dict):
        spec = MouthCropSpec.from_dict(spec, where="lip reader crop_spec")
    if spec is None:
        return MouthCropSpec(height=h, width=w)
    if not isinstance(spec, MouthCropSpec):
        raise L2TError(f"lip reader crop_spec must be a MouthCropSpec or a dict, got {type(spec).__name__}")
    if spec.size != (h, w):
        raise L2TError(f"lip reader crop_spec is {spec.height}x{spec.width} but its crop_size is {h}x{w}")
    return spec


# --------------------------------------------------------------------------- the network
@dataclass
class LipReaderConfig:
    """Network hyper-parameters (the ``[model]`` table of ``training/lipreader.toml``).

    ``channels``: widths of the 3D front end and the three stride-2 2D stages; ``d_model``: feature size;
    ``temporal``: ``"tcn"`` (residual dilated 1D convolutions, dilation 1, 2, 4, ...) or ``"gru"``
    (bidirectional); ``temporal_layers``, ``kernel`` (TCN kernel, odd); ``labels``: ``"viseme"`` or ``"phone"``;
    ``fps``: frame rate of its training crops.
    """

    channels: tuple[int, ...] = (16, 32, 64, 96)
    d_model: int = 128
    temporal: str = "tcn"
    temporal_layers: int = 3
    kernel: int = 5
    dropout: float = 0.1
    labels: str = "viseme"
    fps: float = 30.0

    def validate(self) -> LipReaderConfig:
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise L2TError(f"[model] channels must be 4 positive widths, got {list(self.channels)}")
        if self.d_model < 1 or self.temporal_layers < 0 or self.kernel < 1 or self.kernel % 2 == 0:
            raise L2TError("[model] d_model >= 1, temporal_layers >= 0 and an odd kernel are required")
        if self.temporal not in ("tcn", "gru"):
            raise L2TError(f"[model] temporal must be 'tcn' or 'gru', got {self.temporal!r}")
        if not 0 <= self.dropout < 1 or not self.fps > 0:
            raise L2TError("[model] dropout must be in [0, 1) and fps > 0")
        class_names(self.labels)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "[model]") -> LipReaderConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise L2TError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        ref = cls()
        kw: dict[str, Any] = {}
        for key, value in data.items():
            default = getattr(ref, key)
            if isinstance(default, tuple):
                ints = all(isinstance(v, int) and not isinstance(v, bool) for v in value or ())
                ok = isinstance(value, list | tuple) and ints
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                value = float(value) if ok else value
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, str)
            if not ok:
                raise L2TError(f"{where}: {key} has the wrong type: {value!r}")
            kw[key] = tuple(value) if isinstance(default, tuple) else value
        return cls(**kw).validate()


class _TemporalBlock(nn.Module):
    """Residual dilated 1D convolution over ``[B, D, T]`` ('same' padding)."""

    def __init__(self, d: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, d, kernel, padding=dilation * (kernel // 2), dilation=dilation)
        self.norm = nn.BatchNorm1d(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(torch.relu(self.norm(self.conv(x))))


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class LipReaderNet(nn.Module):
    """Per-frame visual speech classifier; implements :class:`LipReader`.

    Input crops ``[B, T, 1, H, W]`` in 0..1 are standardised per sequence (zero mean, unit variance over
    T, H, W), which removes brightness and contrast differences between rendered and filmed crops.
    """

    def __init__(self, config: LipReaderConfig, crop_spec: MouthCropSpec) -> None:
        super().__init__()
        self.config = config.validate()
        self.crop_spec = crop_spec
        self.classes = class_names(config.labels)
        c0, c1, c2, c3 = config.channels
        self.front = nn.Sequential(
            nn.Conv3d(1, c0, (5, 5, 5), stride=(1, 2, 2), padding=(2, 2, 2), bias=False),
            nn.BatchNorm3d(c0),
            nn.ReLU(inplace=True),
        )
        self.trunk = nn.Sequential(_stage(c0, c1), _stage(c1, c2), _stage(c2, c3), nn.AdaptiveAvgPool2d(1))
        self.proj = nn.Linear(c3, config.d_model)
        d = config.d_model
        if config.temporal == "tcn":
            self.temporal: nn.Module = nn.ModuleList(
                [_TemporalBlock(d, config.kernel, 2**i, config.dropout) for i in range(config.temporal_layers)]
            )
        else:
            if d % 2:
                raise L2TError("[model] d_model must be even with temporal = 'gru'")
            layers = max(1, config.temporal_layers)
            self.temporal = nn.GRU(
                d, d // 2, num_layers=layers, batch_first=True, bidirectional=True,
                dropout=config.dropout if layers > 1 else 0.0,
            )  # fmt: skip
        self.head = nn.Linear(d, len(self.classes))

    @property
    def crop_size(self) -> tuple[int, int]:
        return self.crop_spec.size

    @property
    def fps(self) -> float:
        return float(self.config.fps)

    def features(self, crops: Tensor) -> Tensor:
        """``crops [B, T, 1, H, W]`` in 0..1 -> ``[B, T, d_model]``."""
        if crops.dim() != 5 or crops.shape[2] != 1 or tuple(crops.shape[3:]) != self.crop_size:
            h, w = self.crop_size
            raise L2TError(f"lip reader expects crops [B, T, 1, {h}, {w}], got {list(crops.shape)}")
        b, t = crops.shape[:2]
        x = crops.to(self.proj.weight.dtype)
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        std = x.std(dim=(1, 2, 3, 4), keepdim=True, unbiased=False)
        x = (x - mean) / (std + 0.02)
        x = self.front(x.transpose(1, 2))  # [B, C, T, H/2, W/2]
        c, h2, w2 = x.shape[1], x.shape[3], x.shape[4]
        x = x.transpose(1, 2).reshape(b * t, c, h2, w2)
        x = self.proj(self.trunk(x).flatten(1)).view(b, t, -1)
        if isinstance(self.temporal, nn.GRU):
            return self.temporal(x)[0]
        y = x.transpose(1, 2)
        for block in self.temporal:
            y = block(y)
        return y.transpose(1, 2)

    def forward(self, crops: Tensor) -> Tensor:
        """Per-frame class logits ``[B, T, n_classes]``."""
        return self.head(self.features(crops))


# --------------------------------------------------------------------------- checkpoints
def payload(model: LipReaderNet) -> dict[str, Any]:
    """Everything needed to rebuild ``model``, as a ``weights_only``-safe dict."""
    return CHECKPOINT.header() | {
        "config": model.config.to_dict(),
        "crop": model.crop_spec.to_dict(),
        "classes": list(model.classes),
        "model": cpu_state_dict(model),
    }


def save_lipreader(path: str | os.PathLike, model: LipReaderNet, train: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (and optional training state) to ``path`` atomically."""
    data = payload(model)
    if train is not None:
        data["train"] = train
    return save_payload(path, data)


def read_lipreader_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load and check a lip reader checkpoint dict; damaged or foreign files raise one-line :class:`L2TError`."""
    return CHECKPOINT.read(path)


def model_from_checkpoint(data: dict[str, Any], where: str = "lip reader checkpoint") -> LipReaderNet:
    """Rebuild a :class:`LipReaderNet` from a :func:`read_lipreader_checkpoint` dict."""
    cfg = LipReaderConfig.from_dict(dict(data["config"]), where=f"{where}: config")
    spec = MouthCropSpec.from_dict(dict(data["crop"]), where=f"{where}: crop")
    model = LipReaderNet(cfg, spec)
    if list(model.classes) != list(data["classes"]):
        raise L2TError(f"{where}: its classes do not match label set {cfg.labels!r}")
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise L2TError(f"{where} does not match its config ({detail})") from None
    return model


# --------------------------------------------------------------------------- loading any lip reader
_FACTORY = re.compile(r"^(?P<module>.+):(?P<attr>[A-Za-z_][A-Za-z0-9_.]*)$")


def _import_factory(module: str, attr: str) -> Any:
    try:
        if module.endswith(".py") or os.sep in module:
            path = Path(module).expanduser()
            if not path.is_file():
                raise L2TError(f"lip reader module file not found: {path}")
            name = f"_l2t_user_lipreader_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise L2TError(f"cannot import lip reader module {path}")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(module)
    except L2TError:
        raise
    except Exception as exc:
        raise L2TError(f"cannot import lip reader module {module!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise L2TError(f"lip reader module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def check_lipreader(reader: Any, where: str = "lip reader") -> Any:
    """Check that ``reader`` offers the :class:`LipReader` interface; return it."""
    if not isinstance(reader, LipReader):
        missing = [a for a in ("crop_size", "fps", "features") if not hasattr(reader, a)]
        raise L2TError(f"{where} ({type(reader).__name__}) lacks {', '.join(missing)} (see docs/lipreader.md)")
    size = reader.crop_size
    ok = isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)
    if not ok:
        raise L2TError(f"{where}: crop_size must be (height, width) positive ints, got {size!r}")
    if not (isinstance(reader.fps, int | float) and reader.fps > 0):
        raise L2TError(f"{where}: fps must be a positive number, got {reader.fps!r}")
    if not callable(reader.features):
        raise L2TError(f"{where}: features must be callable")
    crop_spec_of(reader)
    return reader


def load_lipreader(path_or_spec: Any, device: str | torch.device = "cpu") -> Any:
    """A frozen lip reader (eval mode, no parameter gradients) from:

    * a checkpoint file or a run directory of ``l2t-gs train lipreader``;
    * ``"module:factory"`` or ``"path/to/file.py:factory"``: ``factory()`` returns a :class:`LipReader`;
    * an object that already is a :class:`LipReader`.
    """
    if not isinstance(path_or_spec, str | os.PathLike):
        reader, where = path_or_spec, "lip reader"
    else:
        text = os.fspath(path_or_spec)
        match = _FACTORY.match(text)
        if match and not Path(text).exists():
            factory = _import_factory(match["module"], match["attr"])
            where = f"lip reader {text}"
            if not callable(factory):
                raise L2TError(f"{where}: {match['attr']} is not callable")
            try:
                reader = factory()
            except L2TError:
                raise
            except Exception as exc:
                raise L2TError(f"{where}: the factory failed: {type(exc).__name__}: {exc}") from None
        else:
            p = CHECKPOINT.resolve(text)
            where = f"lip reader checkpoint {p}"
            reader = model_from_checkpoint(read_lipreader_checkpoint(p), where=where)
    check_lipreader(reader, where)
    if isinstance(reader, nn.Module):
        reader = reader.to(device).eval()
        reader.requires_grad_(False)
    return reader
