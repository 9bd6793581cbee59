"""Real human speech for the corpus: Debian prompt packs and game dialogue with transcripts.

``build_human_corpus(HumanCorpusConfig(...), out_dir)`` writes the same VOCASET/FaceFormer layout as
:func:`l2t_gs.training.data.corpus.build_corpus` (``wav/`` 16 kHz, ``vertices_npy/`` float32 [T, V*3] at 30 fps on
the built-in head, ``phones/``, ``templates.pkl``, ``dataset.json``, ``corpus.json``), so
:func:`l2t_gs.training.data.datasets.load_dataset` reads it and :func:`merge_corpora` joins it with a synthetic one.

Sources (Debian packages; install with apt):

* ``asterisk``: ``asterisk-core-sounds-{es,fr,it,ru}-wav``, one professional voice per language (8 kHz
  telephone prompts), transcripts in ``/usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz``
  (``name: text`` lines, names may hold a subfolder such as ``digits/1``). The English pack is reserved for
  independent evaluation and is never read here.
* ``fillets``: Fish Fillets NG voice-acted dialogue, ``sound/<level>/<lang>/<id>.ogg`` with the text in
  ``script/<level>/dialogs_<lang>.lua`` (``dialogId("<id>", font, english)`` then ``dialogStr("<text>")``;
  the English file has the text as ``dialogId``'s third argument). The dialogue id is the ogg's name and
  its second field names the character (``m`` small fish, ``v`` big fish, ``pap`` parrot, ...): one subject
  per (language, character); characters with few lines, ``x`` (objects, bystanders) and numbered level
  intros are pooled as ``fillets-<lang>-other`` (several voices, so a pooled subject is not one actor). Debian's
  ``fillets-ng-data`` ships no English voiced dialogue (its ``en`` folders hold sound effects; the few
  lines with English text are grunts), so the voices are Dutch (``fillets-ng-data-nl``) and Czech
  (``fillets-ng-data-cs``); ``en`` is supported but not in the default languages.

Alignment: English with pocketsphinx and its dictionary (espeak-ng letter-to-sound for unknown words).
Other languages: each transcript word is phonemised by espeak-ng in that language, the phonemes are mapped
to the nearest ARPAbet phones (:data:`FOREIGN_TO_ARPABET`) and pocketsphinx's English acoustic model aligns
with these pronunciations. :func:`crosslingual_alignment_error` measures the error of this pipeline on
espeak-ng speech of the language, whose phone times are known. Prompts that fail to align are dropped and
counted in ``corpus.json``. Motion: :func:`l2t_gs.motion.articulation.articulate` on the aligned phones,
skinned through the rig like the synthetic corpus. Splits are by subject: ``val_speakers`` (fnmatch
patterns) go to ``val``, the rest to ``train``; nothing goes to ``test`` (reserved for independent data).
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import multiprocessing as mp
import os
import pickle
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from l2t_gs.audio.io import load_audio, resample
from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import output_parent
from l2t_gs.motion.articulation import articulate
from l2t_gs.motion.transcript import speech_coverage
from l2t_gs.rig import FlameRig, load_head_model
from l2t_gs.speech import espeak
from l2t_gs.speech.align import force_align, normalize_transcript
from l2t_gs.speech.segments import boundary_errors, canonicalize, write_segments
from l2t_gs.training.data.corpus import subject_name, write_motion
from l2t_gs.training.data.datasets import load_templates

__all__ = [
    "ASTERISK_LANGUAGES",
    "FILLETS_LANGUAGES",
    "FOREIGN_TO_ARPABET",
    "HumanCorpusConfig",
    "Prompt",
    "build_human_corpus",
    "crosslingual_alignment_error",
    "list_prompts",
    "map_foreign",
    "merge_corpora",
    "parse_asterisk_transcript",
    "parse_fillets_dialogs",
    "transcript_coverage",
    "word_pronunciation",
]

ASTERISK_LANGUAGES = ("es", "fr", "it", "ru")
FILLETS_LANGUAGES = ("nl", "cs", "en")
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
ASTERISK_DOC = Path("/usr/share/doc")
FILLETS_ROOT = Path("/usr/share/games/fillets-ng")
#: espeak-ng voice per language
ESPEAK_VOICE = {"es": "es", "fr": "fr", "it": "it", "ru": "ru", "nl": "nl", "cs": "cs", "de": "de", "en": "en-us"}
FILLETS_PACKAGE = {"en": "fillets-ng-data", "nl": "fillets-ng-data-nl", "cs": "fillets-ng-data-cs"}
COVERAGE_FLOOR_DB = 20.0  # loud audio for the coverage check: within 20 dB of the clip's 99th percentile
MIN_SPEAKER_PROMPTS = 15  # fillets characters with fewer lines are pooled into <lang>-other


# ----------------------------------------------------------------------------------------------
# espeak-ng (any language) -> ARPAbet


def _table(spec: str) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for item in spec.split(","):
        if item.strip():
            src, _, dst = item.strip().partition("=")
            out[src] = tuple(dst.split())
    return out


#: espeak-ng phoneme mnemonics of the es, fr, it, ru, nl, cs (and de) voices -> nearest canonical ARPAbet
#: phones (lowercase). Choices: pure continental vowels take the ARPAbet vowel of the same height and
#: rounding (a -> aa, e -> ey, E -> eh, o -> ow, O -> ao, i -> iy, u -> uw); front rounded vowels keep their
#: rounding (French/Dutch y -> uw, eu/oe -> uh) because the lips matter for the motion; nasal vowels drop
#: the nasality (ARPAbet has none); the velar/uvular fricative x -> hh; palatal consonants become
#: consonant + y (n^ -> n y, l^ -> l y, c -> t y); affricates ts/dz -> two phones; Czech r^ (r-caron) -> zh;
#: Spanish b/d/g fricatives (B, D, Q) -> b, dh, g; taps and trills -> r. Zero-length marks (``;``
#: palatalisation, ``:`` length, ``*`` gemination, language switches ``(fr)``) map to nothing and
#: pauses to sil. Names not listed fall back to stripping variant marks (``t;`` -> ``t``, ``k:`` -> ``k``).
FOREIGN_TO_ARPABET: dict[str, tuple[str, ...]] = _table(
    # pauses and marks
    "_=sil, _:=sil, _::=sil, _!=sil, _!_=sil, _|=sil, ||=sil, ;=, :=, *=, !=, -=,"
    # vowels
    "a=aa, a:=aa, a#=ah, a-=aa, aa=aa, A=aa, A:=aa, A~=aa, 0=ao, V=ah, @=ah, @-=ah, @L=ah l, 3=er, 8=uh,"
    "e=ey, e:=ey, e-=ey, E=eh, E:=eh, E2=eh, E#=eh, E~=ae, I=ih, I2=ih, I3=ih, I:=ih, I^=ih, i=iy, i:=iy,"
    'o=ow, o:=ow, O=ao, O:=ao, O~=ow, O@=ao r, u=uw, u:=uw, u"=uw, U=uh, U:=uh,'
    "y=uw, y-=uw, Y=uh, Y:=uh, W=uh, W~=ah,"
    # diphthongs and glide + vowel units
    "aI=ay, aU=aw, eI=ey, EI=ey, oI=oy, OI=oy, oU=ow, Wy=oy, VU=aw, eU=ey uw, yU=uw, ja=y aa, ju=y uw,"
    # stops and affricates
    "p=p, b=b, t=t, t2=t, d=d, d[=d, k=k, g=g, c=t y, tS=ch, dZ=jh, ts=t s, ts2=t s, dz=d z,"
    # fricatives
    "f=f, v=v, v#=v, B=b, T=th, D=dh, s=s, ss=s, z=z, z2=z, S=sh, S;=sh, Z=zh, h=hh, x=hh, X=hh, Q=g,"
    # nasals, liquids, glides
    "m=m, n=n, n_=n, N=ng, n^=n y, J=n y, J^=n y, l=l, l^=l y, l-=ah l, L=l,"
    "r=r, **=r, R=r, R2=r, r-=er, R^=zh, j=y, w=w, w2=w"
)
#: per-language exceptions to FOREIGN_TO_ARPABET
LANGUAGE_OVERRIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "ru": {"y": ("ih",)},  # Russian y is the central vowel of "ы"
    "nl": {"Q": ("hh",), "y": ("uw",)},  # Dutch g is a velar fricative
}
_MARKS = ';:#2-^[_"*'
_LANG_SWITCH = re.compile(r"^\([a-z-]+\)$")
_PAUSE_PREFIX = re.compile(r"^(_[:!|]*)(.+)$")


def map_foreign(name: str, lang: str) -> tuple[str, ...]:
    """Canonical phones of an espeak-ng phoneme ``name`` spoken by the ``lang`` voice (KeyError if unmapped).

    Stress marks are ignored; ``(fr)`` language switches map to nothing; a pause fused to the next phoneme
    (``_:a``) maps to that phoneme; unknown names lose trailing variant marks until a known name remains.
    """
    key = name.strip().lstrip("',%=")
    if not key or _LANG_SWITCH.match(key):
        return ()
    over = LANGUAGE_OVERRIDES.get(lang, {})
    for table in (over, FOREIGN_TO_ARPABET):
        if key in table:
            return table[key]
    m = _PAUSE_PREFIX.match(key)
    if m and m.group(1) in FOREIGN_TO_ARPABET:
        return map_foreign(m.group(2), lang)
    while len(key) > 1 and key[-1] in _MARKS:
        key = key[:-1]
        for table in (over, FOREIGN_TO_ARPABET):
            if key in table:
                return table[key]
    raise KeyError(f"unmapped espeak-ng phoneme {name!r} ({lang})")


def word_pronunciation(word: str, lang: str) -> tuple[str, ...]:
    """ARPAbet phones (uppercase) of one transcript word from espeak-ng's ``lang`` voice (may be empty)."""

    groups = espeak.text_to_phonemes(word, ESPEAK_VOICE.get(lang, lang), any_language=True)
    phones = [p for names in groups for n in names for p in map_foreign(n, lang) if p != "sil"]
    return tuple(p.upper() for p in phones)


