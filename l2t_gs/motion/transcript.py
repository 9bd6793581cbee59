"""A transcript's phone timing combined with a model's rig motion (``l2t-gs render --text``).

The transcript is force-aligned to the audio (:func:`align_transcript`, pocketsphinx via
:mod:`l2t_gs.speech.align`); its phone segments become two small per-frame tracks for the whole
clip (:func:`transcript_tracks`, cheap: ``[T, 2]`` and ``[T, 4]`` float arrays), which are applied
to the model's rig parameters frame range by frame range (:func:`apply_transcript`), so a
streaming caller keeps bounded memory:

1. **Visemes**: the lip-shape parameters :data:`VISEME_PARAMS` (``pucker``, ``spread``,
   ``labiodental``, ``lip_press``) of the articulation module
   (:func:`~l2t_gs.motion.articulation.articulation_curves`, the same curves as
   :func:`~l2t_gs.motion.articulation.articulate`) are blended into the model's expression
   coefficients: ``value = (1 - w) * model + w * transcript`` with ``w = VISEME_WEIGHT`` (0.6).
   The jaw and the opening parameters (``lip_close``, ``upper_lip_raise``, ``lower_lip_drop``) and
   every other expression stay the model's: the audio decides how far the mouth opens, the
   transcript adds the rounding/spreading and the f/v lip shape the phones call for.
2. **Contacts**: the transcript's contact frames (the full-value cores of the contact windows of
   :func:`~l2t_gs.motion.contacts.contact_targets`, bilabial and labiodental: every p/b/m and f/v
   segment widened to 50 ms) are combined with the model's contact probabilities by their maximum
   (the transcript's alone when the model has no contact head) and applied exactly through the rig
   with :func:`~l2t_gs.motion.contacts.apply_contacts` (threshold 0.5; its raised-cosine ramps of
   ``EDGE_S`` do the approach and release), after the blend: every p/b/m of the transcript closes
   the lips (midline gap below 0.5 mm on the skinned head).

Both steps are per frame except the contact ramps, which reach ``EDGE_S`` seconds: applying
:func:`apply_transcript` to a frame range with that much context on each side gives exactly the
whole-clip result (:meth:`l2t_gs.models.audio2mesh.Audio2Mesh.predict_stream` does so).

A transcript that cannot be used raises :class:`~l2t_gs.errors.L2TError` (one line): no words,
no alignment path, or an alignment whose phones cover less than :data:`MIN_COVERAGE` of the audio's
speech (frames within 35 dB of the loud frames), e.g. a transcript of only the first words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from l2t_gs.errors import L2TError
from l2t_gs.motion import articulation as art
from l2t_gs.motion.contacts import apply_contacts, contact_targets
from l2t_gs.motion.visemes import P_INDEX
from l2t_gs.speech.align import align

__all__ = [
    "MIN_COVERAGE",
    "VISEME_PARAMS",
    "VISEME_WEIGHT",
    "TranscriptTracks",
    "align_transcript",
    "apply_transcript",
    "combine_contacts",
    "speech_coverage",
    "transcript_contact_frames",
    "transcript_tracks",
]

#: Lip-shape parameters taken (blended) from the transcript's articulation; the rest stays the model's.
VISEME_PARAMS: tuple[str, ...] = ("pucker", "spread", "labiodental", "lip_press")
#: Weight of the transcript's lip shape in the blend (0: the model's alone, 1: the transcript's alone).
VISEME_WEIGHT = 0.6
#: Least fraction of the speech frames the aligned phones must cover.
MIN_COVERAGE = 0.8
SPEECH_DB = 35.0  # speech frames: within this many dB of the loud frames (99th percentile)
_HOP = 0.01  # seconds per energy frame


@dataclass(frozen=True)
class TranscriptTracks:
    """A transcript's per-frame tracks at ``fps`` for the whole clip.

    ``contacts`` [T, 2] contact targets (bilabial, labiodental) in [0, 1]; ``visemes``
    [T, len(VISEME_PARAMS)] the articulation's lip-shape parameters; ``segments`` the phone
    segments they came from.
    """

    fps: float
    contacts: np.ndarray
    visemes: np.ndarray
    segments: tuple = ()

    @property
    def n_frames(self) -> int:
        return int(self.contacts.shape[0])


def speech_coverage(audio: np.ndarray, segments: Sequence, sr: int = 16000, floor_db: float = SPEECH_DB) -> float:
    """Fraction of the speech frames of ``audio`` (10 ms, energy within ``floor_db`` of the loud
    frames) inside a non-silence phone of ``segments``; 1.0 for audio without speech."""
    a = np.asarray(audio, dtype=np.float64).reshape(-1)
    hop = max(1, int(round(sr * _HOP)))
    n = a.shape[0] // hop
    if n == 0:
        return 1.0
    db = 10.0 * np.log10((a[: n * hop].reshape(n, hop) ** 2).mean(1) + 1e-12)
    speech = db > np.percentile(db, 99) - floor_db
    speech &= db > -70.0  # digital near-silence is never speech
    if not speech.any():
        return 1.0
    covered = np.zeros(n, bool)
    for s in segments:
        phone, start, end = (s.phone, s.start, s.end) if hasattr(s, "phone") else s
        if str(phone).lower() != "sil":
            covered[max(0, int(round(start / _HOP))) : max(0, int(round(end / _HOP)))] = True
    return float((covered & speech).sum() / speech.sum())


def align_transcript(audio: np.ndarray, text: str, sr: int = 16000, *, min_coverage: float = MIN_COVERAGE) -> list:
    """Phone segments of ``text`` force-aligned to ``audio`` ([n] float at ``sr``).

    Raises L2TError (one line) when the transcript has no words, cannot be aligned, or its phones
    cover less than ``min_coverage`` of the speech (a transcript of another or a shorter utterance).
    """

    if not isinstance(text, str) or not text.strip():
        raise L2TError("the transcript is empty")
    text = " ".join(text.split())  # one line in messages, no control characters for the decoder
    segments = align(audio, text, sr=sr)
    cov = speech_coverage(audio, segments, sr)
    if cov < min_coverage:
        raise L2TError(
            f"the transcript covers only {cov:.0%} of the speech after alignment (at least {min_coverage:.0%} "
            "needed): does it match the whole audio?"
        )
    return segments


def transcript_tracks(segments: Sequence, fps: float, n_frames: int, model: Any = None) -> TranscriptTracks:
    """Contact targets and lip-shape curves of phone ``segments`` for ``n_frames`` frames at ``fps``
    (frame i at time ``i / fps``); ``model``: the head model (default: the built-in head)."""
    n = int(n_frames)
    seg = art.prepare_segments(segments, n / fps)
    contacts = contact_targets(seg, fps, n)
    curves = art.articulation_curves(seg, fps, n, model=model)
    visemes = curves[:, [P_INDEX[p] for p in VISEME_PARAMS]].astype(np.float32)
    return TranscriptTracks(float(fps), contacts, visemes, tuple(segments))


def transcript_contact_frames(targets: np.ndarray) -> np.ndarray:
    """The transcript's contact frames [T, 2] bool from its contact targets: the full-value core of
    every contact window, i.e. frames above 0.5 that are not below a neighbour (at low frame rates,
    where a core may fall between frames, its highest frame)."""
    t = np.asarray(targets, dtype=np.float64)
    if t.shape[0] == 0:
        return np.zeros(t.shape, bool)
    pad = np.pad(t, ((1, 1), (0, 0)), mode="constant", constant_values=-1.0)
    return (t > 0.5) & (t >= pad[:-2] - 1e-9) & (t >= pad[2:] - 1e-9)


def combine_contacts(model_probs: Any, targets: np.ndarray) -> np.ndarray:
    """Contact probabilities [T, 2] for :func:`~l2t_gs.motion.contacts.apply_contacts`: the per-frame
    maximum of the model's probabilities and the transcript's contact frames (1 on
    :func:`transcript_contact_frames`, 0 elsewhere; the approach and release ramps then come from
    ``apply_contacts``); the transcript's alone when ``model_probs`` is None."""
    t = transcript_contact_frames(targets).astype(np.float32)
    if model_probs is None:
        return t
    p = model_probs.detach().cpu().numpy() if isinstance(model_probs, torch.Tensor) else np.asarray(model_probs)
    return np.maximum(p.astype(np.float32), t)


