"""``l2t-gs data``: speech data tools: forced alignment, TTS with phone timings, voice listing.

Each sub-command has a ``_register_<name>(subparsers)`` function listed in ``SUBCOMMANDS``; a new one
(e.g. ``synth``) adds its function there. ``add_tts_options`` gives any command the engine/voice options.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from l2t_gs.cli.prog import COMMAND_HELP
from l2t_gs.errors import L2TError


def read_text_arg(value: str, what: str = "transcript") -> str:
    """A text argument, or the contents of a UTF-8 file when written ``@path``."""
    if value.startswith("@") and len(value) > 1:
        path = Path(value[1:])
        if not path.is_file():
            raise L2TError(f"{what} file not found: {path}")
        try:
            value = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise L2TError(f"cannot read {what} file {path}: {exc}") from None
    if not value.strip():
        raise L2TError(f"the {what} is empty")
    return value


def check_suffix(path: str, suffix: str, option: str) -> None:
    if Path(path).suffix.lower() != suffix:
        raise L2TError(f"{option} must end in {suffix}, got {path}")


def parse_pronunciations(items: list[str] | None) -> dict[str, str]:
    """``WORD=PH1 PH2 ...`` options into a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        word, sep, phones = item.partition("=")
        if not sep or not word.strip() or not phones.strip():
            raise L2TError(f"--pron expects WORD='PH1 PH2 ...' (CMU phones), got {item!r}")
        out[word.strip().lower()] = phones.strip()
    return out


def add_vertex_dtype_option(p: argparse.ArgumentParser) -> None:
    """--vertex-dtype for corpus builders."""
    p.add_argument(
        "--vertex-dtype", default="float32", choices=("float32", "float16"),
        help="storage of vertices_npy/ (float16 halves the disk; ~0.05 mm rounding) (default float32)",
    )  # fmt: skip


def add_tts_options(p: argparse.ArgumentParser, default_engine: str = "espeak") -> None:
    """--engine, --voice, --rate, --pitch."""
    from l2t_gs.speech.segments import ENGINES

    p.add_argument("--engine", default=default_engine, choices=ENGINES, help=f"TTS engine (default {default_engine})")
    p.add_argument(
        "--voice",
        help="voice: espeak 'en-us', 'en-us+f3', 'en+m2' ...; flite kal16|kal|awb|rms|slt; festival kal_diphone "
        "(see `l2t-gs data voices`)",
    )
    p.add_argument("--rate", type=float, default=1.0, help="speed factor, 1 = normal (default 1)")
    p.add_argument("--pitch", type=float, help="espeak: 0-100 (50 = the voice's own); flite/festival: mean F0 in Hz")


def run_align(args: argparse.Namespace) -> int:
    from l2t_gs.speech.align import align_file
    from l2t_gs.speech.segments import format_table, write_segments

    transcript = read_text_arg(args.transcript)
    if args.out:
        check_suffix(args.out, ".json", "--out")
    result = align_file(args.audio, transcript, lts=not args.no_lts, pronunciations=parse_pronunciations(args.pron))
    if args.out:
        write_segments(args.out, result.phones)
        print(f"wrote {args.out} ({len(result.phones)} segments, {result.duration:.2f} s)", file=sys.stderr)
    else:
        print(format_table(result.phones))
    if args.words:
        for w in result.words:
            print(f"{w.word:<16} {w.start:8.3f} {w.end:8.3f}  {' '.join(w.phones)}", file=sys.stderr)
    return 0


def run_tts(args: argparse.Namespace) -> int:
    from l2t_gs.audio.io import save_wav
    from l2t_gs.speech.segments import synthesize, write_segments

    text = read_text_arg(args.text, "text")
    check_suffix(args.out, ".wav", "--out")
    if args.segments:
        check_suffix(args.segments, ".json", "--segments")
    if not 8000 <= args.sr <= 192000:
        raise L2TError(f"--sr must be between 8000 and 192000, got {args.sr}")
    audio, segments = synthesize(text, args.engine, args.voice, rate=args.rate, pitch=args.pitch, sr=args.sr)
    save_wav(args.out, audio, args.sr)
    msg = f"wrote {args.out} ({audio.shape[0] / args.sr:.2f} s)"
    if args.segments:
        write_segments(args.segments, segments)
        msg += f" and {args.segments} ({len(segments)} segments)"
    print(msg, file=sys.stderr)
    return 0


