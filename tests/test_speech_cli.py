"""``l2t-gs data``: align, tts, voices; user errors are one stderr line and exit code 1."""

from __future__ import annotations

import argparse
import json

import pytest

from l2t_gs.audio.io import audio_duration, load_audio
from l2t_gs.cli import main as cli_main
from l2t_gs.speech import espeak, flite
from l2t_gs.speech.segments import read_segments

needs_flite = pytest.mark.skipif(not flite.available(), reason="flite not installed")
TEXT = "Glue the sheet to the dark blue background."


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``l2t-gs ARGS``: (exit code, stdout, stderr); registers ``data`` if main does not yet."""
    original = cli_main.build_parser

    def build() -> argparse.ArgumentParser:
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "data" not in sub.choices:
            from l2t_gs.cli import data

            data.register(sub)
        return parser

    monkeypatch.setattr(cli_main, "build_parser", build)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli_main.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def clip(tmp_path, cli):
    path = tmp_path / "clip.wav"
    code, _, err = cli("data", "tts", TEXT, "--engine", "flite", "--voice", "kal16", "-o", path)
    assert code == 0, err
    return path


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("l2t-gs: error: "), err
    return lines[0]


@needs_flite
def test_align_writes_json(cli, clip, tmp_path):
    out = tmp_path / "segs.json"
    code, stdout, err = cli("data", "align", clip, TEXT, "-o", out, "--words")
    assert code == 0, err
    assert "wrote" in err and "background" in err
    segs = read_segments(out)
    assert segs[-1].end == pytest.approx(audio_duration(clip), abs=1e-3)
    assert [s.phone for s in segs if s.phone != "sil"][:4] == ["g", "l", "uw", "dh"]
    assert isinstance(json.loads(out.read_text()), list)


@needs_flite
def test_align_prints_table_and_reads_transcript_file(cli, clip, tmp_path):
    (tmp_path / "t.txt").write_text(TEXT + "\n")
    code, stdout, _ = cli("data", "align", clip, f"@{tmp_path / 't.txt'}")
    assert code == 0
    rows = stdout.strip().splitlines()
    assert rows[0].split() == ["phone", "start", "end"] and rows[1].split()[0] == "sil"
    assert len(rows) > 25


@needs_flite
@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_audio", "not found"),
        ("not_audio", "cannot decode audio"),
        ("empty_transcript", "transcript is empty"),
        ("no_words", "no words"),
        ("bad_out", "must end in .json"),
        ("mismatch", "could not align"),
        ("unknown_word_no_lts", "'zibber'"),
        ("bad_pron", "--pron"),
        ("missing_transcript_file", "transcript file not found"),
    ],
)
def test_align_rejects_bad_input(cli, clip, tmp_path, case, message):
    (tmp_path / "notes.wav").write_text("not audio at all\n" * 10)
    args = {
        "missing_audio": [tmp_path / "nope.wav", TEXT],
        "not_audio": [tmp_path / "notes.wav", TEXT],
        "empty_transcript": [clip, "   "],
        "no_words": [clip, "?!"],
        "bad_out": [clip, TEXT, "-o", tmp_path / "x.txt"],
        "mismatch": [clip, " ".join(["seventeen"] * 25)],
        "unknown_word_no_lts": [clip, "glue the zibber", "--no-lts"],
        "bad_pron": [clip, TEXT, "--pron", "glue"],
        "missing_transcript_file": [clip, f"@{tmp_path / 'none.txt'}"],
    }[case]
    code, stdout, err = cli("data", "align", *args)
    assert code == 1
    assert message in _one_error_line(err)
    assert not (tmp_path / "x.txt").exists()


@needs_flite
def test_tts_writes_wav_and_segments(cli, tmp_path):
    wav, js = tmp_path / "a.wav", tmp_path / "a.json"
    code, _, err = cli("data", "tts", "Hello world.", "--engine", "flite", "--rate", "1.2", "-o", wav, "--segments", js)
    assert code == 0, err
    audio = load_audio(wav, 16000)
    segs = read_segments(js)
    assert segs[-1].end == pytest.approx(audio.size / 16000, abs=1e-3)
    code, _, err = cli("data", "tts", "Hello", "--engine", "flite", "-o", tmp_path / "a.mp3")
    assert code == 1 and ".wav" in _one_error_line(err)
    code, _, err = cli("data", "tts", "Hello", "--engine", "flite", "--voice", "nope", "-o", wav)
    assert code == 1 and "unknown flite voice" in _one_error_line(err)


@pytest.mark.skipif(not espeak.available(), reason="espeak-ng library not installed")
def test_tts_espeak_variant_and_voices(cli, tmp_path):
    code, _, err = cli("data", "tts", "Hi there", "--voice", "en-us+f3", "--pitch", "60", "-o", tmp_path / "e.wav")
    assert code == 0, err
    code, stdout, _ = cli("data", "voices", "--engine", "espeak")
    assert code == 0 and "en-us" in stdout and "f3" in stdout