def _pronunciations(words: list[str], lang: str) -> dict[str, tuple[str, ...]]:
    return {w: word_pronunciation(w, lang) for w in dict.fromkeys(words)}


def _align(audio: np.ndarray, text: str, lang: str, sr: int, prons: dict | None = None):
    """Phone segments of ``audio`` aligned to ``text`` (L2TError when it cannot be aligned)."""

    if lang == "en":
        return force_align(audio, text, sr=sr, lts=True).phones
    words = normalize_transcript(text)
    if prons is None:
        prons = _pronunciations(words, lang)
    use = {w: prons.get(w, ()) for w in words}
    empty = [w for w, p in use.items() if not p]
    if empty:
        raise L2TError(f"no pronunciation for {', '.join(empty[:3])}")
    return force_align(audio, text, sr=sr, lts=False, pronunciations=use).phones


def transcript_coverage(audio: np.ndarray, segments: Sequence, sr: int) -> float:
    """The builder's check of an aligned prompt: the share of its loud audio (10 ms frames within
    :data:`COVERAGE_FLOOR_DB` of its 99th-percentile level) that its speech phones cover
    (:func:`l2t_gs.motion.transcript.speech_coverage`); compared with ``min_speech_coverage``."""
    return speech_coverage(audio, segments, sr, floor_db=COVERAGE_FLOOR_DB)


