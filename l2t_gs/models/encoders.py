"""Audio encoders for Audio2Mesh: 16 kHz audio -> feature frames, and their alignment to motion frames.

Two encoders share one interface (:class:`AudioEncoder`):

* :class:`BuiltinEncoder`: log-mel (100 frames/s) -> two 1-D convolutions (the second strided, 50
  frames/s) -> a small transformer encoder whose self-attention is banded (``window_s`` each side)
  with a symmetric linear distance bias. Its receptive field is finite, so chunked inference
  reproduces whole-clip features exactly when the chunks carry ``context_s`` of audio on each side.
  A few hundred times faster than real time on one CPU core.
* :class:`HFEncoder`: a ``transformers`` ``Wav2Vec2Model`` or ``HubertModel`` (a local directory, or a
  hub id already in the local cache: loading never downloads), its CNN feature extractor frozen as in
  FaceFormer. Global self-attention: chunked features approximate whole-clip
  ones; the caller cross-fades overlapping chunks.

Features of either encoder are placed on the motion frame grid by :func:`align_features`, a linear
interpolation in time (FaceFormer interpolates wav2vec2's 50 Hz features to 30 fps the same way),
written so that it is translation invariant: a window starting on a chunk grid point gives the same
values as the whole signal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2t_gs.audio.features import LogMel
from l2t_gs.core.registry import Registry
from l2t_gs.errors import L2TError

__all__ = [
    "MASKED",
    "SAMPLE_RATE",
    "AudioEncoder",
    "BuiltinEncoder",
    "HFEncoder",
    "align_features",
    "alibi_slopes",
]

SAMPLE_RATE = 16000
#: Additive attention bias of masked keys. Finite (exp underflows to exactly 0 after the softmax's max
#: subtraction) and representable in float16/bfloat16; PyTorch's CPU attention is several times
#: faster with a finite 4-D mask than with ``-inf`` entries.
MASKED = -30000.0


def alibi_slopes(n_heads: int) -> Tensor:
    """ALiBi head slopes [H]: a geometric sequence starting at ``2^(-8/H)`` (1/4, 1/16, 1/64, 1/256 for 4).

    For a head count that is not a power of two, the slopes of the next lower power of two are
    followed by every other slope of the next higher one (as in the ALiBi paper).
    """

    def pow2(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if n_heads < 1:
        raise ValueError("n_heads must be >= 1")
    if math.log2(n_heads).is_integer():
        return torch.tensor(pow2(n_heads))
    low = 2 ** math.floor(math.log2(n_heads))
    return torch.tensor(pow2(low) + pow2(2 * low)[0::2][: n_heads - low])


class AudioEncoder(nn.Module):
    """Interface: ``forward(audio [B, n] float, 16 kHz) -> features [B, N, out_dim]``.

    Feature ``j`` describes the audio around ``offset_s + j / frame_rate`` seconds. Chunk windows must
    start on multiples of ``stride_samples`` for their features to line up with whole-clip features;
    ``context_s`` is the audio each side a chunk needs for (nearly) exact features.
    """

    out_dim: int
    frame_rate: float
    offset_s: float
    stride_samples: int
    context_s: float
    exact_chunks: bool  # whether context_s makes chunked features exactly equal whole-clip ones


class _Attention(nn.Module):
    """Multi-head self-attention with an additive float bias [1, H, T, T] (:data:`MASKED` masks)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise L2TError(f"model dimension {dim} is not divisible by {heads} attention heads")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class _EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, dropout)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.norm1(x), bias))
        return x + self.drop(self.ff(self.norm2(x)))


