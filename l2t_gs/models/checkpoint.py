"""Audio2Mesh checkpoints: self-contained files that rebuild the model without the training setup.

A checkpoint is a ``torch.save`` dict read back with ``weights_only=True`` (no arbitrary pickles):

- ``format`` (``"l2t-gs/audio2mesh"``), ``format_version``, ``l2t_gs_version``;
- ``config``: the :class:`~l2t_gs.models.audio2mesh.Audio2MeshConfig` as a dict (keys added later,
  e.g. ``contact_head``, may be absent: they take their defaults);
- ``subjects`` (speaker styles in one-hot order), ``fps``, ``n_verts``;
- ``head``: rig output only: ``{"spec": str, "npz": bytes}``, the head model itself (compressed .npz);
- ``hf_config``: the transformers config of a wav2vec2/HuBERT encoder (``None`` for the built-in one);
- ``model``: the state dict;
- ``train``: optional training state (optimizer, step, epoch, ...), ignored by :func:`load_model`.

Reading, checks and atomic writing are the shared ones of :mod:`l2t_gs.io.checkpoint` (:data:`CHECKPOINT`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from l2t_gs.errors import L2TError
from l2t_gs.io.checkpoint import CheckpointFormat, cpu_state_dict, save_payload
from l2t_gs.io.tempfiles import temp_dir
from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
from l2t_gs.models.encoders import HFEncoder
from l2t_gs.rig import load_head_model, save_head_model

__all__ = [
    "CHECKPOINT",
    "FORMAT",
    "FORMAT_VERSION",
    "load_model",
    "model_from_checkpoint",
    "model_payload",
    "read_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

FORMAT = "l2t-gs/audio2mesh"
FORMAT_VERSION = 1
#: File names looked for, in order, when a run directory is given.
RUN_FILES = ("best.pt", "last.pt", "model.pt")
#: The Audio2Mesh kind of checkpoint file (reading, checks and error messages: :mod:`l2t_gs.io.checkpoint`).
CHECKPOINT = CheckpointFormat(
    FORMAT,
    FORMAT_VERSION,
    what="checkpoint",
    kind="an l2t-gs Audio2Mesh checkpoint",
    required=("config", "subjects", "n_verts", "model"),
    run_files=RUN_FILES,
)


def _head_npz_bytes(model: Audio2Mesh) -> bytes:

    with temp_dir(label="head") as tmp:
        path = tmp / "head.npz"
        save_head_model(model.head, path, compress=True)
        return path.read_bytes()


def model_payload(model: Audio2Mesh) -> dict[str, Any]:
    """Everything needed to rebuild ``model`` (unwrap DDP first), as a ``weights_only``-safe dict."""

    enc = model.encoder
    return CHECKPOINT.header() | {
        "config": _config_dict(model.config),
        "subjects": list(model.subjects),
        "fps": model.fps,
        "n_verts": model.n_verts,
        "head": {"spec": model.config.head, "npz": _head_npz_bytes(model)} if model.rig is not None else None,
        "hf_config": enc.config_dict() if isinstance(enc, HFEncoder) else None,
        "model": cpu_state_dict(model),
    }


def _config_dict(config: Audio2MeshConfig) -> dict[str, Any]:
    """The config as stored: ``contact_head`` (and ``contact_threshold``) only when on, so that models
    without a contact head stay readable by l2t-gs versions that predate it (missing keys load as the
    defaults)."""
    out = config.to_dict()
    if not out.get("contact_head"):
        out.pop("contact_head", None)
        out.pop("contact_threshold", None)
    return out


def save_checkpoint(path: str | os.PathLike, model: Audio2Mesh, train: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (and optional training state) to ``path`` atomically."""
    payload = model_payload(model)
    if train is not None:
        payload["train"] = train
    return save_payload(path, payload)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file, or the best one of a run directory (``best.pt``, else ``last.pt``, else ``model.pt``)."""
    return CHECKPOINT.resolve(path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint dict; corrupt, truncated or foreign files raise a one-line :class:`L2TError`."""
    return CHECKPOINT.read(path, map_location)


def model_from_checkpoint(data: dict[str, Any], where: str = "checkpoint") -> Audio2Mesh:
    """Rebuild an :class:`Audio2Mesh` from a :func:`read_checkpoint` dict and load its weights."""
    cfg = Audio2MeshConfig.from_dict(dict(data["config"]), where=f"{where}: model config")
    head = None
    if cfg.output == "rig":
        head = _head_from_checkpoint(data.get("head"), where)
    model = Audio2Mesh(cfg, list(data["subjects"]), int(data["n_verts"]), head=head, hf_config=data.get("hf_config"))
    state = data["model"]
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first[1:] if ln.strip()), first[0] if first else "")
        raise L2TError(f"{where} does not match its model config ({detail[:200]})") from None
    if missing or unexpected:
        names = ", ".join((list(missing) + list(unexpected))[:4])
        raise L2TError(f"{where} does not match its model config (missing/unexpected weights: {names})")
    return model


def _head_from_checkpoint(head: Any, where: str) -> Any:

    if not isinstance(head, dict) or not isinstance(head.get("npz"), bytes | bytearray):
        raise L2TError(f"{where}: rig-output checkpoint lacks its head model")
    with temp_dir(label="head") as tmp:
        path = tmp / "head.npz"
        path.write_bytes(bytes(head["npz"]))
        try:
            return load_head_model(path)
        except L2TError as exc:
            raise L2TError(f"{where}: embedded head model is damaged ({exc})") from None


def load_model(path_or_run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> Audio2Mesh:
    """Load an :class:`Audio2Mesh` (eval mode) from a checkpoint file or a training run directory."""
    p = resolve_checkpoint(path_or_run_dir)
    data = read_checkpoint(p)
    model = model_from_checkpoint(data, where=f"checkpoint {p}")
    return model.to(device).eval()
