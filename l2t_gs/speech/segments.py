"""Phone segments: timed canonical phones, their JSON files, validation and per-frame lookup; and the
timing-source dispatcher (:func:`synthesize`: text -> audio + segments with espeak-ng, flite or festival).

A segment list is sorted, non-overlapping and non-negative; the pipelines here also make it gap-free
(gaps become ``sil``) so that it covers the audio from 0 to its duration. JSON form: a list of
``{"phone": "ah", "start": 0.12, "end": 0.18}`` with times in seconds.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import write_text_atomic
from l2t_gs.speech.phones import PHONE_TO_ID, SIL

__all__ = [
    "PhoneSegment",
    "EngineOutput",
    "validate_segments",
    "read_segments",
    "write_segments",
    "segments_to_json",
    "segments_from_json",
    "merge_segments",
    "fill_gaps",
    "canonicalize",
    "segments_at_times",
    "segments_at_fps",
    "phone_ids_at_fps",
    "format_table",
    "boundary_errors",
    "ENGINES",
    "engine_module",
    "synthesize",
]

TOL = 1e-6  # seconds; JSON keeps 6 decimals


@dataclass(frozen=True)
class PhoneSegment:
    """One canonical phone from ``start`` to ``end`` (seconds)."""

    phone: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict:
        return {"phone": self.phone, "start": round(float(self.start), 6), "end": round(float(self.end), 6)}


@dataclass
class EngineOutput:
    """Raw output of a TTS engine: audio at the engine's rate and its own phone names with times."""

    audio: np.ndarray  # float32 [n]
    sr: int
    phones: list[tuple[str, float, float]] = field(default_factory=list)  # (engine phone, start s, end s)
    engine: str = ""

    @property
    def duration(self) -> float:
        return self.audio.shape[0] / self.sr


def validate_segments(
    segments: Sequence[PhoneSegment],
    *,
    duration: float | None = None,
    canonical: bool = True,
    tol: float = TOL,
    source: str = "segments",
) -> None:
    """Raise L2TError unless the segments are finite, non-negative, non-empty in time, sorted, non-overlapping,
    use canonical phones (when ``canonical``) and end by ``duration`` (when given)."""
    prev_end = 0.0
    for i, s in enumerate(segments):
        where = f"{source}: segment {i} ({s.phone!r} {s.start}-{s.end})"
        if not isinstance(s.phone, str) or (canonical and s.phone not in PHONE_TO_ID):
            raise L2TError(f"{where}: unknown phone {s.phone!r} (expected CMU ARPAbet without stress, or 'sil')")
        if not (math.isfinite(s.start) and math.isfinite(s.end)):
            raise L2TError(f"{where}: times must be finite")
        if s.start < -tol:
            raise L2TError(f"{where}: negative start time")
        if s.end < s.start - tol:
            raise L2TError(f"{where}: ends before it starts")
        if s.start < prev_end - tol:
            raise L2TError(f"{where}: overlaps the previous segment or is out of order (previous ends {prev_end})")
        prev_end = max(prev_end, s.end)
    if duration is not None and prev_end > duration + max(tol, 1e-3):
        raise L2TError(f"{source}: segments end at {prev_end:.3f} s, after the audio ({duration:.3f} s)")


def segments_to_json(segments: Sequence[PhoneSegment]) -> str:
    """JSON text of a segment list (one segment per line)."""
    rows = [json.dumps(s.to_dict()) for s in segments]
    return "[\n" + ",\n".join("  " + r for r in rows) + "\n]\n" if rows else "[]\n"