def crosslingual_alignment_error(lang: str, sentences: list[str], *, rate: float = 1.0) -> dict:
    """Align espeak-ng speech of ``sentences`` in ``lang`` with the cross-lingual pipeline and compare the
    phone boundaries with espeak's own phone times: median / 90th percentile boundary error (ms), the
    number of boundaries compared and of sentences that failed to align."""

    errs: list[np.ndarray] = []
    failed = 0
    for text in sentences:
        raw = espeak.synthesize_raw(text, ESPEAK_VOICE.get(lang, lang), rate=rate, any_language=True)
        audio = resample(raw.audio, raw.sr, 16000)
        ref = canonicalize(raw.phones, lambda n: map_foreign(n, lang), audio.shape[0] / 16000)
        try:
            hyp = _align(audio, text, lang, 16000)
        except L2TError:
            failed += 1
            continue
        errs.append(boundary_errors(ref, hyp))
    e = np.concatenate(errs) * 1000.0 if errs else np.zeros(0)
    return {
        "language": lang,
        "sentences": len(sentences),
        "failed": failed,
        "boundaries": int(e.size),
        "median_ms": round(float(np.median(e)), 1) if e.size else None,
        "p90_ms": round(float(np.percentile(e, 90)), 1) if e.size else None,
    }


# ----------------------------------------------------------------------------------------------
# transcripts and prompts