def apply_transcript(
    rig_params: dict[str, Any],
    tracks: TranscriptTracks,
    model_probs: Any = None,
    model: Any = None,
    *,
    start: int = 0,
    weight: float = VISEME_WEIGHT,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The transcript's visemes and contacts applied to rig parameters of frames ``start .. start + T``.

    Args:
        rig_params: ``{"expr": [T, E], "jaw_pose": [T, 3]}`` (numpy or torch; ``E`` leading
            expression components of ``model``, at ``tracks.fps``); other keys pass through.
        tracks: from :func:`transcript_tracks`; frames ``start .. start + T`` are used.
        model_probs: the model's contact probabilities [T, 2] or None (no contact head).
        model: the head model (default: the built-in head).
        weight: the transcript's share of the lip-shape parameters (see the module docstring).
    Returns:
        A new dict of the same kind with the blended, contact-closed ``expr`` / ``jaw_pose`` and
        ``"contacts"``: the combined contact probabilities [T, 2] (float32 numpy).
    """
    model = model if model is not None else art._default_model()
    expr_in = rig_params["expr"]
    n, e = expr_in.shape
    if start < 0 or start + n > tracks.n_frames:
        raise ValueError(f"frames {start}..{start + n} are outside the transcript's {tracks.n_frames} frames")
    names = list(model.expr_names)
    missing = [p for p in VISEME_PARAMS if p not in names[:e]]
    if missing:
        raise L2TError(f"the transcript needs the expression components {missing} of the built-in head in the rig")
    cols = [names.index(p) for p in VISEME_PARAMS]
    vis = tracks.visemes[start : start + n]
    if isinstance(expr_in, torch.Tensor):
        expr = expr_in.clone()
        v = torch.as_tensor(vis, dtype=expr.dtype, device=expr.device)
        expr[:, cols] = (1.0 - weight) * expr[:, cols] + weight * v
    else:
        expr = np.array(expr_in, copy=True)
        expr[:, cols] = (1.0 - weight) * expr[:, cols] + weight * vis.astype(expr.dtype)
    probs = combine_contacts(model_probs, tracks.contacts[start : start + n])
    out = apply_contacts({**rig_params, "expr": expr}, probs, model, threshold, fps=tracks.fps)
    out["contacts"] = probs
    return out
