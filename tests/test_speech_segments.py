"""Phone segments: JSON round trip, validation, canonicalisation of engine phones, per-frame lookup."""

from __future__ import annotations

import json

import numpy as np
import pytest

from l2t_gs.errors import L2TError
from l2t_gs.speech.phones import PHONE_TO_ID, map_espeak, map_festival
from l2t_gs.speech.segments import (
    PhoneSegment,
    boundary_errors,
    canonicalize,
    fill_gaps,
    format_table,
    merge_segments,
    phone_ids_at_fps,
    read_segments,
    segments_at_fps,
    segments_from_json,
    synthesize,
    validate_segments,
    write_segments,
)

SEGS = [PhoneSegment("sil", 0.0, 0.1), PhoneSegment("hh", 0.1, 0.15), PhoneSegment("ay", 0.15, 0.4)]


def test_json_roundtrip(tmp_path):
    path = tmp_path / "s.json"
    write_segments(path, SEGS)
    data = json.loads(path.read_text())
    assert data[1] == {"phone": "hh", "start": 0.1, "end": 0.15}
    assert read_segments(path) == SEGS
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ('{"phone": "aa"}', "JSON list"),
        ('[{"phone": "aa", "start": 0}]', "'phone', 'start' and 'end'"),
        ('[{"phone": "AA1", "start": 0, "end": 1}]', "unknown phone"),
        ('[{"phone": "aa", "start": "0", "end": 1}]', "numbers"),
        ('[{"phone": "aa", "start": -0.5, "end": 1}]', "negative"),
        ('[{"phone": "aa", "start": 0.5, "end": 0.2}]', "ends before"),
        ('[{"phone": "aa", "start": 0, "end": 1}, {"phone": "b", "start": 0.5, "end": 2}]', "overlaps"),
        ('[{"phone": "aa", "start": 1, "end": 2}, {"phone": "b", "start": 0, "end": 0.5}]', "out of order"),
    ],
)
def test_invalid_json(text, message):
    with pytest.raises(L2TError, match=message):
        segments_from_json(text)


def test_validation_duration_and_missing_file(tmp_path):
    validate_segments(SEGS, duration=0.4)
    with pytest.raises(L2TError, match="after the audio"):
        validate_segments(SEGS, duration=0.3)
    with pytest.raises(L2TError, match="not found"):
        read_segments(tmp_path / "nope.json")
    with pytest.raises(L2TError, match="unknown phone"):
        write_segments(tmp_path / "bad.json", [PhoneSegment("xx", 0, 1)])
    assert not (tmp_path / "bad.json").exists()


def test_merge_and_fill():
    segs = [PhoneSegment("sil", 0, 0.1), PhoneSegment("sil", 0.1, 0.2), PhoneSegment("m", 0.3, 0.4)]
    assert merge_segments(segs)[0] == PhoneSegment("sil", 0, 0.2)
    filled = fill_gaps(segs, duration=0.5)
    assert [s.phone for s in filled] == ["sil", "m", "sil"]
    assert filled[0].end == 0.3 and filled[-1] == PhoneSegment("sil", 0.4, 0.5)


def test_canonicalize_splits_drops_and_clips():
    raw = [("_", 0.0, 0.1), ("A@", 0.1, 0.3), ("i:", 0.3, 0.4), (";", 0.4, 0.45), ("t", 0.45, 0.6), ("_:", 0.6, 0.9)]
    segs = canonicalize(raw, map_espeak, duration=0.8)
    assert [s.phone for s in segs] == ["sil", "aa", "r", "iy", "t", "sil"]
    assert segs[1].end == pytest.approx(0.2)  # A@ -> aa r, time shared equally
    assert segs[3].end == pytest.approx(0.45)  # ';' lengthens the phone before it
    assert segs[-1].end == 0.8  # clipped to the audio
    validate_segments(segs, duration=0.8)
    # gaps and a late start become sil; overlapping input is cut
    segs = canonicalize([("m", 0.2, 0.3), ("aa", 0.25, 0.5)], map_festival, duration=0.6)
    assert [(s.phone, s.start, s.end) for s in segs] == [
        ("sil", 0.0, 0.2),
        ("m", 0.2, 0.3),
        ("aa", 0.3, 0.5),
        ("sil", 0.5, 0.6),
    ]
    assert canonicalize([], map_festival, 1.0) == [PhoneSegment("sil", 0.0, 1.0)]


def test_segments_at_fps():
    # frame centres at 20 fps: 0.025, 0.075, 0.125, 0.175, ..., 0.375, 0.425
    expected = ["sil", "sil", "hh"] + ["ay"] * 5
    assert segments_at_fps(SEGS, 20, 9) == expected + ["sil"]
    assert segments_at_fps(SEGS, 20) == expected
    assert segments_at_fps(SEGS, 10, 2) == ["sil", "ay"]  # 0.15 is on the hh/ay boundary: segments are [start, end)
    ids = phone_ids_at_fps(SEGS, 20)
    assert ids.dtype == np.int64 and ids.tolist() == [PHONE_TO_ID[p] for p in expected]
    assert segments_at_fps([], 25, 3) == ["sil"] * 3
    gap = [PhoneSegment("m", 0.0, 0.1), PhoneSegment("b", 0.2, 0.3)]
    assert segments_at_fps(gap, 10, 3) == ["m", "sil", "b"]
    with pytest.raises(ValueError):
        segments_at_fps(SEGS, 0)


def test_segments_at_fps_long_is_vectorised():
    segs = [PhoneSegment("aa" if i % 2 else "m", i * 0.1, (i + 1) * 0.1) for i in range(20000)]
    frames = segments_at_fps(segs, 30)
    assert len(frames) == 60000 and frames[0] == "m" and frames[4] == "aa"


def test_table_and_boundary_errors():
    table = format_table(SEGS)
    assert table.splitlines()[0].split() == ["phone", "start", "end"] and "hh" in table
    hyp = [PhoneSegment("sil", 0, 0.12), PhoneSegment("hh", 0.12, 0.15), PhoneSegment("ay", 0.15, 0.41)]
    err = boundary_errors(SEGS, hyp)
    assert err.tolist() == pytest.approx([0.02, 0.0, 0.0, 0.01])


def test_synthesize_rejects_unknown_engine():
    with pytest.raises(L2TError, match="unknown TTS engine"):
        synthesize("hello", engine="sam")