@dataclass(frozen=True)
class Prompt:
    """One recording with its transcript."""

    source: str  # asterisk-<lang> or fillets-<lang>
    lang: str
    speaker: str  # subject name
    key: str  # name within the source (asterisk: digits/1, fillets: <level>/<id>)
    text: str
    path: str


def parse_asterisk_transcript(text: str) -> dict[str, str]:
    """``name: text`` lines of a core-sounds transcript -> {name: text}; comments (``;``) and lines without
    a text are skipped, a repeated ``name:`` prefix (``conf-adminmenu: conf-adminmenu: ...``) is removed."""
    out: dict[str, str] = {}
    for line in text.lstrip("\ufeff").splitlines():
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, _, body = line.partition(":")
        name, body = name.strip(), body.strip()
        if body.startswith(name + ":"):
            body = body[len(name) + 1 :].strip()
        if name and body and not re.search(r"\s", name):
            out[name] = body
    return out


_DIALOG = re.compile(
    r'dialogId\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:[^"\\]|\\.)*"\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)'
    r'(?:\s*dialogStr\(\s*"((?:[^"\\]|\\.)*)"\s*\))?'
)


def parse_fillets_dialogs(text: str) -> dict[str, str]:
    """A ``dialogs_<lang>.lua`` -> {dialog id: text}: ``dialogStr``'s text when present, else the third
    argument of ``dialogId`` (the English files); empty texts are skipped."""
    out: dict[str, str] = {}
    for m in _DIALOG.finditer(text):
        body = m.group(3) if m.group(3) is not None else m.group(2)
        body = re.sub(r"\\(.)", r"\1", body).strip()
        if body:
            out[m.group(1)] = body
    return out


def _speakable(text: str) -> bool:
    """Whether the transcript holds words (letters), not just digits/hex strings or punctuation."""
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 2 and not re.fullmatch(r"[0-9A-F\s]+", text)


def _asterisk_prompts(lang: str) -> list[Prompt]:
    doc = ASTERISK_DOC / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt.gz"
    dirs = [d for d in sorted(ASTERISK_SOUNDS.glob(f"{lang}_*")) if d.is_dir() and not d.is_symlink()]
    if not doc.is_file() or not dirs:
        raise L2TError(
            f"Asterisk {lang} prompts are not installed: apt-get install asterisk-core-sounds-{lang}-wav "
            f"asterisk-core-sounds-{lang}"
        )
    with gzip.open(doc, "rt", encoding="utf-8", errors="replace") as fh:
        texts = parse_asterisk_transcript(fh.read())
    out = []
    for d in dirs:  # one voice per folder, e.g. fr_CA_f_June
        speaker = subject_name("asterisk", d.name)
        for name, text in sorted(texts.items()):
            wav = d / f"{name}.wav"
            if wav.is_file() and _speakable(text) and not name.startswith("silence/"):
                out.append(Prompt(f"asterisk-{lang}", lang, speaker, name, text, str(wav)))
    return out