def run_voices(args: argparse.Namespace) -> int:
    import importlib

    from l2t_gs.speech.segments import ENGINES

    for name in [args.engine] if args.engine else ENGINES:
        module = importlib.import_module(f"l2t_gs.speech.{name}")
        if not module.available():
            print(f"{name}: not installed")
            continue
        print(f"{name}: {', '.join(module.list_voices())} (default {module.DEFAULT_VOICE})")
        if name == "espeak":
            print(f"espeak variants (VOICE+VARIANT): {', '.join(module.list_variants())}")
    return 0


def _register_align(ds: argparse._SubParsersAction) -> None:
    p = ds.add_parser(
        "align",
        help="force-align speech to its transcript (pocketsphinx): phone segments",
        description="Print a phone table (phone, start, end in seconds) or write it as JSON with -o.",
    )
    p.add_argument("audio", metavar="AUDIO", help="speech file: wav, flac, ogg, mp3, m4a, ... (any rate, mono/stereo)")
    p.add_argument("transcript", metavar="TRANSCRIPT", help="the words spoken, or @FILE to read them from a file")
    p.add_argument("-o", "--out", help="write the phone segments as JSON here instead of printing a table")
    p.add_argument("--words", action="store_true", help="also print word times (to stderr)")
    p.add_argument(
        "--no-lts", action="store_true", help="fail on words missing from the dictionary (no espeak-ng letter-to-sound)"
    )
    p.add_argument(
        "--pron",
        action="append",
        metavar="WORD=PHONES",
        help='pronunciation for a word, in CMU phones, e.g. --pron "gif=JH IH F" (repeatable)',
    )
    p.set_defaults(func=run_align)


def _register_tts(ds: argparse._SubParsersAction) -> None:
    p = ds.add_parser("tts", help="speak text with a TTS engine; write the WAV and its phone segments")
    p.add_argument("text", metavar="TEXT", help="text to speak, or @FILE")
    add_tts_options(p)
    p.add_argument("-o", "--out", required=True, help="output .wav")
    p.add_argument("--segments", help="also write the phone segments as JSON")
    p.add_argument("--sr", type=int, default=16000, help="output sample rate (default 16000)")
    p.set_defaults(func=run_tts)


def _register_voices(ds: argparse._SubParsersAction) -> None:
    from l2t_gs.speech.segments import ENGINES

    p = ds.add_parser("voices", help="list the voices of the installed TTS engines")
    p.add_argument("--engine", choices=ENGINES, help="only this engine")
    p.set_defaults(func=run_voices)


def _run_synth(args: argparse.Namespace) -> int:
    from l2t_gs.training.data.corpus import CorpusConfig, build_corpus, parse_voices

    cfg = CorpusConfig(minutes=args.minutes, seed=args.seed, workers=args.workers, vertex_dtype=args.vertex_dtype)
    if args.voices == ["all"]:
        cfg.voices = "all"
    elif args.voices:
        cfg.voices = parse_voices([v for item in args.voices for v in item.split(",") if v])
    desc = build_corpus(cfg, args.out, progress=not args.quiet)
    print(
        f"wrote {args.out}: {len(desc['clips'])} clips, {desc['seconds'] / 60:.1f} min, "
        f"{len(desc['subjects'])} subjects",
        file=sys.stderr,
    )
    return 0


