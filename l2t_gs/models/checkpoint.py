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
    """The config as stored: ``contact_head`` (and ``contact_threshold``) only when on, and
    ``contact_gate_mm``, ``contact_hold_s``, ``contact_peak_s`` and ``contact_context`` (with ``contact_hidden`` and
    ``contact_dropout``; ``contact_members`` when above 1) only when set, so that models without them stay readable
    by l2t-gs versions that predate them (missing keys load as the defaults)."""
    out = config.to_dict()
    if not out.get("contact_head"):
        out.pop("contact_head", None)
        out.pop("contact_threshold", None)
    for key in ("contact_gate_mm", "contact_hold_s", "contact_peak_s", "contact_context"):
        if not out.get("contact_head") or not out.get(key):
            out.pop(key, None)
    if "contact_context" not in out:  # the context head's size matters only with one
        out.pop("contact_hidden", None)
        out.pop("contact_dropout", None)
    if "contact_context" not in out or out.get("contact_members") == 1:
        out.pop("contact_members", None)
    if "contact_context" not in out or not out.get("contact_encoder"):
        out.pop("contact_encoder", None)
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


#: Ranges of the size fields of a checkpoint's model config, checked before the model is built
#: (the shipped model: d_model 128, 4 layers; wav2vec2-large: hidden 1024, 24 layers).
CONFIG_LIMITS: dict[str, tuple[float, float]] = {
    "d_model": (1, 4096),
    "n_heads": (1, 64),
    "n_layers": (1, 64),
    "ff_mult": (1, 16),
    "period": (0, 100_000),
    "feats_per_frame": (1, 16),
    "rig_expr": (0, 10_000),
    "context_s": (0, 3600),
    "encoder_context_s": (0, 3600),
    "enc_dim": (1, 4096),
    "enc_layers": (1, 64),
    "enc_heads": (1, 64),
    "enc_window_s": (0, 3600),
    "n_mels": (1, 1024),
    "offset_scale": (0, 1e6),
    "contact_hidden": (1, 4096),
    "contact_members": (1, 16),
}
_HF_LIMITS = {
    "hidden_size": 8192,
    "intermediate_size": 65536,
    "num_hidden_layers": 128,
    "num_attention_heads": 128,
    "num_conv_pos_embeddings": 1024,
    "num_conv_pos_embedding_groups": 1024,
}
#: Most parameters a checkpoint's config may ask for (4 GB of float32).
MAX_PARAMETERS = 1 << 30
MAX_SUBJECTS = 100_000
MAX_VERTS = 1 << 22


def check_checkpoint_fields(data: dict[str, Any], where: str) -> Audio2MeshConfig:
    """Type and range of every field :func:`model_from_checkpoint` uses, and an estimate of the model's
    size, checked before anything is built (a forged ``d_model = 2**20`` must not allocate terabytes)."""
    raw = data.get("config")
    if not isinstance(raw, dict):
        raise L2TError(f"{where}: field 'config' must be a table, got {type(raw).__name__}")
    cfg = Audio2MeshConfig.from_dict(dict(raw), where=f"{where}: model config")
    for key, (low, high) in CONFIG_LIMITS.items():
        value = getattr(cfg, key)
        if not low <= value <= high:
            raise L2TError(f"{where}: model config field '{key}' must be in {low:g}..{high:g}, got {value!r}")
    subjects = data.get("subjects")
    if not isinstance(subjects, list | tuple) or not all(isinstance(x, str) for x in subjects):
        raise L2TError(f"{where}: field 'subjects' must be a list of speaker names, got {type(subjects).__name__}")
    if not 1 <= len(subjects) <= MAX_SUBJECTS:
        raise L2TError(f"{where}: field 'subjects' must name 1..{MAX_SUBJECTS} speakers, got {len(subjects)}")
    n_verts = data.get("n_verts")
    if isinstance(n_verts, bool) or not isinstance(n_verts, int) or not 3 <= n_verts <= MAX_VERTS:
        raise L2TError(f"{where}: field 'n_verts' must be an integer in 3..{MAX_VERTS}, got {n_verts!r}")
    hf = data.get("hf_config")
    if hf is not None and not isinstance(hf, dict):
        raise L2TError(f"{where}: field 'hf_config' must be a table or None, got {type(hf).__name__}")
    if cfg.encoder != "builtin" and hf is None:
        raise L2TError(
            f"{where}: its {cfg.encoder} encoder has no stored transformers config (hf_config); a checkpoint "
            "must be self-contained (its encoder_path is not loaded)"
        )
    if not isinstance(data.get("model"), dict):
        raise L2TError(f"{where}: field 'model' must be a state dict")
    params = _estimate_parameters(cfg, len(subjects), n_verts, hf or {}, where)
    if params > MAX_PARAMETERS:
        raise L2TError(f"{where}: its config asks for about {params:.3g} parameters, more than {MAX_PARAMETERS:.3g}")
    return cfg


def _estimate_parameters(cfg: Audio2MeshConfig, n_subjects: int, n_verts: int, hf: dict[str, Any], where: str) -> int:
    """Upper estimate of the parameter count (transformer layers, output layer, style embedding)."""
    d, e = cfg.d_model, cfg.enc_dim
    total = cfg.n_layers * (4 + 2 * cfg.ff_mult) * d * d + d * (3 * n_verts + n_subjects + cfg.rig_expr + 64)
    if cfg.contact_context:  # the context contact head's two convolutions (audio features of at most 8192)
        k = cfg.contact_hidden * cfg.contact_members
        total += (2 * cfg.contact_context + 1) * k * (e if cfg.encoder == "builtin" else 8192) + 5 * k * k
    before_encoder = total
    if cfg.encoder == "builtin":
        total += cfg.enc_layers * 12 * e * e + cfg.n_mels * e * 8 + e * d * cfg.feats_per_frame
    else:
        sizes = {}
        for key, high in _HF_LIMITS.items():
            value = hf.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise L2TError(f"{where}: hf_config field '{key}' must be an integer in 1..{high}, got {value!r}")
            sizes[key] = value
        h, i = sizes["hidden_size"], sizes["intermediate_size"]
        total += sizes["num_hidden_layers"] * (4 * h * h + 2 * h * i) + h * d * cfg.feats_per_frame
        for key in ("conv_dim", "conv_kernel", "conv_stride"):
            value = hf.get(key, [])
            if (
                not isinstance(value, list)
                or len(value) > 32
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192 for v in value)
            ):
                raise L2TError(f"{where}: hf_config field '{key}' must be a list of at most 32 integers in 1..8192")
        dims, kernels = hf.get("conv_dim", []), hf.get("conv_kernel", [])
        total += sum(a * b * k for a, b, k in zip([1, *dims], dims, kernels, strict=False))
    if cfg.contact_context and cfg.contact_encoder:  # the context contact head's own copy of the encoder
        total += total - before_encoder
    return int(total)


def model_from_checkpoint(data: dict[str, Any], where: str = "checkpoint") -> Audio2Mesh:
    """Rebuild an :class:`Audio2Mesh` from a :func:`read_checkpoint` dict and load its weights.

    Every field is checked first (:func:`check_checkpoint_fields`); the encoder is built from the stored
    config, never from a path named in the file.
    """
    cfg = check_checkpoint_fields(data, where)
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