def _fillets_prompts(lang: str) -> list[Prompt]:
    scripts = sorted((FILLETS_ROOT / "script").glob(f"*/dialogs_{lang}.lua")) if FILLETS_ROOT.is_dir() else []
    oggs = sorted((FILLETS_ROOT / "sound").glob(f"*/{lang}/*.ogg")) if FILLETS_ROOT.is_dir() else []
    if not scripts or not oggs:
        raise L2TError(f"Fish Fillets {lang} voices are not installed: apt-get install {FILLETS_PACKAGE[lang]}")
    texts: dict[tuple[str, str], str] = {}
    for f in scripts:
        for k, v in parse_fillets_dialogs(f.read_text(encoding="utf-8", errors="replace")).items():
            texts[(f.parent.name, k)] = v
    by_id: dict[str, str] = {}
    for (_, k), v in sorted(texts.items()):
        by_id.setdefault(k, v)
    found = []
    seen: set[str] = set()
    for ogg in oggs:
        level, ident = ogg.parent.parent.name, ogg.stem
        text = texts.get((level, ident), by_id.get(ident))
        if text is None or not _speakable(text) or ident in seen:  # shared lines (cabin1/cabin2): once
            continue
        seen.add(ident)
        parts = ident.split("-")
        found.append((parts[1] if len(parts) > 2 else "x", level, ident, text, ogg))
    counts: dict[str, int] = {}
    for ch, *_ in found:
        counts[ch] = counts.get(ch, 0) + 1
    out = []
    for ch, level, ident, text, ogg in found:
        named = ch.isalpha() and ch != "x"  # x: objects and bystanders; digits: level intros (several voices)
        who = ch if named and counts[ch] >= MIN_SPEAKER_PROMPTS else "other"
        out.append(Prompt(f"fillets-{lang}", lang, subject_name("fillets", f"{lang}-{who}"), f"{level}/{ident}",
                          text, str(ogg)))  # fmt: skip
    return out


def list_prompts(source: str, lang: str) -> list[Prompt]:
    """Every usable prompt of a source (``asterisk`` or ``fillets``) in ``lang``, in a stable order."""
    if source == "asterisk":
        if lang not in ASTERISK_LANGUAGES:
            raise L2TError(f"asterisk prompts are used for {', '.join(ASTERISK_LANGUAGES)} only, not {lang!r}")
        prompts = _asterisk_prompts(lang)
    elif source == "fillets":
        if lang not in FILLETS_LANGUAGES:
            raise L2TError(f"fillets voices exist for {', '.join(FILLETS_LANGUAGES)} only, not {lang!r}")
        prompts = _fillets_prompts(lang)
    else:
        raise L2TError(f"unknown source {source!r} (asterisk or fillets)")
    return sorted(prompts, key=lambda p: (p.speaker, p.key))


# ----------------------------------------------------------------------------------------------
# building


@dataclass
class HumanCorpusConfig:
    """What :func:`build_human_corpus` builds."""

    sources: list[str] = field(default_factory=lambda: ["asterisk", "fillets"])
    #: languages to take from each source that has them (asterisk: es fr it ru; fillets: nl cs en)
    languages: list[str] = field(default_factory=lambda: ["es", "fr", "it", "ru", "nl", "cs"])
    max_prompts: int | None = None  # per source and language (a seeded random subset); None: all
    seed: int = 0
    workers: int = 2
    #: subjects held out for validation (fnmatch patterns): the Italian voice, minor Dutch and Czech characters
    val_speakers: list[str] = field(
        default_factory=lambda: ["asterisk-it-*", "fillets-nl-other", "fillets-cs-hs", "fillets-cs-pap"]
    )
    fps: float = 30.0
    sample_rate: int = 16000
    shape_std: float = 0.6
    min_seconds: float = 0.3
    max_seconds: float = 25.0
    vertex_dtype: str = "float32"  # float16 halves the disk (quantisation ~0.05 mm at head size)
    #: a clip whose aligned phones cover less than this share of its loud audio (10 ms frames within
    #: :data:`COVERAGE_FLOOR_DB` of its 99th-percentile level) is rejected: its transcript does not
    #: match the recording (:func:`l2t_gs.motion.transcript.speech_coverage`)
    min_speech_coverage: float = 0.7


@dataclass
class _Job:
    name: str
    prompt: Prompt
    prons: dict


_WORKER: dict = {}


