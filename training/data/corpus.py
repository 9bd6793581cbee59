"""The project's synthetic multi-voice corpus: TTS speech with known phone timing -> articulated motion.

``build_corpus(CorpusConfig(...), out_dir)`` writes a dataset in VOCASET/FaceFormer layout that
:func:`l2t_gs.training.data.datasets.load_dataset` reads::

    <out>/wav/<subject>_sentenceNNNN.wav        16 kHz mono PCM
    <out>/vertices_npy/<subject>_sentenceNNNN.npy  float32 [T, V*3] at 30 fps (built-in head topology)
    <out>/phones/<subject>_sentenceNNNN.json    phone segments (canonical ARPAbet, seconds)
    <out>/templates.pkl                          subject -> neutral mesh [V, 3] (its head shape)
    <out>/dataset.json                           fps, subjects and the train/val/test split by voice
    <out>/corpus.json                            how it was made (config, voices, shapes, seed)

Each subject is a voice (engine + voice/variant) plus a head-shape variation (identity coefficients of
the built-in head). Splits are by subject, so validation and test voices are never heard in training;
by default the test split also holds voices of an engine (festival) that no training voice uses.
``CorpusConfig(voices="all")`` (``--voices all``) uses every installed voice: each English espeak-ng
voice (en, en-us, en-gb-*, en-029, ...) alone and with each variant, every flite and every festival voice
(:func:`all_voices`); espeak-ng variants (timbres) are held out whole for validation and test, festival is
a test-only engine. When the clip budget is too small for two clips a voice, a seeded subset keeps every
split (:func:`select_voices`).
Every clip: a generated sentence (:mod:`l2t_gs.training.data.sentences`), synthesised with random rate and
pitch, with vocal-tract-length perturbation (VTLP: formants scaled by a random factor, see
:func:`_synthesize`), optionally augmented (speed perturbation with the phone times scaled to match,
then the random channel chain of :mod:`l2t_gs.training.data.channels`: room reverberation, white/pink/
babble noise at a random SNR, telephone/8 kHz/G.711/GSM/MP3/Opus/AAC channels, level, DC offset,
clipping), then articulated from its phone segments
(:func:`l2t_gs.motion.articulation.articulate`) and skinned through the rig with the subject's shape.
Clips are independent, seeded by (seed, clip index) and each made in a fresh process, so the corpus is
identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import pickle
import re
import shutil
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import output_parent
from l2t_gs.io.tempfiles import make_temp_dir
from l2t_gs.training.data.channels import ChannelConfig, apply_random_channel

#: Default voices: (engine, voice, split). Test voices include a whole unseen engine (festival).
DEFAULT_VOICES: tuple[tuple[str, str, str], ...] = (
    ("espeak", "en-us+m1", "train"),
    ("espeak", "en-us+f2", "train"),
    ("espeak", "en-us+m3", "train"),
    ("espeak", "en-us+f4", "train"),
    ("espeak", "en+m2", "train"),
    ("espeak", "en-gb-x-rp+f3", "train"),
    ("espeak", "en-gb-scotland+m3", "train"),
    ("flite", "kal16", "train"),
    ("flite", "slt", "train"),
    ("flite", "awb", "train"),
    ("espeak", "en-us+m4", "val"),
    ("flite", "kal", "val"),
    ("espeak", "en-us+f5", "test"),
    ("espeak", "en-us-nyc+f1", "test"),
    ("flite", "rms", "test"),
    ("festival", "kal_diphone", "test"),
)

CLIP_SECONDS_ESTIMATE = 3.0


@dataclass
class AugmentConfig:
    """Voice and audio augmentation probabilities and ranges (applied per clip, seeded)."""

    rate: tuple[float, float] = (0.85, 1.2)  # TTS speaking-rate factor (timing from the engine)
    pitch_semitones: float = 2.0  # F0 shift, uniform in +-this (espeak pitch scale, flite/festival F0 in Hz)
    vtlp_prob: float = 0.5  # vocal-tract-length perturbation (formant scaling, pitch and tempo kept)
    vtlp: tuple[float, float] = (0.9, 1.12)  # formant scale factor
    speed_prob: float = 0.3  # resampling speed perturbation (pitch and tempo), phone times scaled
    speed: tuple[float, float] = (0.9, 1.1)
    channel: ChannelConfig = field(default_factory=ChannelConfig)  # room, noise, codec, level chain


@dataclass
class CorpusConfig:
    """What ``l2t-gs data synth`` builds."""

    minutes: float = 10.0
    # (engine, voice, split) triples, or "all": every installed voice (:func:`all_voices`)
    voices: list[tuple[str, str, str]] | str = field(default_factory=lambda: [tuple(v) for v in DEFAULT_VOICES])
    seed: int = 0
    fps: float = 30.0
    sample_rate: int = 16000
    workers: int = 2
    shape_std: float = 0.6
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lead_silence: tuple[float, float] = (0.1, 0.4)  # seconds of silence added before/after speech
    min_clips_per_voice: int = 2  # voices="all": fewer voices (a seeded subset) when the budget is small
    vertex_dtype: str = "float32"  # float16 halves the disk (quantisation ~0.05 mm at head size)


def write_motion(path: Path, rig: Any, shape: np.ndarray, expr: np.ndarray, jaw: np.ndarray, dtype: str) -> None:
    """Skin a clip's rig track (``expr`` [T, E], ``jaw`` [T, 3]) with identity ``shape`` [S] through ``rig``
    and save the vertices as ``[T, V*3]`` of ``dtype`` (the corpus layout's ``vertices_npy/``)."""
    with torch.no_grad():
        verts = rig(shape=torch.as_tensor(shape)[None], expr=torch.as_tensor(expr), jaw_pose=torch.as_tensor(jaw))
    np.save(path, verts.reshape(len(expr), -1).numpy().astype(dtype))


def subject_name(engine: str, voice: str) -> str:
    """A file-safe subject id, e.g. ``espeak-en-us-f3``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", f"{engine}-{voice}").strip("-")


def parse_voices(specs: list[str]) -> list[tuple[str, str, str]]:
    """Parse ``engine:voice[:split]`` strings (split defaults to train)."""
    out = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or parts[0] not in ("espeak", "flite", "festival"):
            raise L2TError(f"--voices: expected engine:voice[:split] with engine espeak|flite|festival, got {spec!r}")
        split = parts[2] if len(parts) == 3 else "train"
        if split not in ("train", "val", "test"):
            raise L2TError(f"--voices: split must be train, val or test, got {split!r} in {spec!r}")
        out.append((parts[0], parts[1], split))
    return out


def _engine(name: str):
    if name == "espeak":
        from l2t_gs.speech import espeak as mod
    elif name == "flite":
        from l2t_gs.speech import flite as mod
    else:
        from l2t_gs.speech import festival as mod
    return mod


def check_voices(voices: list[tuple[str, str, str]]) -> None:
    """Fail early, with one line, on engines or voices that are not installed."""
    for engine, voice, _ in voices:
        mod = _engine(engine)
        if not mod.available():
            raise L2TError(f"TTS engine {engine} is not installed (needed for voice {voice})")
        if engine == "espeak":
            base, _, variant = voice.partition("+")
            if base not in mod.list_voices() or (variant and variant not in mod.list_variants()):
                raise L2TError(f"espeak-ng has no voice {voice!r} (voice+variant, e.g. en-us+f3)")
        elif voice not in mod.list_voices():
            raise L2TError(f"{engine} has no voice {voice!r}; available: {', '.join(mod.list_voices())}")


#: flite voices held out by name (as in DEFAULT_VOICES); festival is a test-only engine
_FLITE_SPLITS = {"kal": "val", "rms": "test"}
#: the voices' own mean F0 in Hz (measured), for pitch shifts of the engines that take an F0 in Hz; flite's
#: rms ignores int_f0_target_mean, voices not listed here keep their pitch
_F0_HZ = {("flite", "kal"): 95.0, ("flite", "kal16"): 95.0, ("flite", "awb"): 130.0, ("flite", "slt"): 170.0}
_F0_HZ[("festival", "kal_diphone")] = 105.0
#: espeak-ng's pitch parameter (0-100, 50 = the voice's own) moves F0 about one octave per 79 steps
_ESPEAK_PITCH_PER_OCTAVE = 79.0


def _variant_split(variant: str) -> str:
    """Held-out espeak-ng variants (timbres): a fixed hash of the name, so a variant keeps its split
    whatever else is installed and whatever the seed."""
    h = zlib.crc32(variant.lower().encode()) % 10
    return "val" if h == 0 else "test" if h == 1 else "train"


def _espeak_selectable(voice: str) -> bool:
    from l2t_gs.speech import espeak

    try:
        with espeak._LOCK:
            espeak._engine().set_voice(voice)
    except L2TError:
        return False
    return True


def all_voices() -> list[tuple[str, str, str]]:
    """Every installed voice as (engine, voice, split): each English espeak-ng voice alone and with every
    variant (``en-gb-scotland+f3``), every flite voice, every festival voice.

    Splits are by voice: espeak-ng variants are held out whole (about 10 % val, 10 % test, by a fixed hash
    of the variant name, so a held-out timbre is never heard in training in any accent); flite kal is val
    and rms test (as in :data:`DEFAULT_VOICES`); festival, an engine no training voice uses, is test.
    """
    from l2t_gs.speech import espeak, festival, flite

    out: list[tuple[str, str, str]] = []
    if espeak.available():
        variants = [v for v in espeak.list_variants() if v and not any(c.isspace() for c in v)]
        splits = {v: _variant_split(v) for v in variants}
        for need in ("val", "test"):  # a tiny install: hold out the first train variants instead
            if variants and need not in splits.values():
                spare = [v for v in variants if splits[v] == "train"]
                if len(spare) > 1:
                    splits[spare[0]] = need
        for lang in espeak.list_voices():
            if _espeak_selectable(lang):  # some listed languages (en-gb) have no voice of their own
                out.append(("espeak", lang, "train"))
                out += [("espeak", f"{lang}+{v}", splits[v]) for v in variants if _espeak_selectable(f"{lang}+{v}")]
    if flite.available():
        out += [("flite", v, _FLITE_SPLITS.get(v, "train")) for v in flite.list_voices()]
    if festival.available():
        out += [("festival", v, "test") for v in festival.list_voices()]
    if not out:
        raise L2TError("--voices all: no TTS engine is installed (espeak-ng, flite, festival)")
    return out


def select_voices(
    voices: list[tuple[str, str, str]], n_max: int, rng: np.random.Generator
) -> list[tuple[str, str, str]]:
    """At most ``n_max`` voices (all when they fit): every flite and festival voice, and a seeded sample of
    the espeak-ng voices of each split in proportion to its size (at least one per split present)."""
    if len(voices) <= n_max:
        return list(voices)
    keep = [v for v in voices if v[0] != "espeak"]
    esp = [v for v in voices if v[0] == "espeak"]
    budget = max(n_max - len(keep), 3)
    picked: list[tuple[str, str, str]] = []
    for split in ("train", "val", "test"):
        pool = [v for v in esp if v[2] == split]
        if not pool:
            continue
        k = min(len(pool), max(1, int(round(budget * len(pool) / len(esp)))))
        picked += [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))]
    chosen = set(keep) | set(picked)
    return [v for v in voices if v in chosen]


def resolve_voices(cfg: CorpusConfig) -> list[tuple[str, str, str]]:
    """The voices ``cfg`` asks for: its list, or for ``"all"`` :func:`all_voices` cut to the clip budget."""
    if isinstance(cfg.voices, str):
        if cfg.voices != "all":
            raise L2TError(f"voices: a list of (engine, voice, split) or 'all', got {cfg.voices!r}")
        n_target = int(np.ceil(cfg.minutes * 60.0 / CLIP_SECONDS_ESTIMATE))
        n_max = max(3, n_target // max(1, cfg.min_clips_per_voice))
        return select_voices(all_voices(), n_max, np.random.default_rng([cfg.seed, 0x766F]))
    return [tuple(v) for v in cfg.voices]


# ----------------------------------------------------------------------------------------------
# audio augmentation


def augment_audio(
    audio: np.ndarray, sr: int, segments: list, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list, dict]:
    """Apply seeded augmentation; returns (audio, segments with times scaled to match, what was done).

    Speed perturbation (resampling: tempo, pitch and formants together, phone times scaled), then the
    channel chain (:func:`l2t_gs.training.data.channels.apply_random_channel`, which keeps the length and
    timing). The peak is brought down to 0.99 when over, so the 16-bit file never wraps."""
    import soxr

    from l2t_gs.speech.segments import PhoneSegment

    done: dict = {}
    if rng.random() < cfg.speed_prob:
        s = float(rng.uniform(*cfg.speed))
        audio = soxr.resample(audio, sr * s, sr).astype(np.float32)  # plays s x faster at rate sr
        segments = [PhoneSegment(p.phone, p.start / s, p.end / s) for p in segments]
        done["speed"] = round(s, 4)
    audio, chain = apply_random_channel(audio, sr, rng, cfg.channel)
    done.update(chain)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    return audio.astype(np.float32), segments, done


# ----------------------------------------------------------------------------------------------
# clips


@dataclass
class _Job:
    index: int
    name: str
    subject: int
    engine: str
    voice: str
    text: str
    seed: int


_WORKER: dict = {}


def _synthesize(job: _Job, cfg: CorpusConfig, rng: np.random.Generator) -> tuple[np.ndarray, list, dict]:
    """TTS with random rate, pitch and vocal-tract length; returns (audio at cfg.sample_rate, phone
    segments, {"rate", "pitch", "vtlp"}).

    VTLP, chosen here: *resampling with compensation by the engine*. Resampling the speech by a factor
    ``a`` (reading it as if sampled at ``a * sr``) scales every frequency, so formants (vocal-tract length),
    but also F0 and tempo, by ``a``; the engine is therefore asked for rate ``rate / a`` and for F0
    ``f0 / a``, which the resampling brings back to ``rate`` and ``f0``, and the phone times are divided by
    ``a`` exactly. Only the formant scale remains, with none of the phasiness of STFT warping or PSOLA.
    flite and festival take F0 in Hz (exact compensation, relative to the voice's measured mean F0 in
    ``_F0_HZ``; voices not listed keep their pitch); espeak-ng takes a 0-100 pitch scale, about
    ``_ESPEAK_PITCH_PER_OCTAVE`` steps an octave, so its compensation is close but not exact.
    The pitch shift (uniform in +-``pitch_semitones``) and the rate are drawn independently of ``a``.
    """
    import soxr

    from l2t_gs.speech.segments import PhoneSegment

    aug = cfg.augment
    sr = cfg.sample_rate
    rate = float(rng.uniform(*aug.rate))
    semis = float(rng.uniform(-aug.pitch_semitones, aug.pitch_semitones))
    use_vtlp = rng.random() < aug.vtlp_prob
    alpha = float(rng.uniform(*aug.vtlp))
    if not use_vtlp:
        alpha = 1.0
    octaves = semis / 12.0 - np.log2(alpha)  # asked of the engine; the resampling adds log2(alpha)
    kwargs: dict = {"rate": rate / alpha, "sr": sr}
    pitch = None
    if job.engine == "espeak":
        pitch = int(np.clip(round(50 + _ESPEAK_PITCH_PER_OCTAVE * octaves), 0, 100))
    elif (job.engine, job.voice) in _F0_HZ:
        pitch = round(float(np.clip(_F0_HZ[(job.engine, job.voice)] * 2.0**octaves, 40.0, 500.0)), 2)
    if pitch is not None:
        kwargs["pitch"] = pitch
    audio, segments = _engine(job.engine).synthesize(job.text, job.voice, **kwargs)
    if alpha != 1.0:
        audio = soxr.resample(audio, sr * alpha, sr).astype(np.float32)  # formants, F0 and tempo x alpha
        segments = [PhoneSegment(p.phone, p.start / alpha, p.end / alpha) for p in segments]
        end = audio.shape[0] / sr
        segments = [PhoneSegment(p.phone, min(p.start, end), min(p.end, end)) for p in segments]
    info = {"rate": round(rate, 4), "pitch": pitch, "pitch_semitones": round(semis, 3)}
    if alpha != 1.0:
        info["vtlp"] = round(alpha, 4)
    return audio, segments, info


def _make_clip(job: _Job, cfg: CorpusConfig, tmp: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Synthesise, augment and articulate one clip; writes its wav and phones, returns
    (metadata, expr [T,E], jaw_pose [T,3]). Runs in a fresh forked process per clip: espeak-ng
    carries prosodic state between calls, so a clip must not depend on what a process spoke before.
    No torch compute happens here (the parent skins the motion)."""
    import soundfile as sf

    from l2t_gs.motion.articulation import articulate
    from l2t_gs.speech.segments import PhoneSegment, write_segments

    rng = np.random.default_rng([cfg.seed, job.index])
    audio, segments, voice_aug = _synthesize(job, cfg, rng)
    # silence before and after (the rest pose must be learnt too)
    sr = cfg.sample_rate
    pre, post = (int(rng.uniform(*cfg.lead_silence) * sr) for _ in range(2))
    audio = np.concatenate([np.zeros(pre, np.float32), audio, np.zeros(post, np.float32)])
    shift = pre / sr
    segs = [PhoneSegment("sil", 0.0, shift)] + [PhoneSegment(p.phone, p.start + shift, p.end + shift) for p in segments]
    segs.append(PhoneSegment("sil", segs[-1].end, audio.shape[0] / sr))
    audio, segs, aug = augment_audio(audio, sr, segs, cfg.augment, rng)
    n_frames = int(round(audio.shape[0] / sr * cfg.fps))
    track = articulate(segs, fps=cfg.fps, n_frames=n_frames, model=_WORKER["model"])
    root = Path(tmp)
    sf.write(root / "wav" / f"{job.name}.wav", audio, sr, subtype="PCM_16")
    write_segments(root / "phones" / f"{job.name}.json", segs)
    meta = {
        "name": job.name,
        "text": job.text,
        "engine": job.engine,
        "voice": job.voice,
        **voice_aug,
        "augment": aug,
        "seconds": round(audio.shape[0] / sr, 3),
        "frames": n_frames,
        "subject": job.subject,
    }
    return meta, track.expr, track.jaw_pose


def _run(args: tuple) -> dict:
    return _make_clip(*args)


def build_corpus(cfg: CorpusConfig, out_dir: str | os.PathLike, *, progress: bool = True) -> dict:
    """Build the corpus into ``out_dir`` (which must not exist); returns the corpus description."""
    import torch

    from l2t_gs.rig import FlameRig, load_head_model
    from l2t_gs.training.data.sentences import generate_sentences

    out = Path(out_dir)
    if out.exists():
        raise L2TError(f"output folder already exists: {out} (choose a new one)")
    output_parent(out, writable=False)
    if cfg.minutes <= 0:
        raise L2TError(f"--minutes must be positive, got {cfg.minutes}")
    voices = resolve_voices(cfg)
    if not any(v[2] == "train" for v in voices):
        raise L2TError("the corpus needs at least one training voice")
    check_voices(voices)

    rng = np.random.default_rng(cfg.seed)
    model = load_head_model("builtin")
    shapes = np.clip(rng.normal(0.0, cfg.shape_std, size=(len(voices), model.n_shape)), -1.5, 1.5).astype(np.float32)
    names = [subject_name(e, v) for e, v, _ in voices]
    if len(set(names)) != len(names):
        raise L2TError("--voices lists the same voice twice")
    n_clips = max(len(voices), int(np.ceil(cfg.minutes * 60.0 / CLIP_SECONDS_ESTIMATE)))
    texts = generate_sentences(n_clips, seed=cfg.seed)
    jobs = []
    for i, text in enumerate(texts):
        s = i % len(voices)
        k = i // len(voices) + 1
        jobs.append(_Job(i, f"{names[s]}_sentence{k:04d}", s, voices[s][0], voices[s][1], text, cfg.seed))

    tmp = str(make_temp_dir(out.parent, out.name))  # swept by a later run if this one is killed
    try:
        for sub in ("wav", "vertices_npy", "phones"):
            (Path(tmp) / sub).mkdir()
        with torch.no_grad():
            rig = FlameRig(model)
            templates = {n: rig(shape=torch.as_tensor(shapes[i])[None])[0].numpy() for i, n in enumerate(names)}
        with open(Path(tmp) / "templates.pkl", "wb") as fh:
            pickle.dump(templates, fh, protocol=4)
        clips = _run_jobs(jobs, cfg, tmp, shapes, progress)
        split_subjects = {
            sp: [n for n, v in zip(names, voices, strict=True) if v[2] == sp] for sp in ("train", "val", "test")
        }
        spec = {
            "version": 1,
            "name": "l2t-corpus",
            "description": "synthetic multi-voice corpus made by `l2t-gs data synth` (see corpus.json)",
            "fps": cfg.fps,
            "n_verts": model.n_verts,
            "subjects": names,
            "train_subjects": split_subjects["train"],
            "splits": {sp: {"subjects": subs} for sp, subs in split_subjects.items() if subs},
        }
        (Path(tmp) / "dataset.json").write_text(json.dumps(spec, indent=2))
        desc = {
            "config": asdict(cfg),
            "subjects": [
                {"name": n, "engine": v[0], "voice": v[1], "split": v[2], "shape": shapes[i].round(4).tolist()}
                for i, (n, v) in enumerate(zip(names, voices, strict=True))
            ],
            "clips": sorted(clips, key=lambda c: c["name"]),
            "seconds": round(sum(c["seconds"] for c in clips), 2),
        }
        (Path(tmp) / "corpus.json").write_text(json.dumps(desc, indent=1))
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return desc


def _run_jobs(jobs: list[_Job], cfg: CorpusConfig, tmp: str, shapes: np.ndarray, progress: bool) -> list[dict]:
    """Clips in fresh forked workers (one clip per process); the parent skins and writes the motion."""
    from tqdm import tqdm

    from l2t_gs.motion.articulation import articulate
    from l2t_gs.rig import FlameRig, load_head_model

    model = load_head_model("builtin")
    _WORKER["model"] = model
    articulate([("sil", 0.0, 0.1)], fps=cfg.fps, model=model)  # measure the rig constants before forking
    rig = FlameRig(model)
    args = [(job, cfg, tmp) for job in jobs]
    bar = tqdm(total=len(jobs), desc="synthesising clips", unit="clip", disable=not progress)
    results: list[dict] = []
    try:
        ctx = mp.get_context("fork")
        with ctx.Pool(max(1, cfg.workers), maxtasksperchild=1) as pool:
            for meta, expr, jaw in pool.imap_unordered(_run, args, chunksize=1):
                path = Path(tmp) / "vertices_npy" / f"{meta['name']}.npy"
                write_motion(path, rig, shapes[meta.pop("subject")], expr, jaw, cfg.vertex_dtype)
                results.append(meta)
                bar.update()
    finally:
        bar.close()
    return results