class BuiltinEncoder(AudioEncoder):
    """Log-mel + strided conv + banded transformer encoder (no pretrained weights needed).

    ``audio [B, n] -> [B, ceil((n // 160 + 1) / 2), dim]`` at 50 frames/s, frame ``j`` centred at
    ``0.02 * j`` s.
    """

    slopes: Tensor

    def __init__(
        self,
        dim: int = 128,
        layers: int = 4,
        heads: int = 4,
        n_mels: int = 80,
        window_s: float = 0.3,
        ff_mult: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.mel = LogMel(SAMPLE_RATE, n_fft=400, hop_length=160, n_mels=n_mels)
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.layers = nn.ModuleList(_EncoderLayer(dim, heads, ff_mult, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)
        self.out_dim = dim
        self.frame_rate = SAMPLE_RATE / 320
        self.offset_s = 0.0
        self.stride_samples = 320
        self.window = max(1, round(window_s * self.frame_rate))  # frames each side
        # conv: +-2 mel frames (320 samples) + the STFT half window (200); attention: window per layer
        self.context_s = (520 + layers * self.window * 320) / SAMPLE_RATE
        self.exact_chunks = True

    def _bias(self, n: int, device: torch.device) -> Tensor:
        """Symmetric distance bias ``[1, H, n, n]``, keys beyond ``window`` frames masked."""
        pos = torch.arange(n, device=device)
        dist = (pos[:, None] - pos[None]).abs()
        bias = -self.slopes.to(device)[:, None, None] * dist.float()
        return bias.masked_fill(dist > self.window, MASKED)[None]

    def forward(self, audio: Tensor) -> Tensor:
        x = self.mel(audio)  # [B, n_mels, N_mel], natural-log power
        x = (x + 5.0) / 5.0  # fixed affine to O(1) (no per-utterance statistics: chunks stay consistent)
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # [B, N, dim]
        bias = self._bias(x.shape[1], x.device).to(x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return self.norm(x)


#: transformers model types an :class:`HFEncoder` wraps -> the transformers class name.
HF_MODEL_CLASSES = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel"}


def _hf_class(model_type: str) -> Any:
    try:
        import transformers
    except ImportError:
        raise L2TError("wav2vec2/HuBERT encoders need the 'transformers' package: pip install 'l2t-gs[hf]'") from None
    if model_type not in HF_MODEL_CLASSES:
        raise L2TError(
            f"unsupported transformers audio model type {model_type!r}; supported: {', '.join(HF_MODEL_CLASSES)}"
        )
    return getattr(transformers, HF_MODEL_CLASSES[model_type])


class HFEncoder(AudioEncoder):
    """A ``transformers`` wav2vec2/HuBERT model as an :class:`AudioEncoder` (last hidden state).

    Build it with :meth:`from_pretrained` (a local directory or a cached hub id) or :meth:`from_config`
    (a config dict; random weights, or weights loaded afterwards from a checkpoint).
    ``freeze``: ``"cnn"`` (FaceFormer: convolutional feature extractor frozen), ``"all"`` or ``"none"``.
    ``normalize``: zero-mean unit-variance input per window (what ``do_normalize`` of the model's
    feature extractor asks for; wav2vec2-base-960h: yes, hubert-base-ls960: no).
    """

    def __init__(self, model: nn.Module, freeze: str = "cnn", normalize: bool = True, context_s: float = 1.0) -> None:
        super().__init__()
        if freeze not in ("cnn", "all", "none"):
            raise L2TError(f"encoder freeze must be 'cnn', 'all' or 'none', got {freeze!r}")
        self.model = model
        self.freeze, self.normalize = freeze, normalize
        cfg = model.config
        frozen = (
            model.parameters() if freeze == "all" else model.feature_extractor.parameters() if freeze == "cnn" else ()
        )
        for p in frozen:
            p.requires_grad_(False)
        stride, field = 1, 1
        for k, s in zip(cfg.conv_kernel, cfg.conv_stride, strict=True):
            field += (k - 1) * stride
            stride *= s
        self.out_dim = int(cfg.hidden_size)
        self.stride_samples = int(stride)
        self.frame_rate = SAMPLE_RATE / stride
        self.offset_s = (field - 1) / 2 / SAMPLE_RATE
        self.context_s = float(context_s)
        self.exact_chunks = False

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)

    def config_dict(self) -> dict[str, Any]:
        """The transformers config as a JSON-compatible dict (stored in checkpoints)."""
        return json.loads(self.model.config.to_json_string(use_diff=False))

    @classmethod
    def from_config(cls, model_type: str, config: dict[str, Any], **kwargs: Any) -> HFEncoder:
        klass = _hf_class(model_type)
        cfg = klass.config_class.from_dict({k: v for k, v in config.items() if k != "model_type"})
        return cls(klass(cfg), **kwargs)

    @classmethod
    def from_pretrained(cls, source: str, normalize: bool | None = None, **kwargs: Any) -> HFEncoder:
        """Load from a local directory (or a hub id present in the local cache; never downloads)."""
        try:
            from transformers import AutoConfig
        except ImportError:
            _hf_class("wav2vec2")  # raises the install hint
            raise
        try:
            cfg = AutoConfig.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise L2TError(
                f"cannot load audio encoder {source!r} (offline: pass a local model directory): {first}"
            ) from None
        klass = _hf_class(cfg.model_type)
        try:  # safetensors only: a pytorch_model.bin is a pickle, which could run code
            model = klass.from_pretrained(source, local_files_only=True, use_safetensors=True)
        except Exception as exc:  # noqa: BLE001 - transformers raises many kinds; all mean "unusable"
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise L2TError(
                f"cannot load the weights of audio encoder {source!r} (only model.safetensors is read): {first}"
            ) from None
        if normalize is None:
            normalize = _do_normalize(source, default=cfg.model_type == "wav2vec2")
        return cls(model, normalize=normalize, **kwargs)

    def forward(self, audio: Tensor) -> Tensor:
        x = audio.to(next(self.model.parameters()).dtype)
        if x.shape[-1] < self.stride_samples * 2:  # the conv stack needs ~400 samples
            x = F.pad(x, (0, self.stride_samples * 2 - x.shape[-1]))
        if self.normalize:
            x = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-7)
        return self.model(x).last_hidden_state


def _do_normalize(source: str, default: bool) -> bool:
    """``do_normalize`` from a local ``preprocessor_config.json`` (``default`` when there is none)."""
    path = Path(source) / "preprocessor_config.json"
    try:
        return bool(json.loads(path.read_text()).get("do_normalize", default))
    except (OSError, ValueError):
        return default


def align_features(
    feats: Tensor,
    frame_rate: float,
    offset_s: float,
    n_frames: int,
    fps: float,
    per_frame: int = 1,
    shift_s: float = 0.0,
) -> Tensor:
    """Linearly interpolate encoder features onto motion frames.

    ``feats [B, N, C]`` (feature ``j`` at ``offset_s + j / frame_rate`` s) -> ``[B, n_frames, per_frame, C]``:
    motion frame ``i`` is at ``shift_s + i / fps`` s; with ``per_frame = k`` it takes ``k`` samples
    spread evenly over its frame period (FaceFormer's BIWI setting pairs 2 audio features per frame).
    Times outside the features clamp to the first/last feature. Vectorised (no loop over frames).
    """
    b, n, c = feats.shape
    i = torch.arange(n_frames, device=feats.device, dtype=torch.float64)[:, None]
    sub = (torch.arange(per_frame, device=feats.device, dtype=torch.float64) - (per_frame - 1) / 2) / per_frame
    t = shift_s + (i + sub[None]) / fps  # [T, k]
    pos = ((t - offset_s) * frame_rate).clamp(0, n - 1).reshape(-1)
    lo = pos.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo.double()).to(feats.dtype)[None, :, None]
    out = feats[:, lo] * (1 - w) + feats[:, hi] * w
    return out.view(b, n_frames, per_frame, c)