def _make_clip(job: _Job, cfg: HumanCorpusConfig, tmp: str) -> tuple[dict, np.ndarray | None, np.ndarray | None]:
    """Load, align and articulate one prompt; writes its wav and phones. Returns (metadata, expr, jaw) or
    (failure record, None, None)."""
    import soundfile as sf

    p = job.prompt
    base = {"name": job.name, "source": p.source, "speaker": p.speaker, "key": p.key, "text": p.text}
    try:
        audio = load_audio(p.path, cfg.sample_rate)
        seconds = audio.shape[0] / cfg.sample_rate
        if not cfg.min_seconds <= seconds <= cfg.max_seconds:
            raise L2TError(f"duration {seconds:.2f} s outside [{cfg.min_seconds}, {cfg.max_seconds}]")
        peak = float(np.abs(audio).max())
        if peak > 0.99:
            audio = audio * (0.99 / peak)
        segs = _align(audio, p.text, p.lang, cfg.sample_rate, job.prons)
        cov = transcript_coverage(audio, segs, cfg.sample_rate)
        if cov < cfg.min_speech_coverage:
            raise L2TError(
                f"the aligned phones cover only {cov:.0%} of the loud audio (does the transcript match the speech?)"
            )
    except L2TError as exc:
        return {**base, "failed": str(exc).splitlines()[0][:200]}, None, None
    n_frames = int(round(seconds * cfg.fps))
    track = articulate(segs, fps=cfg.fps, n_frames=n_frames, model=_WORKER["model"])
    root = Path(tmp)
    sf.write(root / "wav" / f"{job.name}.wav", audio, cfg.sample_rate, subtype="PCM_16")
    write_segments(root / "phones" / f"{job.name}.json", segs)
    meta = {**base, "lang": p.lang, "file": p.path, "seconds": round(seconds, 3), "frames": n_frames}
    return meta, track.expr, track.jaw_pose


def _run(args: tuple) -> tuple:
    return _make_clip(*args)


def _collect(cfg: HumanCorpusConfig) -> list[Prompt]:
    prompts: list[Prompt] = []
    for source in cfg.sources:
        langs = ASTERISK_LANGUAGES if source == "asterisk" else FILLETS_LANGUAGES if source == "fillets" else None
        if langs is None:
            raise L2TError(f"unknown source {source!r} (asterisk or fillets)")
        for lang in cfg.languages:
            if lang not in langs:
                continue
            found = list_prompts(source, lang)
            if cfg.max_prompts is not None and len(found) > cfg.max_prompts:
                rng = np.random.default_rng([cfg.seed, sum(map(ord, f"{source}-{lang}"))])
                keep = sorted(rng.choice(len(found), size=cfg.max_prompts, replace=False).tolist())
                found = [found[i] for i in keep]
            prompts += found
    if not prompts:
        raise L2TError(f"no prompts: sources {cfg.sources} have none in languages {cfg.languages}")
    return prompts


