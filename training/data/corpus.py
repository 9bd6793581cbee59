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
Every clip: a generated sentence (:mod:`l2t_gs.training.data.sentences`), synthesised with random rate and
pitch, optionally augmented (speed perturbation with the phone times scaled to match, additive noise at
a random SNR, telephone band limiting, gain), then articulated from its phone segments
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
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from l2t_gs.errors import L2TError

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
    """Audio augmentation probabilities and ranges (applied per clip, seeded)."""

    rate: tuple[float, float] = (0.85, 1.2)  # TTS speaking-rate factor (timing from the engine)
    pitch_jitter: int = 12  # espeak pitch (0-100) jitter around 50
    speed_prob: float = 0.3  # resampling speed perturbation (pitch and tempo), phone times scaled
    speed: tuple[float, float] = (0.9, 1.1)
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (15.0, 40.0)
    band_prob: float = 0.25  # telephone band 300-3400 Hz
    gain_db: tuple[float, float] = (-6.0, 3.0)


@dataclass
class CorpusConfig:
    """What ``l2t-gs data synth`` builds."""

    minutes: float = 10.0
    voices: list[tuple[str, str, str]] = field(default_factory=lambda: [tuple(v) for v in DEFAULT_VOICES])
    seed: int = 0
    fps: float = 30.0
    sample_rate: int = 16000
    workers: int = 2
    shape_std: float = 0.6
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    lead_silence: tuple[float, float] = (0.1, 0.4)  # seconds of silence added before/after speech


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


# ----------------------------------------------------------------------------------------------
# audio augmentation


def _band_limit(x: np.ndarray, sr: int, lo: float = 300.0, hi: float = 3400.0) -> np.ndarray:
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.shape[0], 1.0 / sr)
    ramp = np.clip((f - lo * 0.8) / (lo * 0.4), 0, 1) * np.clip((hi * 1.1 - f) / (hi * 0.2), 0, 1)
    return np.fft.irfft(spec * ramp, n=x.shape[0]).astype(np.float32)


def augment_audio(
    audio: np.ndarray, sr: int, segments: list, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list, dict]:
    """Apply seeded augmentation; returns (audio, segments with times scaled to match, what was done)."""
    import soxr

    from l2t_gs.speech.segments import PhoneSegment

    done: dict = {}
    if rng.random() < cfg.speed_prob:
        s = float(rng.uniform(*cfg.speed))
        audio = soxr.resample(audio, sr * s, sr).astype(np.float32)  # plays s x faster at rate sr
        segments = [PhoneSegment(p.phone, p.start / s, p.end / s) for p in segments]
        done["speed"] = round(s, 4)
    if rng.random() < cfg.band_prob:
        audio = _band_limit(audio, sr)
        done["band"] = [300, 3400]
    if rng.random() < cfg.noise_prob:
        snr = float(rng.uniform(*cfg.snr_db))
        power = float(np.mean(audio**2)) + 1e-12
        noise = rng.standard_normal(audio.shape[0]).astype(np.float32)
        if rng.random() < 0.5:  # pink-ish: integrate white noise a little
            noise = np.cumsum(noise) * 0.02
            noise -= np.convolve(noise, np.ones(401) / 401, mode="same")
        noise *= np.sqrt(power / (np.mean(noise**2) + 1e-12) / 10 ** (snr / 10))
        audio = audio + noise.astype(np.float32)
        done["snr_db"] = round(snr, 2)
    gain = float(rng.uniform(*cfg.gain_db))
    audio = audio * 10 ** (gain / 20)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 0.99:
        audio = audio * (0.99 / peak)
    done["gain_db"] = round(gain, 2)
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


def _make_clip(job: _Job, cfg: CorpusConfig, tmp: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Synthesise, augment and articulate one clip; writes its wav and phones, returns
    (metadata, expr [T,E], jaw_pose [T,3]). Runs in a fresh forked process per clip: espeak-ng
    carries prosodic state between calls, so a clip must not depend on what a process spoke before.
    No torch compute happens here (the parent skins the motion)."""
    import soundfile as sf

    from l2t_gs.motion.articulation import articulate
    from l2t_gs.speech.segments import PhoneSegment, write_segments

    rng = np.random.default_rng([cfg.seed, job.index])
    rate = float(rng.uniform(*cfg.augment.rate))
    kwargs: dict = {"rate": rate, "sr": cfg.sample_rate}
    if job.engine == "espeak":
        kwargs["pitch"] = int(
            np.clip(50 + rng.integers(-cfg.augment.pitch_jitter, cfg.augment.pitch_jitter + 1), 0, 100)
        )
    audio, segments = _engine(job.engine).synthesize(job.text, job.voice, **kwargs)
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
        "rate": round(rate, 4),
        "pitch": kwargs.get("pitch"),
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

    from l2t_gs.training.data.sentences import generate_sentences
    from l2t_gs.rig import FlameRig, load_head_model

    out = Path(out_dir)
    if out.exists():
        raise L2TError(f"output folder already exists: {out} (choose a new one)")
    if not out.parent.is_dir():
        raise L2TError(f"output directory does not exist: {out.parent}")
    if cfg.minutes <= 0:
        raise L2TError(f"--minutes must be positive, got {cfg.minutes}")
    voices = [tuple(v) for v in cfg.voices]
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

    tmp = tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent)
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
    import torch
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
                with torch.no_grad():
                    verts = rig(
                        shape=torch.as_tensor(shapes[meta.pop("subject")])[None],
                        expr=torch.as_tensor(expr),
                        jaw_pose=torch.as_tensor(jaw),
                    )
                np.save(Path(tmp) / "vertices_npy" / f"{meta['name']}.npy", verts.reshape(len(expr), -1).numpy())
                results.append(meta)
                bar.update()
    finally:
        bar.close()
    return results