# --------------------------------------------------------------------------- registry
#: Audio encoders by the name ``Audio2MeshConfig.encoder`` uses: name -> builder(config, hf_config).
#: ``config`` is an :class:`~l2t_gs.models.audio2mesh.Audio2MeshConfig`; ``hf_config`` a stored
#: transformers config (rebuild from a checkpoint) or None. A new encoder is one builder registered here.
ENCODERS: Registry[Callable[[Any, dict[str, Any] | None], AudioEncoder]] = Registry("audio encoder")


@ENCODERS.register("builtin", help="log-mel + small transformer, trained with the model (no download)")
def _build_builtin(cfg: Any, hf_config: dict[str, Any] | None) -> AudioEncoder:
    return BuiltinEncoder(cfg.enc_dim, cfg.enc_layers, cfg.enc_heads, cfg.n_mels, cfg.enc_window_s, dropout=cfg.dropout)


def _build_hf(cfg: Any, hf_config: dict[str, Any] | None) -> AudioEncoder:
    kw: dict[str, Any] = {"freeze": cfg.encoder_freeze, "context_s": cfg.encoder_context_s}
    if hf_config is not None:
        return HFEncoder.from_config(cfg.encoder, hf_config, normalize=bool(cfg.encoder_normalize), **kw)
    if not cfg.encoder_path:
        raise L2TError(f"encoder = {cfg.encoder!r} needs encoder_path (a local model directory or a cached hub id)")
    enc = HFEncoder.from_pretrained(cfg.encoder_path, normalize=cfg.encoder_normalize, **kw)
    if enc.model_type != cfg.encoder:
        raise L2TError(
            f"{cfg.encoder_path} holds a {enc.model_type!r} model, but the config says encoder = {cfg.encoder!r}"
        )
    cfg.encoder_normalize = enc.normalize  # resolved: stored with the model
    return enc


for _name in HF_MODEL_CLASSES:
    ENCODERS.add(_name, _build_hf, f"transformers {_name} from a local model folder (encoder_path)")


def build_encoder(cfg: Any, hf_config: dict[str, Any] | None = None) -> AudioEncoder:
    """The audio encoder ``cfg.encoder`` names, built from ``cfg`` (see :data:`ENCODERS`)."""
    return ENCODERS.get(cfg.encoder)(cfg, hf_config)
