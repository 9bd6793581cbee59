"""List the clips of a human corpus whose aligned phones cover too little of the loud audio.

``python -m l2t_gs.training.qc_human CORPUS [MIN_COVERAGE] > exclude.txt`` applies the check that
``l2t-gs data human`` makes while building (:func:`~l2t_gs.training.data.human.transcript_coverage`,
default minimum 0.7) to a corpus built before it;
the listing is the ``--exclude`` file of ``l2t-gs data merge``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from l2t_gs.audio.io import read_audio, to_mono
from l2t_gs.errors import L2TError
from l2t_gs.speech.segments import read_segments
from l2t_gs.training.data.human import HumanCorpusConfig, transcript_coverage


def poorly_covered(root: Path, min_coverage: float) -> list[tuple[str, float]]:
    """(clip name, coverage) of every clip of ``root`` with phones covering less than ``min_coverage``."""
    out = []
    for f in sorted((root / "phones").glob("*.json")):
        audio, sr = read_audio(root / "wav" / f"{f.stem}.wav")  # the project's reader: one-line errors
        cov = transcript_coverage(to_mono(audio), read_segments(f), sr)
        if cov < min_coverage:
            out.append((f.stem, cov))
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m l2t_gs.training.qc_human CORPUS [MIN_COVERAGE]  (a corpus with phones/)"
    if not args or len(args) > 2 or not (Path(args[0]) / "phones").is_dir():
        print(usage, file=sys.stderr)
        return 1
    try:
        limit = float(args[1]) if len(args) > 1 else HumanCorpusConfig().min_speech_coverage
    except ValueError:
        print(usage, file=sys.stderr)
        return 1
    try:
        bad = poorly_covered(Path(args[0]), limit)
    except L2TError as exc:
        print(f"qc_human: error: {exc}", file=sys.stderr)
        return 1
    print(f"# {len(bad)} clips of {args[0]} whose phones cover less than {limit} of the loud audio")
    for name, cov in bad:
        print(f"{name}  # coverage {cov:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