def _register_synth(ds: argparse._SubParsersAction) -> None:
    p = ds.add_parser(
        "synth",
        help="build the synthetic multi-voice corpus (VOCASET layout) with phone-driven motion",
        description="TTS speech with known phone timing -> articulated motion of the built-in head, "
        "several voices (subjects) with head-shape variations, audio augmentation; split by voice.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="new corpus folder")
    p.add_argument("--minutes", type=float, default=10.0, help="approximate total speech (default 10)")
    p.add_argument(
        "--voices",
        nargs="+",
        metavar="ENGINE:VOICE[:SPLIT]",
        help="voices, e.g. espeak:en-us+f3 flite:slt:test, or 'all': every installed English espeak-ng "
        "voice x variant, flite and festival voice, variants held out for val/test (a seeded subset when "
        "--minutes is too short for two clips a voice) (default: 16 voices over espeak, flite, festival)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    add_vertex_dtype_option(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run_synth)


def _run_human(args: argparse.Namespace) -> int:
    from l2t_gs.training.data.human import HumanCorpusConfig, build_human_corpus

    if not 0.0 <= args.min_coverage < 1.0:
        raise L2TError(f"--min-coverage must be in [0, 1), got {args.min_coverage}")
    cfg = HumanCorpusConfig(
        seed=args.seed,
        workers=args.workers,
        max_prompts=args.max_prompts,
        vertex_dtype=args.vertex_dtype,
        min_speech_coverage=args.min_coverage,
    )
    if args.languages:
        cfg.languages = [x for item in args.languages for x in item.split(",") if x]
    if args.sources:
        cfg.sources = [x for item in args.sources for x in item.split(",") if x]
    if args.val_speakers:
        cfg.val_speakers = [x for item in args.val_speakers for x in item.split(",") if x]
    desc = build_human_corpus(cfg, args.out, progress=not args.quiet)
    print(
        f"wrote {args.out}: {len(desc['clips'])} clips, {desc['seconds'] / 60:.1f} min, "
        f"{len(desc['subjects'])} speakers, {desc.get('alignment_failures', 0)} prompts dropped",
        file=sys.stderr,
    )
    return 0


def _register_human(ds: argparse._SubParsersAction) -> None:
    p = ds.add_parser(
        "human",
        help="build the real-speech corpus from human recordings in Debian packages (forced-aligned)",
        description="Human prompts with transcripts (asterisk-core-sounds-{es,fr,it,ru}-wav, fillets-ng-data-{nl,cs}) "
        "force-aligned with pocketsphinx (espeak-ng phonemes mapped to ARPAbet for other languages) -> "
        "articulated motion of the built-in head; speakers held apart for validation. Never reads the "
        "English Asterisk prompts, alsa-utils or ktuberling (reserved for independent evaluation).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="new corpus folder")
    p.add_argument("--sources", nargs="+", metavar="SRC", help="asterisk, fillets (default both)")
    p.add_argument("--languages", nargs="+", metavar="LANG", help="es fr it ru nl cs (default all six)")
    p.add_argument("--max-prompts", type=int, help="per source and language: a seeded random subset")
    p.add_argument("--val-speakers", nargs="+", metavar="PATTERN", help="subjects held out for validation (fnmatch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    p.add_argument(
        "--min-coverage",
        type=float,
        default=0.7,
        metavar="SHARE",
        help="reject a prompt whose aligned phones cover less than this share of its loud audio "
        "(its transcript does not match the recording; default 0.7)",
    )
    add_vertex_dtype_option(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run_human)


def _run_merge(args: argparse.Namespace) -> int:
    from l2t_gs.training.data.human import merge_corpora

    exclude: list[str] = []
    if args.exclude:
        try:
            lines = Path(args.exclude).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise L2TError(f"cannot read --exclude {args.exclude}: {exc}") from None
        exclude = [ln.split("#", 1)[0].strip() for ln in lines]
        exclude = [x for x in exclude if x]
    desc = merge_corpora(args.corpora, args.out, copy=args.copy, exclude=exclude)
    left = f", {len(exclude)} clips left out" if exclude else ""
    print(f"wrote {args.out}: {len(desc['subjects'])} subjects from {len(args.corpora)} corpora{left}", file=sys.stderr)
    return 0


def _register_merge(ds: argparse._SubParsersAction) -> None:
    p = ds.add_parser("merge", help="join corpora (synth, human, ...) into one dataset folder")
    p.add_argument("corpora", nargs="+", metavar="DIR", help="corpus folders in the VOCASET layout")
    p.add_argument("--out", required=True, metavar="DIR", help="new folder (clips symlinked unless --copy)")
    p.add_argument("--copy", action="store_true", help="copy clip files instead of symlinking them")
    p.add_argument("--exclude", metavar="FILE", help="clip names to leave out, one per line ('#' starts a comment)")
    p.set_defaults(func=_run_merge)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_align,
    _register_tts,
    _register_voices,
    _register_synth,
    _register_human,
    _register_merge,
]


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help=COMMAND_HELP["data"])
    ds = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for add in SUBCOMMANDS:
        add(ds)