def build_human_corpus(cfg: HumanCorpusConfig, out_dir: str | os.PathLike, progress: bool = True) -> dict:
    """Build the human-speech corpus into ``out_dir`` (which must not exist); returns the corpus description.

    Work goes to ``.<name>.partial`` next to ``out_dir`` and is renamed at the end; a rerun with the same
    config resumes from the clips already there. Deterministic for a seed whatever the number of workers.
    """
    import torch

    out = Path(out_dir)
    if out.exists():
        raise L2TError(f"output folder already exists: {out} (choose a new one)")
    output_parent(out, writable=False)
    prompts = _collect(cfg)
    speakers = sorted({p.speaker for p in prompts})
    split = {s: "val" if any(fnmatch.fnmatch(s, pat) for pat in cfg.val_speakers) else "train" for s in speakers}
    if "train" not in split.values():
        raise L2TError("every speaker is held out for validation: the corpus needs a training speaker")

    # pronunciations in the parent (espeak-ng keeps global state; workers then need no espeak)
    prons: dict[str, dict[str, tuple[str, ...]]] = {}
    for p in prompts:
        if p.lang != "en":
            cache = prons.setdefault(p.lang, {})
            for w in normalize_transcript(p.text):
                if w not in cache:
                    cache[w] = word_pronunciation(w, p.lang)
    jobs, index = [], {s: 0 for s in speakers}
    for p in prompts:
        index[p.speaker] += 1
        words = normalize_transcript(p.text)
        jp = {w: prons[p.lang][w] for w in words} if p.lang != "en" else {}
        jobs.append(_Job(f"{p.speaker}_sentence{index[p.speaker]:04d}", p, jp))

    rng = np.random.default_rng(cfg.seed)
    model = load_head_model("builtin")
    shapes = np.clip(rng.normal(0.0, cfg.shape_std, size=(len(speakers), model.n_shape)), -1.5, 1.5)
    shapes = shapes.astype(np.float32)
    tmp = out.parent / f".{out.name}.partial"
    stamp = json.dumps({"config": asdict(cfg)}, sort_keys=True)
    if tmp.exists() and (tmp / "config.json").is_file() and (tmp / "config.json").read_text() != stamp:
        shutil.rmtree(tmp)  # a different build was interrupted there
    for sub in ("wav", "vertices_npy", "phones", "meta"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    (tmp / "config.json").write_text(stamp)
    with torch.no_grad():
        rig = FlameRig(model)
        templates = {n: rig(shape=torch.as_tensor(shapes[i])[None])[0].numpy() for i, n in enumerate(speakers)}
    with open(tmp / "templates.pkl", "wb") as fh:
        pickle.dump(templates, fh, protocol=4)
    clips = _run_jobs(jobs, cfg, tmp, {s: shapes[i] for i, s in enumerate(speakers)}, progress)

    ok = sorted((c for c in clips if "failed" not in c), key=lambda c: c["name"])
    failed = sorted((c for c in clips if "failed" in c), key=lambda c: c["name"])
    for c in failed:  # nothing of a failed clip stays
        for sub, ext in (("wav", "wav"), ("phones", "json"), ("vertices_npy", "npy")):
            (tmp / sub / f"{c['name']}.{ext}").unlink(missing_ok=True)
    used = sorted({c["speaker"] for c in ok})
    split_subjects = {sp: [s for s in used if split[s] == sp] for sp in ("train", "val")}
    if not split_subjects["train"]:
        raise L2TError("no training clip aligned: nothing to write")
    with open(tmp / "templates.pkl", "wb") as fh:
        pickle.dump({s: templates[s] for s in used}, fh, protocol=4)
    spec = {
        "version": 1,
        "name": "l2t-human",
        "description": "human speech (Debian prompt packs, game dialogue) aligned to its transcripts "
        "(see corpus.json); no test split: test data is reserved elsewhere",
        "fps": cfg.fps,
        "n_verts": model.n_verts,
        "subjects": used,
        "train_subjects": split_subjects["train"],
        "splits": {sp: {"subjects": subs} for sp, subs in split_subjects.items() if subs},
    }
    (tmp / "dataset.json").write_text(json.dumps(spec, indent=2))
    per_source: dict[str, dict] = {}
    for c in clips:
        d = per_source.setdefault(c["source"], {"prompts": 0, "clips": 0, "failed": 0, "seconds": 0.0})
        d["prompts"] += 1
        if "failed" in c:
            d["failed"] += 1
        else:
            d["clips"] += 1
            d["seconds"] = round(d["seconds"] + c["seconds"], 3)
    desc = {
        "config": asdict(cfg),
        "test_split": "none: test speakers are reserved for independent evaluation",
        "subjects": [
            {
                "name": s,
                "split": split[s],
                "clips": sum(c["speaker"] == s for c in ok),
                "seconds": round(sum(c["seconds"] for c in ok if c["speaker"] == s), 2),
                "shape": [round(float(x), 4) for x in shapes[speakers.index(s)]],
            }
            for s in used
        ],
        "sources": per_source,
        "aligned": len(ok),
        "alignment_failures": len(failed),
        "failures": failed,
        "clips": ok,
        "seconds": round(sum(c["seconds"] for c in ok), 2),
    }
    (tmp / "corpus.json").write_text(json.dumps(desc, indent=1, ensure_ascii=False))
    shutil.rmtree(tmp / "meta")
    (tmp / "config.json").unlink()
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
    return desc


def _run_jobs(jobs: list[_Job], cfg: HumanCorpusConfig, tmp: Path, shapes: dict, progress: bool) -> list[dict]:
    """Prompts in forked workers; the parent skins and writes the motion. Clips already finished in
    ``tmp`` (a resumed build) are not made again."""
    from tqdm import tqdm

    results: list[dict] = []
    todo = []
    for job in jobs:
        meta = tmp / "meta" / f"{job.name}.json"
        if meta.is_file():
            results.append(json.loads(meta.read_text()))
        else:
            todo.append(job)
    model = load_head_model("builtin")
    _WORKER["model"] = model
    articulate([("sil", 0.0, 0.1)], fps=cfg.fps, model=model)  # measure the rig constants before forking
    rig = FlameRig(model)
    bar = tqdm(total=len(jobs), initial=len(results), desc="aligning prompts", unit="clip", disable=not progress)
    try:
        ctx = mp.get_context("fork")
        with ctx.Pool(max(1, cfg.workers)) as pool:
            for meta, expr, jaw in pool.imap_unordered(_run, [(j, cfg, str(tmp)) for j in todo], chunksize=1):
                if expr is not None:
                    path = tmp / "vertices_npy" / f"{meta['name']}.npy"
                    write_motion(path, rig, shapes[meta["speaker"]], expr, jaw, cfg.vertex_dtype)
                (tmp / "meta" / f"{meta['name']}.json").write_text(json.dumps(meta, ensure_ascii=False))
                results.append(meta)
                bar.update()
    finally:
        bar.close()
    return results


# ----------------------------------------------------------------------------------------------
# merging


def merge_corpora(
    dirs: list[str | os.PathLike], out: str | os.PathLike, *, copy: bool = False, exclude: Sequence[str] = ()
) -> dict:
    """Join corpora in this layout into one folder ``out`` that ``load_dataset`` reads (``load_dataset``
    takes a single root). Clip files are symlinked (``copy=True``: copied); templates, subjects and splits
    are united (subject names must not clash); all corpora must share fps and vertex count. The merged
    ``dataset.json`` lists each source corpus in its description. ``exclude``: clip names to leave out
    (each must be a clip of one of the corpora)."""

    out = Path(out)
    if out.exists():
        raise L2TError(f"output folder already exists: {out} (choose a new one)")
    roots = [Path(d).resolve() for d in dirs]
    specs = []
    for r in roots:
        f = r / "dataset.json"
        if not f.is_file():
            raise L2TError(f"{r} is not a corpus in this layout (no dataset.json)")
        specs.append(json.loads(f.read_text()))
    if len({s["fps"] for s in specs}) != 1 or len({s.get("n_verts") for s in specs}) != 1:
        raise L2TError("corpora to merge must share fps and n_verts")
    skip = set(exclude)
    if skip:
        known = {f.stem for r in roots for f in (r / "wav").glob("*.wav")}
        unknown = sorted(skip - known)
        if unknown:
            raise L2TError(f"--exclude names {len(unknown)} clip(s) of none of the corpora, e.g. {unknown[0]!r}")
    templates: dict = {}
    subjects: list[str] = []
    train: list[str] = []
    splits: dict[str, list] = {}
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for sub in ("wav", "vertices_npy", "phones"):
            (tmp / sub).mkdir(parents=True)
        for r, s in zip(roots, specs, strict=True):
            tpl = load_templates(r / "templates.pkl")
            clash = set(tpl) & set(templates)
            if clash:
                raise L2TError(f"subject(s) {sorted(clash)} are in more than one corpus")
            templates.update({k: np.asarray(v) for k, v in tpl.items()})
            subjects += s.get("subjects", sorted(tpl))
            train += s.get("train_subjects", [])
            own = s.get("subjects", sorted(tpl))
            for sp, rules in s.get("splits", {"train": {}}).items():
                for rule in rules if isinstance(rules, list) else [rules]:
                    splits.setdefault(sp, []).append(rule if "subjects" in rule else {**rule, "subjects": own})
            for sub in ("wav", "vertices_npy", "phones"):
                if not (r / sub).is_dir():
                    continue
                for f in sorted((r / sub).iterdir()):
                    if f.name.rsplit(".", 1)[0] in skip:
                        continue
                    dst = tmp / sub / f.name
                    if copy:
                        shutil.copy2(f, dst)
                    else:
                        dst.symlink_to(f)
        with open(tmp / "templates.pkl", "wb") as fh:
            pickle.dump(templates, fh, protocol=4)
        spec = {
            "version": 1,
            "name": out.name,
            "description": "merged corpus of " + ", ".join(str(r) for r in roots),
            "fps": specs[0]["fps"],
            "subjects": subjects,
            "train_subjects": train,
            "splits": splits,
        }
        if specs[0].get("n_verts") is not None:
            spec["n_verts"] = specs[0]["n_verts"]
        (tmp / "dataset.json").write_text(json.dumps(spec, indent=2))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return spec