def segments_from_json(text: str, *, source: str = "segments") -> list[PhoneSegment]:
    """Parse and validate JSON text produced by :func:`segments_to_json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise L2TError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list):
        raise L2TError(f"{source}: expected a JSON list of {{phone, start, end}} objects")
    segs = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not {"phone", "start", "end"} <= item.keys():
            raise L2TError(f"{source}: item {i} must be an object with 'phone', 'start' and 'end'")
        phone, start, end = item["phone"], item["start"], item["end"]
        if not isinstance(phone, str):
            raise L2TError(f"{source}: item {i}: 'phone' must be a string")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (start, end)):
            raise L2TError(f"{source}: item {i}: 'start' and 'end' must be numbers (seconds)")
        segs.append(PhoneSegment(phone, float(start), float(end)))
    validate_segments(segs, source=source)
    return segs


def read_segments(path: str | os.PathLike) -> list[PhoneSegment]:
    """Read and validate a segments JSON file."""
    p = Path(path)
    if not p.is_file():
        raise L2TError(f"segments file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise L2TError(f"cannot read segments file {p}: {exc}") from None
    return segments_from_json(text, source=str(p))


def write_segments(path: str | os.PathLike, segments: Sequence[PhoneSegment]) -> None:
    """Validate and write segments as JSON, atomically."""
    validate_segments(segments, source=str(path))
    write_text_atomic(path, segments_to_json(segments))


def merge_segments(segments: Iterable[PhoneSegment], tol: float = TOL) -> list[PhoneSegment]:
    """Join touching segments of the same phone (e.g. runs of ``sil``)."""
    out: list[PhoneSegment] = []
    for s in segments:
        if out and out[-1].phone == s.phone and s.start <= out[-1].end + tol:
            out[-1] = PhoneSegment(s.phone, out[-1].start, max(out[-1].end, s.end))
        else:
            out.append(s)
    return out


def fill_gaps(
    segments: Iterable[PhoneSegment], duration: float | None = None, phone: str = SIL, tol: float = TOL
) -> list[PhoneSegment]:
    """Insert ``phone`` (sil) into the gaps, including before the first segment and up to ``duration``."""
    out: list[PhoneSegment] = []
    t = 0.0
    for s in segments:
        if s.start > t + tol:
            out.append(PhoneSegment(phone, t, s.start))
        out.append(s)
        t = max(t, s.end)
    if duration is not None and duration > t + tol:
        out.append(PhoneSegment(phone, t, duration))
    return merge_segments(out, tol)


def canonicalize(
    raw: Iterable[tuple[str, float, float]],
    mapper: Callable[[str], tuple[str, ...]],
    duration: float,
) -> list[PhoneSegment]:
    """Turn engine phones (name, start, end) into gap-free canonical segments covering [0, duration].

    A name that maps to several phones shares its time equally among them; one that maps to none (a
    modifier such as espeak's ``;``) lengthens the phone before it. Times are clipped to [0, duration];
    overlaps are cut.
    """
    out: list[PhoneSegment] = []
    t = 0.0
    for name, start, end in raw:
        phones = mapper(name)
        start, end = max(float(start), t, 0.0), min(float(end), duration)
        if end <= start + TOL:
            continue
        if not phones:
            if out and start <= out[-1].end + TOL:
                out[-1] = PhoneSegment(out[-1].phone, out[-1].start, end)
                t = end
            continue
        edges = np.linspace(start, end, len(phones) + 1)
        out.extend(PhoneSegment(p, float(a), float(b)) for p, a, b in zip(phones, edges[:-1], edges[1:], strict=True))
        t = end
    segs = fill_gaps(merge_segments(out), duration)
    return segs if segs else [PhoneSegment(SIL, 0.0, duration)]


def segments_at_times(segments: Sequence[PhoneSegment], times: np.ndarray) -> list[str]:
    """Phone at each time (seconds); ``sil`` where no segment covers it. Segments must be sorted."""
    times = np.asarray(times, dtype=np.float64)
    if not segments:
        return [SIL] * times.size
    starts = np.array([s.start for s in segments])
    ends = np.array([s.end for s in segments])
    labels = np.array([s.phone for s in segments] + [SIL], dtype=object)
    idx = np.searchsorted(starts, times, side="right") - 1  # last segment starting at or before t
    inside = (idx >= 0) & (times < ends[np.clip(idx, 0, None)])
    return labels[np.where(inside, idx, len(segments))].tolist()


def segments_at_fps(segments: Sequence[PhoneSegment], fps: float, n_frames: int | None = None) -> list[str]:
    """Phone at the centre of each video frame, (i + 0.5) / fps; ``n_frames`` defaults to the segments' span."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if n_frames is None:
        n_frames = int(math.ceil(segments[-1].end * fps - 1e-9)) if segments else 0
    return segments_at_times(segments, (np.arange(n_frames) + 0.5) / fps)


def phone_ids_at_fps(segments: Sequence[PhoneSegment], fps: float, n_frames: int | None = None) -> np.ndarray:
    """Like :func:`segments_at_fps` but as int64 ids into ``phones.PHONES``."""
    return np.array([PHONE_TO_ID[p] for p in segments_at_fps(segments, fps, n_frames)], dtype=np.int64)


def format_table(segments: Sequence[PhoneSegment]) -> str:
    """A plain-text table: phone, start, end (seconds)."""
    lines = [f"{'phone':<6} {'start':>8} {'end':>8}"]
    lines += [f"{s.phone:<6} {s.start:8.3f} {s.end:8.3f}" for s in segments]
    return "\n".join(lines)


def boundary_errors(reference: Sequence[PhoneSegment], hypothesis: Sequence[PhoneSegment]) -> np.ndarray:
    """Absolute start and end time differences (seconds) of phones matched between two segmentations.

    Silences are ignored; the non-silent phone sequences are matched with difflib, counting equal runs
    and same-length substitutions (e.g. a different pronunciation variant).
    """
    ref = [s for s in reference if s.phone != SIL]
    hyp = [s for s in hypothesis if s.phone != SIL]
    matcher = difflib.SequenceMatcher(a=[s.phone for s in ref], b=[s.phone for s in hyp], autojunk=False)
    errors: list[float] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            for r, h in zip(ref[i1:i2], hyp[j1:j2], strict=True):
                errors += [abs(r.start - h.start), abs(r.end - h.end)]
    return np.asarray(errors, dtype=np.float64)


#: TTS engines that report phone timings; each is a module ``l2t_gs.speech.<name>`` with
#: ``available``, ``list_voices``, ``DEFAULT_VOICE``, ``synthesize_raw`` and ``synthesize``.
ENGINES: tuple[str, ...] = ("espeak", "flite", "festival")


def engine_module(engine: str):
    """The module of a timing source; L2TError for an unknown or uninstalled engine."""
    if engine not in ENGINES:
        raise L2TError(f"unknown TTS engine {engine!r}; choose from {', '.join(ENGINES)}")
    module = importlib.import_module(f"l2t_gs.speech.{engine}")
    if not module.available():
        raise L2TError(f"TTS engine {engine!r} is not installed (see README: Debian packages)")
    return module


def synthesize(
    text: str,
    engine: str = "espeak",
    voice: str | None = None,
    *,
    rate: float = 1.0,
    pitch: float | None = None,
    sr: int = 16000,
) -> tuple[np.ndarray, list[PhoneSegment]]:
    """Speak ``text`` with a timing source: (float32 audio at ``sr``, canonical phone segments covering it).

    ``rate`` scales the speed (1 = normal); ``pitch`` is espeak's 0-100 scale, or a mean F0 in Hz for
    flite and festival; None keeps the voice's own.
    """
    module = engine_module(engine)
    if pitch is not None and engine == "espeak" and math.isfinite(pitch):
        pitch = int(round(pitch))
    return module.synthesize(text, voice or module.DEFAULT_VOICE, rate=rate, pitch=pitch, sr=sr)
