"""The human-speech corpus: transcript parsing, the espeak -> ARPAbet mapping, cross-lingual alignment
error on espeak-ng speech, and a tiny build read back by load_dataset (skipped without the packages)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from l2t_gs.errors import L2TError
from l2t_gs.training.data import human as H

SENTENCES = {
    "es": ["Por favor ingrese su numero de agente.", "Agente desconectado.", "La llamada ha sido transferida."],
    "fr": ["Vous êtes maintenant en ligne.", "Veuillez composer le numéro de fichier.", "Merci de votre appel."],
    "it": ["Prego digitare il proprio numero.", "Operatore disconnesso.", "La chiamata è stata trasferita."],
    "ru": ["Этот оператор уже зарегистрирован.", "Введите номер и нажмите решетку.", "Спасибо за звонок."],
    "nl": ["Wat is dit voor raar schip?", "Dit is het wrak van het vliegtuig.", "Kun je dat oog zien?"],
    "cs": ["Co je to za divnou loď?", "To je vrak dopravního letadla.", "Řekni mi, kde je ryba."],
}
#: stated bounds on espeak-ng speech of each language (ms); measured medians are 10-17 ms, p90 35-125 ms
MEDIAN_BOUND_MS = 40.0
P90_BOUND_MS = 150.0


def _espeak_ok() -> bool:
    try:
        from l2t_gs.speech import espeak

        return espeak.available() and "fr" in espeak._engine().all_languages
    except Exception:
        return False


def _pocketsphinx_ok() -> bool:
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


needs_espeak = pytest.mark.skipif(not _espeak_ok(), reason="espeak-ng with its language data is not installed")
needs_align = pytest.mark.skipif(
    not (_espeak_ok() and _pocketsphinx_ok()), reason="espeak-ng or pocketsphinx is not installed"
)


def test_parse_asterisk_transcript():
    text = (
        "\ufeff; Core Asterisk Sounds in French\n\n"
        "activated: activé\n"
        "digits/1: un\n"
        "conf-adminmenu: conf-adminmenu: Appuyez sur 1.\n"
        "empty:\n"
        "agent-pass: Veuillez composer: votre mot de passe\n"
    )
    got = H.parse_asterisk_transcript(text)
    assert got == {
        "activated": "activé",
        "digits/1": "un",
        "conf-adminmenu": "Appuyez sur 1.",
        "agent-pass": "Veuillez composer: votre mot de passe",
    }


def test_parse_fillets_dialogs():
    nl = (
        'dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")\n'
        'dialogStr("Wat is dit voor raar schip?")\n\n'
        'dialogId("let-v-oko", "font_big", "Can you \\"see\\" it?")\ndialogStr("Zie je \\"dat\\" oog?")\n'
        'dialogId("bar-x-gr0", "", "")\n'
    )
    assert H.parse_fillets_dialogs(nl) == {
        "let-m-divna": "Wat is dit voor raar schip?",
        "let-v-oko": 'Zie je "dat" oog?',
    }
    en = 'dialogId("disk-x-au1", "font_darkgrey", "Ouch.")\ndialogId("x", "", "")'
    assert H.parse_fillets_dialogs(en) == {"disk-x-au1": "Ouch."}


def test_map_foreign_marks_and_overrides():
    assert H.map_foreign("t;", "ru") == ("t",)
    assert H.map_foreign("y", "ru") == ("ih",)
    assert H.map_foreign("y", "fr") == ("uw",)
    assert H.map_foreign("_:a", "es") == ("aa",)
    assert H.map_foreign("(en)", "fr") == ()
    assert H.map_foreign("_", "fr") == ("sil",)
    with pytest.raises(KeyError):
        H.map_foreign("Ж", "ru")


@needs_espeak
@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_mapping_covers_espeak_phonemes(lang):
    from l2t_gs.speech import espeak
    from l2t_gs.speech.phones import PHONE_TO_ID

    for text in SENTENCES[lang]:
        for word in espeak.text_to_phonemes(text, H.ESPEAK_VOICE[lang], any_language=True):
            for name in word:
                assert all(p in PHONE_TO_ID for p in H.map_foreign(name, lang)), (lang, name)
        raw = espeak.synthesize_raw(text, H.ESPEAK_VOICE[lang], any_language=True)
        for name, _, _ in raw.phones:  # phoneme events too
            H.map_foreign(name, lang)


@needs_align
@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_crosslingual_alignment_error_bound(lang):
    res = H.crosslingual_alignment_error(lang, SENTENCES[lang])
    assert res["failed"] <= 1, res
    assert res["boundaries"] >= 30, res
    assert res["median_ms"] < MEDIAN_BOUND_MS, res
    assert res["p90_ms"] < P90_BOUND_MS, res


def _installed(source: str, lang: str) -> bool:
    try:
        return bool(H.list_prompts(source, lang))
    except L2TError:
        return False


def test_missing_package_names_apt_package(monkeypatch, tmp_path):
    monkeypatch.setattr(H, "ASTERISK_DOC", tmp_path)
    with pytest.raises(L2TError, match="apt-get install asterisk-core-sounds-fr-wav"):
        H.list_prompts("asterisk", "fr")
    monkeypatch.setattr(H, "FILLETS_ROOT", tmp_path)
    with pytest.raises(L2TError, match="apt-get install fillets-ng-data-nl"):
        H.list_prompts("fillets", "nl")


@needs_align
@pytest.mark.skipif(
    not (_installed("asterisk", "fr") and _installed("asterisk", "it") and _installed("fillets", "nl")),
    reason="asterisk-core-sounds-{fr,it}-wav and fillets-ng-data-nl are not installed",
)
def test_tiny_build_reads_back(tmp_path):
    from l2t_gs.training.data.datasets import load_dataset

    # 3 prompts: one French and one Italian (val) Asterisk prompt, one Dutch fillets line
    cfg = H.HumanCorpusConfig(languages=["fr", "it", "nl"], max_prompts=1, workers=1, val_speakers=["asterisk-it-*"])
    desc = H.build_human_corpus(cfg, tmp_path / "c", progress=False)
    assert desc["aligned"] + desc["alignment_failures"] == 3
    assert desc["alignment_failures"] == sum(s["failed"] for s in desc["sources"].values())
    root = tmp_path / "c"
    assert not (tmp_path / ".c.partial").exists()
    spec = json.loads((root / "dataset.json").read_text())
    assert "test" not in spec["splits"]
    assert all(s.startswith("asterisk-it-") for s in spec["splits"].get("val", {}).get("subjects", []))
    every = load_dataset(root, split="all", validate="full")
    assert len(every) == desc["aligned"] >= 2
    clip = every[0]
    assert clip.vertices.shape[1:] == (every.n_verts, 3) and clip.audio_sr == 16000
    assert clip.phones and abs(clip.num_frames - clip.audio.shape[0] / 16000 * 30) <= 2
    assert load_dataset(root, split="train").subjects
    # merge_corpora gives one root load_dataset reads; clashing subjects are refused
    merged = H.merge_corpora([root], tmp_path / "m")
    assert merged["fps"] == 30.0
    assert load_dataset(tmp_path / "m", split="all").names == every.names
    with pytest.raises(L2TError, match="more than one corpus"):
        H.merge_corpora([root, root], tmp_path / "m2")
    # --exclude leaves clips out (all their files); a name of no corpus is refused before anything is written
    first = every.names[0]
    H.merge_corpora([root], tmp_path / "m3", exclude=[first])
    assert load_dataset(tmp_path / "m3", split="all").names == every.names[1:]
    assert not [f for sub in ("wav", "vertices_npy", "phones") for f in (tmp_path / "m3" / sub).glob(f"{first}.*")]
    with pytest.raises(L2TError, match="none of the corpora"):
        H.merge_corpora([root], tmp_path / "m4", exclude=["nobody_sentence0001"])
    assert not (tmp_path / "m4").exists()
    # the command line: one name per line, '#' comments
    from l2t_gs.cli.main import main

    listing = tmp_path / "exclude.txt"
    listing.write_text(f"# made by hand\n{first}  # 0.85 unlabelled\n\n")
    assert main(["data", "merge", str(root), "--out", str(tmp_path / "m5"), "--exclude", str(listing)]) == 0
    assert load_dataset(tmp_path / "m5", split="all").names == every.names[1:]
    assert main(["data", "merge", str(root), "--out", str(tmp_path / "m6"), "--exclude", str(tmp_path / "no")]) == 1
    # the listing for corpora built before the check: none of a fresh build's clips (it made the check)
    # and, with a minimum no clip can reach, every one of them
    from l2t_gs.training.qc_human import poorly_covered

    assert poorly_covered(root, H.HumanCorpusConfig().min_speech_coverage) == []
    assert [n for n, _ in poorly_covered(root, 1.01)] == every.names


def test_speech_coverage_floor_counts_only_the_loud_audio():
    """The builder's coverage check: frames within ``floor_db`` of the loud level count as speech."""
    from l2t_gs.motion.transcript import speech_coverage

    sr = 16000
    t = np.arange(sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 220 * t)
    quiet = 0.05 * tone  # 26 dB down: speech under a 35 dB floor, not under the builder's 20 dB
    audio = np.concatenate([tone, quiet, tone]).astype(np.float32)
    loud_only = [("AA", 0.0, 1.0), ("sil", 1.0, 2.0), ("IY", 2.0, 3.0)]
    assert H.transcript_coverage(audio, loud_only, sr) == 1.0
    assert speech_coverage(audio, loud_only, sr) == pytest.approx(2 / 3, abs=0.01)  # the default 35 dB floor
    assert H.transcript_coverage(audio, loud_only[:2], sr) == pytest.approx(0.5, abs=0.01)


def test_build_rejects_a_transcript_that_covers_part_of_the_speech(monkeypatch, tmp_path):
    """The builder's check: aligned phones that leave most of the loud audio unlabelled reject the clip."""
    import soundfile as sf

    sr = 16000
    t = np.arange(2 * sr) / sr
    wav = tmp_path / "p.wav"
    sf.write(wav, (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    prompt = H.Prompt("asterisk-fr", "fr", "asterisk-fr-x", "key", "bonjour", str(wav))
    job = H._Job("asterisk-fr-x_sentence0001", prompt, {})
    monkeypatch.setitem(H._WORKER, "model", None)
    monkeypatch.setattr(H, "_align", lambda *a, **k: [("B", 0.0, 0.1), ("OW", 0.1, 0.3), ("sil", 0.3, 2.0)])
    meta, expr, jaw = H._make_clip(job, H.HumanCorpusConfig(), str(tmp_path))
    assert expr is None and "cover only 15%" in meta["failed"], meta
    assert not (tmp_path / "wav").exists()
