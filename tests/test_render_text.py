"""``l2t-gs render --text``: a force-aligned transcript closes every bilabial and shapes the lips.

Measured on the shipped default model (rig output, no contact head) and the sample clip, on the
vertices the renderer would draw (the pipeline's own job and model stream, without rasterizing);
the CLI tests render a few frames of a short cut of the clip at a low frame rate.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.assets import asset_path
from l2t_gs.audio.io import load_audio
from l2t_gs.cli.main import main
from l2t_gs.cli.render import TEXT_FILE_MAX_BYTES
from l2t_gs.errors import L2TError
from l2t_gs.motion.transcript import (
    VISEME_PARAMS,
    align_transcript,
    apply_transcript,
    combine_contacts,
    transcript_contact_frames,
    transcript_tracks,
)
from l2t_gs.motion.visemes import BILABIAL, OPEN_VOWELS
from l2t_gs.pipeline import RenderConfig, _prepare
from l2t_gs.training.metrics.motion import lip_gap

FPS = 25.0
TEXT = (
    "Hello! My name is Ava. I am a talking head made of Gaussian splats, and my lips move when I speak. "
    "Press play, then bring your own voice."
)
SHORT_TEXT = "Hello! My name is Ava. I am a talking head."
SHORT_SECONDS = 3.05  # the clip's first sentence ends at 2.94 s (hello.json), silence follows


@pytest.fixture(scope="module")
def pair():
    with np.load(asset_path("head", "l2t_head.npz")) as z:
        return int(z["landmark_upper_lip_mid"][0]), int(z["landmark_lower_lip_mid"][0])


def _verts(cfg: RenderConfig, wav) -> tuple[np.ndarray, object]:
    """The vertices ``_frames`` would rasterize for ``cfg`` (same job, same model stream)."""
    torch.set_num_threads(1)
    job = _prepare(wav, cfg)
    stream = job.model.predict_stream(
        job.audio, job.neutral, style=cfg.style, fps=cfg.fps, chunk_seconds=cfg.chunk_seconds,
        transcript=job.transcript,
    )  # fmt: skip
    verts = torch.cat([c.cpu() for c in stream])[: job.n_frames].numpy()
    return verts, job


@pytest.fixture(scope="module")
def sample(pair):
    wav = asset_path("samples", "hello.wav")
    plain, job0 = _verts(RenderConfig(fps=FPS), wav)
    text, job = _verts(RenderConfig(fps=FPS, text=TEXT), wav)
    # the same clip in short chunks: equal to the whole-clip result (bounded-memory streaming)
    chunked, _ = _verts(RenderConfig(fps=FPS, text=TEXT, chunk_seconds=1.3), wav)
    segs = list(job.transcript.segments)
    return {
        "plain": lip_gap(plain, pair) * 1000,
        "text": lip_gap(text, pair) * 1000,
        "verts_plain": plain,
        "verts_text": text,
        "chunked": chunked,
        "segments": segs,
        "job0": job0,
    }


def _near(seg, n: int) -> np.ndarray:
    """Frames inside the segment, or within half a frame of it (a segment can fall between frames)."""
    t = np.arange(n) / FPS
    return np.nonzero(np.abs(t - np.clip(t, seg.start, seg.end)) <= 0.5 / FPS + 1e-9)[0]


def test_every_bilabial_of_the_transcript_closes(sample):
    gap, plain, segs = sample["text"], sample["plain"], sample["segments"]
    bil = [s for s in segs if s.phone in BILABIAL]
    words = TEXT.lower()
    assert len(bil) >= words.count("m") + words.count("p") - 1  # my name ... am ... made ... lips move ...
    worst = [float(gap[_near(s, len(gap))].min()) for s in bil]
    assert max(worst) < 1.0, list(zip([s.phone for s in bil], worst, strict=True))
    # without the transcript the model alone misses some of them (the reason for --text)
    assert max(float(plain[_near(s, len(plain))].min()) for s in bil) > 2.0


def test_open_vowels_stay_open(sample):
    gap, plain, segs = sample["text"], sample["plain"], sample["segments"]
    vowels = [s for s in segs if s.phone in OPEN_VOWELS and s.end - s.start >= 0.1]
    assert len(vowels) >= 8
    opened = np.array([gap[_near(s, len(gap))].max() for s in vowels])
    assert opened.min() >= 5.0, opened
    before = np.array([plain[_near(s, len(plain))].max() for s in vowels])
    assert np.median(opened) >= 0.9 * np.median(before)


def test_streaming_in_chunks_equals_the_whole_clip(sample):
    np.testing.assert_allclose(sample["chunked"], sample["verts_text"], atol=1e-5)


def test_without_text_the_motion_is_the_models(sample):
    job = sample["job0"]
    assert job.transcript is None
    ref = job.model.predict(job.audio, job.neutral, fps=FPS).numpy()
    assert np.array_equal(ref, sample["verts_plain"])  # bit-identical: the old code path


def test_apply_transcript_blends_only_lip_shape_and_keeps_the_jaw():
    torch.set_num_threads(1)
    from l2t_gs.rig import load_head_model

    head = load_head_model("builtin")
    names = list(head.expr_names)
    segs = [("sil", 0.0, 0.2), ("uw", 0.2, 0.6), ("sil", 0.6, 0.8)]  # no contacts: only the blend acts
    tr = transcript_tracks(segs, FPS, 20, head)
    rng = np.random.default_rng(0)
    params = {"expr": rng.normal(0, 0.1, (20, 12)).astype(np.float32), "jaw_pose": np.zeros((20, 3), np.float32)}
    params["jaw_pose"][:, 0] = 0.1
    out = apply_transcript(params, tr, None, head, weight=0.6)
    cols = [names.index(p) for p in VISEME_PARAMS]
    want = 0.4 * params["expr"][:, cols] + 0.6 * tr.visemes
    np.testing.assert_allclose(out["expr"][:, cols], want, atol=1e-6)
    other = [i for i in range(12) if i not in cols]
    np.testing.assert_array_equal(out["expr"][:, other], params["expr"][:, other])
    np.testing.assert_array_equal(out["jaw_pose"], params["jaw_pose"])
    assert out["expr"][10, names.index("pucker")] > params["expr"][10, names.index("pucker")] + 0.2  # rounded uw
    assert not out["contacts"].any()


def test_contact_frames_and_combination():
    t = np.array([[0, 0], [0.3, 0], [0.8, 0], [1, 0], [1, 0], [0.6, 0], [0, 0], [0.4, 0], [0.7, 0], [0.2, 0]])
    on = transcript_contact_frames(t)[:, 0]
    assert on.tolist() == [False, False, False, True, True, False, False, False, True, False]  # cores, peaks
    model = np.full((10, 2), 0.2, np.float32)
    model[0, 1] = 0.9
    c = combine_contacts(model, t)
    assert c[3, 0] == 1 and c[2, 0] == pytest.approx(0.2) and c[0, 1] == pytest.approx(0.9)
    assert combine_contacts(None, t)[:, 0].tolist() == on.astype(np.float32).tolist()


@pytest.mark.parametrize("text", ["", "   ", "?!", "hello", "xqzt blorf"])
def test_unalignable_transcripts_raise(text):
    audio = load_audio(asset_path("samples", "hello.wav"), sr=16000)
    with pytest.raises(L2TError) as exc:
        align_transcript(audio, text)
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def short_wav(tmp_path_factory):
    audio = load_audio(asset_path("samples", "hello.wav"), sr=16000)
    path = tmp_path_factory.mktemp("short") / "short.wav"
    sf.write(path, audio[: int(SHORT_SECONDS * 16000)], 16000)
    return path


def _run(capsys, *argv) -> tuple[int, list[str]]:
    torch.set_num_threads(1)
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "text", ["", "Hello", "xqzt blorf", "the cat sat on the mat while the dog ran far away in the warm sun"]
)
def test_cli_unalignable_text_one_line_exit_1_no_output(tmp_path, short_wav, capsys, text):
    out, mesh = tmp_path / "o.mp4", tmp_path / "m.npz"
    code, err = _run(
        capsys, "render", short_wav, "-o", out, "--size", "16", "--fps", "5", "--quiet", "--export-mesh", mesh,
        "--text", text,
    )  # fmt: skip
    assert code == 1 and len(err) == 1 and err[0].startswith("l2t-gs: error:"), err
    assert list(tmp_path.iterdir()) == []  # no output, no temporary leftovers


def test_cli_text_file_renders_with_closures(tmp_path, short_wav, capsys, pair):
    tf = tmp_path / "t.txt"
    tf.write_text("\ufeff" + SHORT_TEXT + "\n", encoding="utf-8")
    runs = {}
    still = ["--head-motion", "still", "--blinks", "off"]  # the speech motion alone (no head motion, blinks)
    for name, extra in (("plain", still), ("text", [*still, "--text-file", tf])):
        out, mesh = tmp_path / f"{name}.mp4", tmp_path / f"{name}.npz"
        code, err = _run(
            capsys, "render", short_wav, "-o", out, "--size", "16", "--fps", "5", "--quiet", "--export-mesh",
            mesh, *extra,
        )  # fmt: skip
        assert code == 0, err
        assert out.is_file()
        with np.load(mesh) as z:
            runs[name] = z["vertices"]
    assert runs["plain"].shape == runs["text"].shape == (15, 7931, 3)
    assert not np.array_equal(runs["plain"], runs["text"])
    # the exported motion without --text is the model's own (bit-identical to its prediction)
    cfg = RenderConfig(fps=5.0)
    job = _prepare(short_wav, cfg)
    ref = job.model.predict(job.audio, job.neutral, fps=5.0).numpy()
    assert np.array_equal(ref, runs["plain"])
    # at 5 fps a closure still lands on the frame nearest each bilabial
    segs = [json_seg for json_seg in json.loads(asset_path("samples", "hello.json").read_text())]
    gap = lip_gap(runs["text"], pair) * 1000
    for s in segs:
        if s["phone"] in BILABIAL and s["end"] < SHORT_SECONDS:
            i = int(round((s["start"] + s["end"]) / 2 * 5))
            assert gap[max(0, i - 1) : i + 2].min() < 1.0, (s, gap)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "not found"),
        (b"\xff\xfe\x00bad", "not UTF-8"),
        (b"x" * (TEXT_FILE_MAX_BYTES + 1), "too large"),
        ("dir", "not a file"),
    ],
)
def test_cli_text_file_errors(tmp_path, short_wav, capsys, content, needle):
    tf = tmp_path / "t.txt"
    if content == "dir":
        tf.mkdir()
    elif content is not None:
        tf.write_bytes(content)
    out = tmp_path / "o.mp4"
    code, err = _run(capsys, "render", short_wav, "-o", out, "--size", "16", "--quiet", "--text-file", tf)
    assert code == 1 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_cli_text_and_text_file_are_exclusive(tmp_path, short_wav, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["render", str(short_wav), "-o", str(tmp_path / "o.mp4"), "--text", "a", "--text-file", "b"])
    assert exc.value.code == 2
    assert not (tmp_path / "o.mp4").exists()


def test_vertex_model_says_so_in_one_line(tmp_path, short_wav, capsys):
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import save_checkpoint

    cfg = Audio2MeshConfig(fps=30, enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2, n_layers=1, n_mels=20)
    torch.manual_seed(0)
    path = tmp_path / "vert.pt"
    save_checkpoint(path, Audio2Mesh(cfg, ["a"], 7931))
    out = tmp_path / "o.mp4"
    code, err = _run(capsys, "render", short_wav, "-o", out, "--model", path, "--size", "16", "--text", SHORT_TEXT)
    assert code == 1 and len(err) == 1 and "predicts vertices" in err[0], err
    assert not out.exists()


def test_contact_head_model_combines_its_contacts_with_the_transcript():
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.rig import FlameRig, load_head_model

    torch.set_num_threads(1)
    hm = load_head_model("builtin")
    cfg = Audio2MeshConfig(
        fps=30, enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2, n_layers=1, n_mels=20, output="rig",
        rig_expr=12, contact_head=True,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Audio2Mesh(cfg, ["a"], hm.n_verts, head=hm).eval()
    with torch.no_grad():  # the model's own labiodental contact is always on, its bilabial never
        model.decoder.contact_out.bias.copy_(torch.tensor([-9.0, 9.0]))
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.normal(size=int(1.5 * 16000))).astype(np.float32)
    segs = [("sil", 0.0, 0.2), ("aa", 0.2, 0.5), ("m", 0.5, 0.6), ("aa", 0.6, 1.0), ("sil", 1.0, 1.5)]
    n = model.n_frames(audio.size, 30.0)
    tr = transcript_tracks(segs, 30.0, n, hm)
    params = model.predict_params(audio, fps=30.0, transcript=tr)
    c = params["contacts"].numpy()
    assert (c[:, 1] > 0.99).all()  # the model's
    t = np.arange(n) / 30.0
    inside = (t >= 0.5) & (t <= 0.6)
    assert (c[inside, 0] == 1).all() and (c[t < 0.4, 0] < 0.01).all()  # the transcript's
    rig = FlameRig(hm)
    neutral = rig(expr=torch.zeros(1, hm.n_expr))[0]
    whole = model.predict(audio, neutral, fps=30.0, transcript=tr)
    chunked = model.predict(audio, neutral, fps=30.0, transcript=tr, chunk_seconds=0.3)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    with np.load(asset_path("head", "l2t_head.npz")) as z:
        pair = int(z["landmark_upper_lip_mid"][0]), int(z["landmark_lower_lip_mid"][0])
    assert lip_gap(whole.numpy(), pair)[inside].max() * 1000 < 1.0
    with pytest.raises(L2TError, match="frames"):
        model.predict_params(audio, fps=25.0, transcript=tr)
