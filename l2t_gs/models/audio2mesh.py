"""Audio2Mesh: speech -> per-frame 3D face motion (FaceFormer-style decoder, two decoding modes).

Pipeline: 16 kHz audio -> :mod:`~l2t_gs.models.encoders` features -> linear interpolation onto the
motion frame grid (``feats_per_frame`` samples per frame) -> decoder -> either vertex offsets from
the subject template (``output="vertices"``, ``[T, V*3]``) or rig coefficients (``output="rig"``:
``rig_expr`` expression components + a 3-D jaw axis-angle) turned into offsets by FLAME's skinning
(:class:`~l2t_gs.rig.ExprJawRig`, exactly the differentiable :class:`~l2t_gs.rig.FlameRig` restricted to those
parameters): ``vertices = template + rig(expr, jaw) - rig(0, 0)``.

Decoder (FaceFormer's ingredients): periodic positional encoding (period = fps), causal self-attention
with a per-head linear bias that grows every ``period`` frames (ALiBi-like slopes 1/4, 1/16, ... for 4
heads) limited to a window of ``context_s`` seconds, a cross-attention with FaceFormer's alignment
mask (frame ``i`` sees only its own ``feats_per_frame`` audio features), a one-hot speaker style
embedding (an ``nn.Embedding``, the same as FaceFormer's bias-free linear map of a one-hot vector)
added to the decoder input.

* ``decoder="nar"`` (default): non-autoregressive; the decoder input is the aligned audio feature plus
  style and position, so all frames decode in parallel in training and inference.
* ``decoder="ar"``: autoregressive as FaceFormer (input = previous frame's motion); trained with
  teacher forcing, decoded frame by frame with a key/value cache bounded to the attention window.

Long audio runs in chunks (:meth:`Audio2Mesh.predict_stream`) with bounded memory: encoder windows
carry context on both sides and overlapping features are cross-faded; the decoder keeps only its
attention window of history (non-AR: the last ``n_layers * (window - 1)`` input frames; AR: the key /
value cache), which makes decoding of chunks exactly equal to decoding the whole clip.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from l2t_gs.errors import L2TError
from l2t_gs.models.contact_context import ContactContext
from l2t_gs.models.encoders import (
    ENCODERS,
    MASKED,
    SAMPLE_RATE,
    AudioEncoder,
    alibi_slopes,
    align_features,
    build_encoder,
)
from l2t_gs.motion.articulation import EDGE_S
from l2t_gs.motion.contacts import apply_contacts
from l2t_gs.motion.transcript import apply_transcript
from l2t_gs.rig import ExprJawRig, FlameRig, load_head_model

__all__ = [
    "Audio2Mesh",
    "Audio2MeshConfig",
    "ExprJawRig",
    "MotionDecoder",
    "PeriodicPositionalEncoding",
    "biased_causal_bias",
]

_RIG_BLOCK = 32  # frames per rig-decoding block at inference


@dataclass
class Audio2MeshConfig:
    """Architecture of an :class:`Audio2Mesh` model (the ``[model]`` table of a training recipe).

    Encoder: ``encoder`` is ``"builtin"`` or ``"wav2vec2"``/``"hubert"`` (transformers, loaded from
    ``encoder_path``: a local directory or a cached hub id). ``encoder_freeze``: ``"cnn"`` (FaceFormer),
    ``"all"`` or ``"none"``; ``encoder_normalize``: per-window input normalisation (``None``: the
    model's ``preprocessor_config.json``); ``encoder_context_s``: audio each side of an inference
    chunk for transformers encoders. ``enc_*`` / ``n_mels``: the built-in encoder's size.

    Decoder: ``decoder`` ``"nar"`` or ``"ar"``; ``d_model``, ``n_heads``, ``n_layers``, ``ff_mult``;
    ``period`` of the positional encoding and attention bias (0: ``round(fps)``); ``context_s``:
    self-attention window; ``feats_per_frame``: audio features per motion frame (1, or 2 as
    FaceFormer on BIWI).

    Output: ``output`` ``"vertices"`` or ``"rig"``; ``head``: head model of the rig (``"builtin"``
    or a FLAME ``.pkl``/``.npz``); ``rig_expr``: leading expression components predicted (0: all);
    ``offset_scale``: vertex output unit (raw output x scale = offset; training sets 0.001 for meshes
    in metres so that the network works in millimetres; 0 means 1).

    Contacts: ``contact_head`` (rig output only) adds two per-frame logits (bilabial closure,
    labiodental contact) read from the decoder's features; inference closes the lips where their
    probability exceeds ``contact_threshold`` and, when ``contact_gate_mm`` > 0, the decoder's own
    midline lip gap at that frame is under ``contact_gate_mm`` (the two must agree, which keeps the head
    from shutting a mouth the regressor holds wide open), and with ``contact_hold_s`` > 0 each run of
    bilabial contact frames is cut to that long around its most probable frame (with ``contact_peak_s`` > 0,
    around each local maximum of the probability within that radius)
    (:func:`l2t_gs.motion.contacts.apply_contacts`; all four calibrated on validation by
    ``l2t-gs train contact-threshold``). ``contact_context`` > 0 adds a context contact head
    (:class:`~l2t_gs.models.contact_context.ContactContext`): logits read from the audio features of
    ``contact_context + 2`` frames on each side, with ``contact_hidden`` channels and input dropout
    ``contact_dropout`` (an ensemble of ``contact_members`` such heads, logits averaged), summed with the
    linear head's (trained by ``l2t-gs train contact-head``); with ``contact_encoder`` it reads the features
    of an audio encoder of its own (a copy of the model's, fine-tuned for contacts; the motion path keeps
    the shared one).
    """

    fps: float = 30.0
    output: str = "vertices"
    head: str = "builtin"
    rig_expr: int = 0
    decoder: str = "nar"
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    ff_mult: int = 2
    period: int = 0
    context_s: float = 3.0
    feats_per_frame: int = 1
    dropout: float = 0.1
    offset_scale: float = 0.0
    contact_head: bool = False
    contact_threshold: float = 0.5  # contact probability above which a frame is a contact (calibrated on val)
    contact_gate_mm: float = (
        0.0  # a bilabial contact frame closes only where the decoder's lip gap is below this (0: off)
    )
    contact_hold_s: float = 0.0  # longest bilabial closure, kept around the most probable frame (0: off)
    contact_peak_s: float = 0.0  # with the hold: a closure per local maximum within this radius (0: one per run)
    contact_context: int = 0  # frames of audio features each side of the context contact head (0: none)
    contact_hidden: int = 32  # channels of the context contact head
    contact_dropout: float = 0.3  # input dropout of the context contact head (training only)
    contact_members: int = 1  # heads in the context contact head's ensemble (their logits are averaged)
    contact_encoder: bool = False  # the context contact head reads an audio encoder of its own (tuned for contacts)
    encoder: str = "builtin"
    encoder_path: str = ""
    encoder_freeze: str = "cnn"
    encoder_normalize: bool | None = None
    encoder_context_s: float = 1.0
    enc_dim: int = 128
    enc_layers: int = 4
    enc_heads: int = 4
    enc_window_s: float = 0.3
    n_mels: int = 80
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the model

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "model config") -> Audio2MeshConfig:
        """Build from a dict (e.g. a TOML table); unknown keys and wrong types raise :class:`L2TError`."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise L2TError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
        kw: dict[str, Any] = {}
        defaults = cls()
        for key, value in data.items():
            ref = getattr(defaults, key)
            if key == "encoder_normalize":
                ok = value is None or isinstance(value, bool)
            elif isinstance(ref, bool):
                ok = isinstance(value, bool)
            elif isinstance(ref, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                value = float(value) if ok else value
            elif isinstance(ref, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(ref))
            if not ok:
                raise L2TError(f"{where}: {key} must be {type(ref).__name__}, got {value!r}")
            kw[key] = value
        return cls(**kw).validate(where)

    def validate(self, where: str = "model config") -> Audio2MeshConfig:
        def bad(msg: str) -> L2TError:
            return L2TError(f"{where}: {msg}")

        if self.output not in ("vertices", "rig"):
            raise bad(f"output must be 'vertices' or 'rig', got {self.output!r}")
        if self.decoder not in ("nar", "ar"):
            raise bad(f"decoder must be 'nar' or 'ar', got {self.decoder!r}")
        if self.decoder == "ar" and self.output == "rig":
            raise bad("the autoregressive decoder predicts vertices; use decoder = 'nar' with output = 'rig'")
        if self.contact_head and self.output != "rig":
            raise bad("contact_head needs output = 'rig' (contacts are applied through the rig)")
        if not 0.0 < self.contact_threshold < 1.0:
            raise bad(f"contact_threshold must be in (0, 1), got {self.contact_threshold}")
        if not (self.contact_gate_mm >= 0.0 and math.isfinite(self.contact_gate_mm)):
            raise bad(f"contact_gate_mm must be a finite number >= 0, got {self.contact_gate_mm}")
        if not (0.0 <= self.contact_hold_s <= 1.0):
            raise bad(f"contact_hold_s must be in [0, 1] seconds, got {self.contact_hold_s}")
        if not (0.0 <= self.contact_peak_s <= 1.0):
            raise bad(f"contact_peak_s must be in [0, 1] seconds, got {self.contact_peak_s}")
        if not 0 <= self.contact_context <= 30:
            raise bad(f"contact_context must be in 0..30 frames, got {self.contact_context}")
        if self.contact_context and not self.contact_head:
            raise bad("contact_context needs contact_head = true")
        if self.contact_hidden < 1:
            raise bad(f"contact_hidden must be >= 1, got {self.contact_hidden}")
        if not 0 <= self.contact_dropout < 1:
            raise bad(f"contact_dropout must be in [0, 1), got {self.contact_dropout}")
        if not 1 <= self.contact_members <= 16:
            raise bad(f"contact_members must be in 1..16, got {self.contact_members}")
        if self.contact_encoder and not self.contact_context:
            raise bad("contact_encoder needs a context contact head (contact_context > 0)")
        if self.encoder not in ENCODERS:
            raise bad(f"encoder must be one of {', '.join(ENCODERS.choices())}, got {self.encoder!r}")
        if self.encoder_freeze not in ("cnn", "all", "none"):
            raise bad(f"encoder_freeze must be 'cnn', 'all' or 'none', got {self.encoder_freeze!r}")
        if not 1 <= self.fps <= 1000:
            raise bad(f"fps must be in 1..1000, got {self.fps}")
        for name in ("d_model", "n_heads", "n_layers", "ff_mult", "feats_per_frame", "enc_dim", "enc_layers"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads or self.enc_dim % self.enc_heads:
            raise bad("d_model / enc_dim must be divisible by n_heads / enc_heads")
        if self.context_s <= 0 or self.enc_window_s <= 0 or self.encoder_context_s < 0:
            raise bad("context_s and enc_window_s must be > 0, encoder_context_s >= 0")
        if self.offset_scale < 0:
            raise bad(f"offset_scale must be >= 0, got {self.offset_scale}")
        if not 0 <= self.dropout < 1:
            raise bad(f"dropout must be in [0, 1), got {self.dropout}")
        return self

    @property
    def period_frames(self) -> int:
        return self.period or max(1, round(self.fps))

    @property
    def window_frames(self) -> int:
        return max(1, round(self.context_s * self.fps))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- building blocks
class PeriodicPositionalEncoding(nn.Module):
    """Sinusoidal encoding of ``frame mod period`` (FaceFormer's PPE): ``x [B, T, d] + pe[(offset + t) % P]``."""

    pe: Tensor

    def __init__(self, dim: int, period: int) -> None:
        super().__init__()
        pos = torch.arange(period, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        pe = torch.zeros(period, dim)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
        self.period = period
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        idx = (torch.arange(x.shape[1], device=x.device) + offset) % self.period
        return x + self.pe[idx]


def biased_causal_bias(slopes: Tensor, n: int, period: int, window: int, masked: float = float("-inf")) -> Tensor:
    """FaceFormer's temporal bias, windowed: ``[H, n, n]`` additive attention bias.

    Query ``i`` may attend to key ``j`` when ``0 <= i - j < window``, with bias
    ``-slope_h * floor((i - j) / period)``; other keys get ``masked``.
    """
    pos = torch.arange(n, device=slopes.device)
    dist = pos[:, None] - pos[None]
    bias = -slopes[:, None, None] * torch.div(dist.clamp(min=0), period, rounding_mode="floor").to(slopes.dtype)
    return bias.masked_fill((dist < 0) | (dist >= window), masked)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, bias: Tensor, cache: dict[str, Tensor] | None = None, keep: int = 0) -> Tensor:
        """``x [B, T, d]``; with ``cache`` (incremental decoding) the new keys/values are appended and the
        last ``keep`` are kept in it; ``bias`` then covers ``[H, T, cached + T]``."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            drop = max(0, k.shape[2] - keep)
            cache["k"], cache["v"] = k[:, :, drop:], v[:, :, drop:]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class _AlignedCrossAttention(nn.Module):
    """Cross-attention under FaceFormer's alignment mask: frame ``t`` attends only to its own ``k``
    audio features. ``x [B, T, d], mem [B, T, k, d] -> [B, T, d]`` in O(T) (no T x T mask)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mem: Tensor) -> Tensor:
        b, t, d = x.shape
        h, dh = self.heads, d // self.heads
        q = self.q(x).view(b, t, h, dh)
        k, v = self.kv(mem).view(b, t, mem.shape[2], 2, h, dh).unbind(3)
        att = torch.einsum("bthd,btkhd->bthk", q, k) / math.sqrt(dh)
        att = self.drop(att.softmax(-1))
        return self.proj(torch.einsum("bthk,btkhd->bthd", att, v).reshape(b, t, d))


class _DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = _SelfAttention(dim, heads, dropout)
        self.cross_attn = _AlignedCrossAttention(dim, heads, dropout)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, mem: Tensor, bias: Tensor, cache: dict[str, Tensor] | None = None, keep: int = 0
    ) -> Tensor:
        x = x + self.drop(self.self_attn(self.norm1(x), bias, cache, keep))
        x = x + self.drop(self.cross_attn(self.norm2(x), mem))
        return x + self.drop(self.ff(self.norm3(x)))


class MotionDecoder(nn.Module):
    """FaceFormer-style motion decoder: ``aligned audio [B, T, k, C] -> raw motion [B, T, out_dim]``."""

    slopes: Tensor

    def __init__(self, cfg: Audio2MeshConfig, audio_dim: int, out_dim: int, n_styles: int) -> None:
        super().__init__()
        d = cfg.d_model
        self.ar = cfg.decoder == "ar"
        self.period, self.window = cfg.period_frames, cfg.window_frames
        self.audio_proj = nn.Linear(audio_dim, d)
        self.style = nn.Embedding(n_styles, d)
        self.motion_in = nn.Linear(out_dim, d) if self.ar else None
        self.ppe = PeriodicPositionalEncoding(d, self.period)
        self.in_drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            _DecoderLayer(d, cfg.n_heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, out_dim)
        nn.init.zeros_(self.out.weight)  # start at the template (FaceFormer initialises its output map to 0)
        nn.init.zeros_(self.out.bias)
        # optional contact logits (bilabial, labiodental) from the same features, after the motion output
        self.contact_out = nn.Linear(d, 2) if cfg.contact_head else None
        self.register_buffer("slopes", alibi_slopes(cfg.n_heads), persistent=False)
        self.out_dim = out_dim

    @property
    def history(self) -> int:
        """Input frames of past context that determine an output frame exactly (non-AR)."""
        return len(self.layers) * (self.window - 1)

    def style_vector(self, style: Tensor) -> Tensor:
        """``style [B]`` subject indices (``-1``: the mean of all styles, for unseen speakers) -> ``[B, d]``."""
        table = self.style.weight
        mean = table.mean(0, keepdim=True).expand(style.shape[0], -1)
        return torch.where((style >= 0)[:, None], table[style.clamp(min=0)], mean)

    def forward(
        self, feats: Tensor, style: Tensor, offset: int = 0, prev: Tensor | None = None, skip: int = 0
    ) -> Tensor:
        """``feats [B, T, k, C]``, ``style [B, d]`` (from :meth:`style_vector`), ``offset``: index of the first
        frame (phase of the periodic encoding); AR: ``prev [B, T, out_dim]`` = motion of the previous
        frame (teacher forcing; zeros before the first). Returns ``[B, T - skip, out_dim]`` (the first
        ``skip`` frames are context only); with a contact head the 2 contact logits follow."""
        mem = self.audio_proj(feats)  # [B, T, k, d]
        if self.ar:
            if prev is None:
                raise ValueError("the autoregressive decoder needs the previous frames' motion (teacher forcing)")
            x = self.motion_in(prev)
        else:
            x = mem.mean(2)
        x = self.in_drop(self.ppe(x + style[:, None], offset))
        bias = biased_causal_bias(self.slopes, x.shape[1], self.period, self.window, MASKED)[None].to(x.dtype)
        for layer in self.layers:
            x = layer(x, mem, bias)
        if self.contact_out is None:
            return self.out(self.norm(x[:, skip:]))
        h = self.norm(x[:, skip:])
        return torch.cat([self.out(h), self.contact_out(h)], dim=-1)  # [B, T, out_dim + 2]

    def decode_incremental(self, feats: Tensor, style: Tensor, offset: int, state: dict[str, Any]) -> Tensor:
        """Decode the next frames of a stream; ``state`` (start with ``{}``) carries the history.

        ``feats [1, t, k, C]`` are frames ``offset .. offset + t - 1``. Non-AR: decodes them with the last
        :attr:`history` input frames prepended (vectorised). AR: one frame at a time with a key/value
        cache of ``window - 1`` entries per layer. Either way the result equals :meth:`forward` on the
        whole sequence (AR: fed its own predictions).
        """
        if not self.ar:
            hist = state.get("hist")
            x = feats if hist is None else torch.cat([hist, feats], dim=1)
            h = x.shape[1] - feats.shape[1]
            out = self.forward(x, style, offset - h, skip=h)
            state["hist"] = x[:, max(0, x.shape[1] - self.history) :] if self.history else x[:, :0]
            return out
        caches: list[dict[str, Tensor]] = state.setdefault("caches", [{} for _ in self.layers])
        prev: Tensor = state.get("prev", feats.new_zeros(1, 1, self.out_dim))
        mem = self.audio_proj(feats)  # [1, t, k, d]
        keep, outs = self.window - 1, []
        for i in range(feats.shape[1]):
            t = offset + i
            x = self.ppe(self.motion_in(prev) + style[:, None], t)
            n_keys = min(t, keep) + 1
            dist = torch.arange(n_keys - 1, -1, -1, device=x.device)
            bias = -self.slopes[None, :, None, None] * torch.div(dist, self.period, rounding_mode="floor")
            bias = bias.to(x.dtype)
            for layer, cache in zip(self.layers, caches, strict=True):
                x = layer(x, mem[:, i : i + 1], bias, cache, keep)
            prev = self.out(self.norm(x))
            outs.append(prev)
        state["prev"] = prev
        return torch.cat(outs, dim=1)


# --------------------------------------------------------------------------- the model
class Audio2Mesh(nn.Module):
    """Speech -> mesh sequence. See the module docstring for the architecture.

    ``subjects``: training speakers in one-hot order (style names); ``n_verts``: vertex count of the
    meshes (5023 VOCASET, 23370 BIWI, the head model's for ``output="rig"``). ``head``: the rig's head
    model for ``output="rig"`` (loaded from ``config.head`` when omitted). ``encoder``: an
    :class:`AudioEncoder` to use instead of building one from the config; ``hf_config``: a
    transformers config dict to build the wav2vec2/HuBERT encoder from (random weights, e.g. before
    loading a checkpoint) instead of ``config.encoder_path``.
    """

    def __init__(
        self,
        config: Audio2MeshConfig,
        subjects: list[str],
        n_verts: int,
        head: Any = None,
        encoder: AudioEncoder | None = None,
        hf_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        config.validate()
        if not subjects:
            raise L2TError("Audio2Mesh needs at least one training subject (speaker style)")
        self.config = config
        self.subjects = list(subjects)
        self.n_verts = int(n_verts)
        self.fps = float(config.fps)
        self.encoder = encoder if encoder is not None else build_encoder(config, hf_config)
        self.rig = None
        if config.output == "rig":
            head = head if head is not None else load_head_model(config.head)
            if head.n_verts != self.n_verts:
                raise L2TError(
                    f"head model {head.name!r} has {head.n_verts} vertices but the data has {self.n_verts}: "
                    "rig output needs meshes of the head's topology"
                )
            self.n_expr = config.rig_expr or head.n_expr
            if self.n_expr > head.n_expr:
                raise L2TError(f"rig_expr = {self.n_expr} but head model {head.name!r} has {head.n_expr} expressions")
            self.rig = FlameRig(head.to(dtype=torch.float32))
            self.rig_decode = ExprJawRig(self.rig, self.n_expr)
            out_dim = self.n_expr + 3
        else:
            self.n_expr = 0
            out_dim = self.n_verts * 3
        self.decoder = MotionDecoder(config, self.encoder.out_dim, out_dim, len(self.subjects))
        # the context contact head's own encoder: same architecture, weights from the checkpoint (or copied
        # from the shared encoder when a head is added, see training.contact_head.with_context_head)
        self.contact_encoder = copy.deepcopy(self.encoder) if config.contact_encoder else None
        self.contact_context = (
            ContactContext(
                self.encoder.out_dim,
                config.contact_context,
                config.contact_hidden,
                config.contact_dropout,
                config.contact_members,
            )
            if config.contact_context
            else None
        )

    # ------------------------------------------------------------------ pieces
    @property
    def head(self) -> Any:
        """The rig's :class:`~l2t_gs.rig.HeadModel` (``None`` for vertex output)."""
        return self.rig.head if self.rig is not None else None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @staticmethod
    def n_frames(n_samples: int, fps: float) -> int:
        """Motion frames for ``n_samples`` of 16 kHz audio: ``round(duration * fps)``, at least 1."""
        return max(1, int(math.floor(n_samples * fps / SAMPLE_RATE + 0.5)))

    def style_index(self, style: int | str | None) -> int:
        """Index of a speaker style: an int index, a subject name, or ``None`` (-1: mean style)."""
        if style is None:
            return -1
        if isinstance(style, str):
            if style not in self.subjects:
                raise L2TError(f"unknown style {style!r}; the model knows: {', '.join(self.subjects)}")
            return self.subjects.index(style)
        if isinstance(style, int | np.integer) and -1 <= int(style) < len(self.subjects):
            return int(style)
        raise L2TError(f"style must be a subject name or an index in 0..{len(self.subjects) - 1}, got {style!r}")

    def encode(self, audio: Tensor, n_frames: int, shift_s: float = 0.0, contacts: bool = False) -> Tensor:
        """``audio [B, n] -> aligned features [B, n_frames, feats_per_frame, C]`` (frame 0 at ``shift_s``);
        ``contacts``: by the context contact head's own encoder (``contact_encoder``)."""
        enc = self.contact_encoder if contacts else self.encoder
        if enc is None:
            raise ValueError("the model has no contact encoder")
        return align_features(
            enc(audio), enc.frame_rate, enc.offset_s, n_frames, self.fps, self.config.feats_per_frame, shift_s
        )

    def raw_to_offsets(self, raw: Tensor) -> Tensor:
        """Decoder output ``[B, T, D] -> vertex offsets [B, T, V, 3]`` (through the rig for rig output)."""
        b, t, _ = raw.shape
        if self.rig is None:
            return raw.view(b, t, self.n_verts, 3) * (self.config.offset_scale or 1.0)
        return self.rig_decode(raw.reshape(b * t, -1)).view(b, t, self.n_verts, 3)

    def vertices_from_raw(self, raw: Tensor, template: Tensor) -> Tensor:
        """``raw [T, D]`` decoder output + ``template [V, 3]`` -> vertices ``[T, V, 3]``."""
        if self.rig is None:  # one fused pass over the (large) output
            return torch.add(template, raw.view(-1, self.n_verts, 3), alpha=self.config.offset_scale or 1.0)
        out = raw.new_empty(raw.shape[0], self.n_verts, 3)
        for i in range(0, raw.shape[0], _RIG_BLOCK):  # cache blocking: ~4x faster than one big batch on CPU
            torch.add(template, self.rig_decode(raw[i : i + _RIG_BLOCK]), out=out[i : i + _RIG_BLOCK])
        return out

    def forward(
        self,
        audio: Tensor,
        n_frames: int,
        style: Tensor,
        template: Tensor,
        target: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Training/evaluation pass over whole (padded) clips.

        Args: ``audio [B, n]``, ``n_frames`` (T), ``style [B]`` long (-1: mean style), ``template [B, V, 3]``,
        ``target [B, T, V, 3]`` ground-truth meshes (AR decoder only: teacher forcing).
        Returns ``{"vertices": [B, T, V, 3], "raw": [B, T, D]}`` and, with a contact head,
        ``"contact_logits": [B, T, 2]`` (bilabial, labiodental).
        """
        self._check_template(template, batched=True)
        feats = self.encode(audio, n_frames)
        prev = None
        if self.decoder.ar:
            if target is None:
                raise ValueError("the autoregressive decoder is trained with teacher forcing: pass target")
            offs = (target - template[:, None]).flatten(2) / (self.config.offset_scale or 1.0)  # [B, T, V*3]
            prev = F.pad(offs[:, :-1], (0, 0, 1, 0))
        raw = self.decoder(feats, self.decoder.style_vector(style), 0, prev)
        if self.decoder.contact_out is None:
            return {"vertices": template[:, None] + self.raw_to_offsets(raw), "raw": raw}
        raw, logits = raw[..., : self.decoder.out_dim], raw[..., self.decoder.out_dim :]
        if self.contact_context is not None:
            cfeats = feats if self.contact_encoder is None else self.encode(audio, n_frames, contacts=True)
            logits = logits + self.contact_context(cfeats)
        return {"vertices": template[:, None] + self.raw_to_offsets(raw), "raw": raw, "contact_logits": logits}

    def _check_template(self, template: Tensor, batched: bool = False) -> None:
        shape = tuple(template.shape[1:] if batched else template.shape)
        if shape != (self.n_verts, 3):
            raise L2TError(
                f"template has shape {list(shape)}; this model predicts {self.n_verts} vertices "
                f"(wrong topology for the model?)"
            )

    # ------------------------------------------------------------------ inference
    def _grid(self) -> int:
        """Frames between chunk starts at which audio samples and encoder frames align exactly."""
        ratio = Fraction(SAMPLE_RATE) / Fraction(self.fps).limit_denominator(1001) / self.encoder.stride_samples
        return ratio.denominator if ratio.denominator <= 60 else 1

    def _prep_audio(self, audio: Any) -> Tensor:
        a = torch.as_tensor(np.asarray(audio) if not isinstance(audio, Tensor) else audio)
        if a.ndim != 1:
            raise L2TError(f"audio must be a mono 1-D array of 16 kHz samples, got shape {list(a.shape)}")
        if a.numel() == 0:
            raise L2TError("audio is empty")
        a = a.to(device=self.device, dtype=torch.float32)
        if not bool(torch.isfinite(a).all()):
            raise L2TError("audio contains NaN or infinite samples")
        return a

    def _raw_stream(
        self,
        audio: Tensor,
        style: int,
        chunk_seconds: float,
        context_seconds: float | None,
        crossfade_seconds: float,
    ) -> Iterator[Tensor]:
        """Raw decoder output ``[t, D]`` chunk by chunk, at the model's fps (no grad, eval mode)."""
        n, fps = audio.shape[0], self.fps
        total = self.n_frames(n, fps)
        spf = SAMPLE_RATE / fps
        g = self._grid()
        chunk = max(g, math.ceil(chunk_seconds * fps / g) * g)
        ctx_s = self.encoder.context_s if context_seconds is None else context_seconds
        if context_seconds is None and self.contact_context is not None:  # its window reads beyond the chunk
            ctx_s += (self.contact_context.radius + 1) / fps
        ctx = math.ceil(max(ctx_s, 0.0) * fps / g) * g
        xfade = min(round(max(crossfade_seconds, 0.0) * fps), chunk)
        style_vec = self.decoder.style_vector(torch.tensor([style], device=self.device))
        state: dict[str, Any] = {}
        pending: Tensor | None = None
        for s in range(0, total, chunk):
            e = min(s + chunk, total)
            a, b = max(0, s - ctx), min(total, e + ctx + xfade)
            a0 = min(round(a * spf), max(0, n - self.encoder.stride_samples))
            b0 = max(a0 + 1, min(n, round(b * spf)))
            feats = self.encode(audio[None, a0:b0], b - a, shift_s=a / fps - a0 / SAMPLE_RATE)  # [1, b-a, k, C]
            cur = feats[:, s - a : e - a]
            if pending is not None:
                m = min(pending.shape[1], cur.shape[1])
                w = (torch.arange(1, m + 1, device=cur.device, dtype=cur.dtype) / (m + 1))[None, :, None, None]
                cur = torch.cat([pending[:, :m] * (1 - w) + cur[:, :m] * w, cur[:, m:]], dim=1)
            pending = feats[:, e - a : e - a + xfade] if e < total and xfade else None
            out = self.decoder.decode_incremental(cur, style_vec, s, state)[0]
            if self.contact_context is not None:  # its window: +-radius frames, cut where the clip ends
                r = self.contact_context.radius
                lo, hi = max(a, s - r), min(b, e + r)
                cfeats = feats
                if self.contact_encoder is not None:
                    cfeats = self.encode(audio[None, a0:b0], b - a, a / fps - a0 / SAMPLE_RATE, contacts=True)
                ctx_logits = self.contact_context(cfeats[:, lo - a : hi - a])[0, s - lo : e - lo]
                out = torch.cat([out[:, : self.decoder.out_dim], out[:, self.decoder.out_dim :] + ctx_logits], 1)
            yield out

    def _resampled(self, raw_chunks: Iterator[Tensor], n_samples: int, fps: float) -> Iterator[Tensor]:
        """Linear-in-time resampling of a chunked ``[t, D]`` stream from the model's fps to ``fps``."""
        if abs(fps - self.fps) < 1e-9:
            yield from raw_chunks
            return
        total_in, total_out = self.n_frames(n_samples, self.fps), self.n_frames(n_samples, fps)
        done, base, carry = 0, 0, None  # output frames emitted; model index of carry / next chunk
        for chunk in raw_chunks:
            buf = chunk if carry is None else torch.cat([carry, chunk])
            start = base - (0 if carry is None else 1)
            last = start + buf.shape[0] - 1  # model index of buf[-1]
            final = last >= total_in - 1
            m = torch.arange(done, total_out, device=buf.device, dtype=torch.float64)
            pos = (m * self.fps / fps).clamp(max=total_in - 1)
            ready = pos <= last if final else pos.floor() + 1 <= last
            pos = pos[ready]
            if pos.numel():
                lo = (pos.floor().long() - start).clamp(0, buf.shape[0] - 1)
                hi = (lo + 1).clamp(max=buf.shape[0] - 1)
                w = (pos - pos.floor()).to(buf.dtype)[:, None]
                yield buf[lo] * (1 - w) + buf[hi] * w
                done += pos.numel()
            base, carry = base + chunk.shape[0], buf[-1:]

    def _check_fps(self, fps: float | None) -> float:
        fps = self.fps if fps is None else float(fps)
        if not 1 <= fps <= 1000:
            raise L2TError(f"fps must be in 1..1000, got {fps}")
        return fps

    def predict_stream(
        self,
        audio: Any,
        template: Any,
        style: int | str | None = None,
        fps: float | None = None,
        chunk_seconds: float = 10.0,
        context_seconds: float | None = None,
        crossfade_seconds: float = 0.2,
        contacts: bool = True,
        transcript: Any = None,
    ) -> Iterator[Tensor]:
        """Yield vertex frames ``[t, V, 3]`` chunk by chunk (on the model's device, float32).

        ``audio [n]`` float 16 kHz mono; ``template [V, 3]`` the subject's neutral mesh; ``style``: a
        subject name, an index, or ``None`` (mean style); ``fps``: output rate (default: the model's;
        other rates are resampled linearly in time). Working memory is bounded by ``chunk_seconds``
        plus ``context_seconds`` (default: the encoder's receptive field) each side; overlapping
        encoder features are cross-faded over ``crossfade_seconds``. The frames concatenated equal
        :meth:`predict`'s output. With a contact head the lips close where the predicted contact
        probability exceeds ``config.contact_threshold`` (``contacts=False``: raw decoder motion).
        ``transcript``: a :class:`~l2t_gs.motion.transcript.TranscriptTracks` at ``fps`` (rig output only): its visemes
        and contacts are applied with :func:`~l2t_gs.motion.transcript.apply_transcript` (the model's
        own contact probabilities join in unless ``contacts=False``).
        """
        for verts, _ in self._predict_stream(
            audio, template, style, fps, chunk_seconds, context_seconds, crossfade_seconds, contacts, transcript
        ):
            yield verts

    def _predict_stream(
        self,
        audio: Any,
        template: Any,
        style: int | str | None,
        fps: float | None,
        chunk_seconds: float,
        context_seconds: float | None,
        crossfade_seconds: float,
        contacts: bool,
        transcript: Any = None,
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """(vertices ``[t, V, 3]``, contact probabilities ``[t, 2]`` or ``None``) chunk by chunk."""
        fps = self._check_fps(fps)
        if chunk_seconds <= 0:
            raise L2TError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        sidx = self.style_index(style)
        tmpl = torch.as_tensor(np.asarray(template) if not isinstance(template, Tensor) else template)
        self._check_template(tmpl)
        tmpl = tmpl.to(device=self.device, dtype=torch.float32)
        a = self._prep_audio(audio)
        self._check_transcript(transcript, a.shape[0], fps)
        was_training = self.training
        self.eval()
        try:
            stream = self._raw_stream(a, sidx, chunk_seconds, context_seconds, crossfade_seconds)
            motion = self._motion_stream(stream, a.shape[0], fps, contacts, transcript)
            while True:
                # inference mode only while a chunk is computed, never across the yield: a caller that stops
                # early (or handles frames between chunks) must not be left in inference mode
                with torch.inference_mode():
                    item = next(motion, None)
                    if item is None:
                        break
                    verts, probs = self.vertices_from_raw(item[0], tmpl), item[1]
                yield verts, probs
        finally:
            self.train(was_training)

    def predict(
        self,
        audio: Any,
        template: Any,
        style: int | str | None = None,
        fps: float | None = None,
        chunk_seconds: float = 10.0,
        context_seconds: float | None = None,
        crossfade_seconds: float = 0.2,
        contacts: bool = True,
        return_contacts: bool = False,
        transcript: Any = None,
    ) -> Tensor | tuple[Tensor, Tensor | None]:
        """Vertices ``[T, V, 3]`` (CPU float32) for 16 kHz ``audio [n]``; ``T = round(n / 16000 * fps)``.

        Arguments as :meth:`predict_stream`; ``return_contacts``: return ``(vertices, probabilities
        [T, 2] or None)`` (``None`` without a contact head).
        """
        frames, probs = [], []
        for f, p in self._predict_stream(
            audio, template, style, fps, chunk_seconds, context_seconds, crossfade_seconds, contacts, transcript
        ):
            frames.append(f.cpu())
            if p is not None:
                probs.append(p.cpu())
        verts = torch.cat(frames)
        if not return_contacts:
            return verts
        return verts, (torch.cat(probs) if probs else None)

    def predict_params(
        self,
        audio: Any,
        style: int | str | None = None,
        fps: float | None = None,
        chunk_seconds: float = 10.0,
        context_seconds: float | None = None,
        crossfade_seconds: float = 0.2,
        contacts: bool = True,
        transcript: Any = None,
    ) -> dict[str, Tensor]:
        """Rig output only: FLAME parameters ``{"expr": [T, E_head], "jaw_pose": [T, 3]}`` (CPU float32;
        expression components the model does not predict are zero). With a contact head also
        ``"contacts": [T, 2]`` probabilities (bilabial, labiodental), applied to the parameters unless
        ``contacts=False``. ``transcript``: as :meth:`predict_stream` (then ``"contacts"`` holds the
        combined probabilities)."""
        if self.rig is None:
            raise L2TError("predict_params needs a model trained with output = 'rig'")
        fps = self._check_fps(fps)
        sidx = self.style_index(style)
        a = self._prep_audio(audio)
        self._check_transcript(transcript, a.shape[0], fps)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                stream = self._raw_stream(a, sidx, chunk_seconds, context_seconds, crossfade_seconds)
                parts = list(self._motion_stream(stream, a.shape[0], fps, contacts, transcript))
                raw = torch.cat([r.cpu() for r, _ in parts])
                probs = torch.cat([p.cpu() for _, p in parts]) if parts[0][1] is not None else None
        finally:
            self.train(was_training)
        expr = F.pad(raw[:, : self.n_expr], (0, self.rig.n_expr - self.n_expr))
        out = {"expr": expr, "jaw_pose": raw[:, self.n_expr : self.n_expr + 3].contiguous()}
        if probs is not None:
            out["contacts"] = probs
        return out

    def _check_transcript(self, transcript: Any, n_samples: int, fps: float) -> None:
        if transcript is None:
            return
        if self.rig is None:
            raise L2TError("a transcript needs a rig-output model (output = 'rig'); this model predicts vertices")
        n = self.n_frames(n_samples, fps)
        if abs(transcript.fps - fps) > 1e-9 or transcript.n_frames != n:
            raise L2TError(
                f"the transcript's tracks have {transcript.n_frames} frames at {transcript.fps} fps; "
                f"the audio needs {n} at {fps}"
            )

    def _motion_stream(
        self, stream: Iterator[Tensor], n_samples: int, fps: float, contacts: bool, transcript: Any
    ) -> Iterator[tuple[Tensor, Tensor | None]]:
        """Decoder output at ``fps`` chunk by chunk: ``(raw [t, D], None)`` for a model without a contact
        head and no transcript, else ``(motion, probabilities)`` from :meth:`_contact_stream`."""
        resampled = self._resampled(stream, n_samples, fps)
        if self.decoder.contact_out is None and transcript is None:
            return ((raw, None) for raw in resampled)
        return self._contact_stream(resampled, fps, contacts, transcript)

    def _contact_stream(
        self, chunks: Iterator[Tensor], fps: float, apply: bool, transcript: Any = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Decoder output chunks ``[t, D (+ 2)]`` at ``fps`` -> (motion ``[t, D]``, contact probabilities
        ``[t, 2]``), with :func:`~l2t_gs.motion.contacts.apply_contacts` applied when ``apply``, or
        with a ``transcript`` :func:`~l2t_gs.motion.transcript.apply_transcript` (its contacts combined
        with the model's when the model has a contact head and ``apply``).

        The contact ramps reach ``EDGE_S`` seconds, so frames are held back until that much of the
        following motion is known: the result equals applying the contacts to the whole clip.
        """

        d = self.decoder.out_dim
        head = self.decoder.contact_out is not None
        k = math.ceil(EDGE_S * fps) + 1
        buf: Tensor | None = None
        start = 0  # first frame of buf not yet emitted (earlier ones are context)
        base = 0  # clip frame index of buf[0]

        def done(x: Tensor, a: int, b: int) -> tuple[Tensor, Tensor]:
            raw = x[:, :d]
            probs = torch.sigmoid(x[:, d:]) if head else None
            if transcript is not None:
                raw, probs = self._apply_transcript_raw(raw, probs if apply else None, transcript, base)
            elif apply:
                raw = self._apply_contacts_raw(raw, probs, fps)
            return raw[a:b], probs[a:b]

        for chunk in chunks:
            buf = chunk if buf is None else torch.cat([buf, chunk])
            end = buf.shape[0] - k
            if end > start:
                yield done(buf, start, end)
                cut = max(0, end - k)
                buf, start, base = buf[cut:], end - cut, base + cut
        if buf is not None and start < buf.shape[0]:
            yield done(buf, start, buf.shape[0])

    def _apply_transcript_raw(
        self, raw: Tensor, probs: Tensor | None, transcript: Any, start: int
    ) -> tuple[Tensor, Tensor]:
        """A transcript's visemes and contacts applied to rig decoder output ``raw [t, n_expr + 3]``
        of clip frames ``start .. start + t``; returns (motion, combined contact probabilities)."""

        e = self.n_expr
        out = apply_transcript(
            {"expr": raw[:, :e], "jaw_pose": raw[:, e : e + 3]},
            transcript,
            probs,
            self.head,
            start=start,
            threshold=self.config.contact_threshold,
        )
        probs_out = torch.as_tensor(out["contacts"], dtype=raw.dtype, device=raw.device)
        return torch.cat([out["expr"], out["jaw_pose"]], dim=1), probs_out

    def _apply_contacts_raw(self, raw: Tensor, probs: Tensor, fps: float) -> Tensor:
        """Contacts applied to rig decoder output ``raw [t, n_expr + 3]``."""

        e = self.n_expr
        out = apply_contacts(
            {"expr": raw[:, :e], "jaw_pose": raw[:, e : e + 3]},
            probs,
            self.head,
            self.config.contact_threshold,
            fps=fps,
            gate_mm=self.config.contact_gate_mm,
            hold_s=self.config.contact_hold_s,
            peak_s=self.config.contact_peak_s,
        )
        return torch.cat([out["expr"], out["jaw_pose"]], dim=1)
