"""Demo layouts of ``l2t-gs render``: grid of cameras, side-by-side comparisons, waveform and caption
strips; each tile found on the composed pixels where it belongs, and the MP4's audio as long as its video."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.cli.main import main
from l2t_gs.io.video import probe_video
from l2t_gs.pipeline import RenderConfig, parse_compare_item, render_frames
from l2t_gs.render.layout import CURSOR, WAVE_PLAYED, Caption, Layout, waveform_envelope

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, FPS = 32, 10.0


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("layout") / "speech.wav"
    t = np.arange(int(0.2 * 16000)) / 16000
    sf.write(
        path, (0.3 * np.sin(2 * np.pi * 170 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32), 16000
    )
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import save_checkpoint

    cfg = Audio2MeshConfig(fps=FPS, enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2, n_layers=1,
                           n_mels=40, output="rig")  # fmt: skip
    torch.manual_seed(0)
    model = Audio2Mesh(cfg, ["spk_a"], 7931)
    with torch.no_grad():
        model.decoder.out.weight.normal_(0.0, 0.5)  # moves (the output layer starts at zero)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, model)
    return path


@pytest.fixture(scope="module")
def open_jaw(tmp_path_factory):
    """A motion file: the jaw opening over the clip (rig coefficients)."""
    path = tmp_path_factory.mktemp("motion") / "open_jaw.npz"
    jaw = np.zeros((2, 3), np.float32)
    jaw[:, 0] = [0.15, 0.4]
    np.savez(path, jaw_pose=jaw, fps=FPS)
    return path


def _find(frame: np.ndarray, tile: np.ndarray) -> list[tuple[int, int]]:
    """Every (y, x) where ``tile`` appears exactly in ``frame`` (brute force over all offsets)."""
    h, w = tile.shape[:2]
    hits = []
    for y in range(frame.shape[0] - h + 1):
        rows = frame[y : y + h]
        for x in range(frame.shape[1] - w + 1):
            if np.array_equal(rows[:, x : x + w], tile):
                hits.append((y, x))
    return hits


def _single(wav, **kw) -> list[np.ndarray]:
    return list(render_frames(wav, RenderConfig(size=SIZE, fps=FPS, device="cpu", **kw)))


def test_grid_puts_each_camera_in_its_column(wav, model_path):
    cams = ("front", "three-quarter", "side")
    grid = _single(wav, model=str(model_path), layout="grid", cameras=cams)
    singles = {c: _single(wav, model=str(model_path), camera=c) for c in cams}
    assert len(grid) == 2 and grid[0].shape[1] == 3 * SIZE
    for f, frame in enumerate(grid):
        places = [_find(frame, singles[c][f]) for c in cams]
        assert all(len(p) == 1 for p in places), places  # each view once, and the views differ
        (y0, _), (y1, _), (y2, _) = (p[0] for p in places)
        assert y0 == y1 == y2 > 0  # one row, under a label strip
        assert [p[0][1] for p in places] == [0, SIZE, 2 * SIZE]  # front, three-quarter, side from the left
        label = frame[:y0]
        assert (label < 128).any() and (label.reshape(-1, 3) == 255).mean() > 0.5  # dark text on white


def test_compare_side_by_side_model_motion_and_avatar(wav, model_path, open_jaw, tmp_path):
    items = (f"model={model_path}", f"jaw=motion:{open_jaw}", "again=avatar:default")  # the last: base model
    both = _single(wav, model=str(model_path), compare=items, waveform=True)
    by_model = _single(wav, model=str(model_path))
    by_motion = _single(wav, motion=str(open_jaw))
    assert not np.array_equal(by_model[1], by_motion[1])
    for f, frame in enumerate(both):
        model_at, motion_at = _find(frame, by_model[f]), _find(frame, by_motion[f])
        y = motion_at[0][0]
        assert y > 0 and motion_at == [(y, SIZE)] and model_at == [(y, 0), (y, 2 * SIZE)]  # in order, under labels
    assert both[0].shape[1] == 3 * SIZE and both[0].shape[0] > SIZE + 8  # labels and the waveform strip
    assert parse_compare_item(f"model={model_path}") == ("model", "model", str(model_path))
    assert parse_compare_item(str(open_jaw)) == ("open_jaw", "motion", str(open_jaw))
    assert parse_compare_item("default") == ("default", "avatar", "default")
    assert parse_compare_item(f"{tmp_path}/x.pt")[1:] == ("model", f"{tmp_path}/x.pt")


def test_waveform_cursor_and_captions():
    audio = np.sin(np.linspace(0, 60, 8000)).astype(np.float32) * np.linspace(0, 1, 8000, dtype=np.float32)
    caps = [Caption("hello", 0.05, 0.2), Caption("world", 0.3, 0.45)]
    lay = Layout(1, 2, 32, ["a", "b"], audio=audio, seconds=0.5, captions=caps)
    tiles = [np.full((32, 32, 3), 7, np.uint8), np.full((32, 32, 3), 9, np.uint8)]
    y_wave = lay.height - lay.wave_h
    y_cap = y_wave - lay.caption_h
    cursors = []
    for t in (0.0, 0.1, 0.25, 0.4):
        frame = lay.compose(tiles, t)
        assert frame.shape == (lay.height, 64, 3)
        y, x = lay.tile_origin(1)
        assert (frame[y : y + 32, x : x + 32] == 9).all() and (frame[y : y + 32, :32] == 7).all()
        strip = frame[y_wave:]
        red = np.where((strip == CURSOR).all(-1).all(0))[0]
        cursors.append(int(red.max()))
        played = (strip[:, : red.min()] == WAVE_PLAYED).all(-1).any(0)
        assert played.all() or red.min() == 0  # every column left of the cursor has played samples
        cap = frame[y_cap:y_wave].astype(int)
        hi = ((cap[..., 0] - cap[..., 1] > 60) & (cap[..., 0] > 120)).sum()  # red (antialiased) text pixels
        assert (hi > 0) == (t in (0.1, 0.4)), t  # a word is highlighted while spoken, not in the pause
    assert cursors == [0, round(0.1 / 0.5 * 64), round(0.25 / 0.5 * 64), round(0.4 / 0.5 * 64)]
    lo, hi = waveform_envelope(np.array([0, 1, -2, 3], np.float32), 2)
    assert lo.tolist() == [0, -2] and hi.tolist() == [1, 3]


def test_cli_layout_mp4_keeps_audio_and_video_in_step(wav, model_path, open_jaw, tmp_path, capsys):
    caps = tmp_path / "words.json"
    caps.write_text(json.dumps([{"word": "hi", "start": 0.0, "end": 0.1}, {"word": "there", "start": 0.1, "end": 0.2}]))
    out = tmp_path / "demo.mp4"
    rc = main(["render", str(wav), "-o", str(out), "--model", str(model_path), "--size", str(SIZE), "--fps", "10",
               "--layout", "grid", "--cameras", "front,side", "--compare", str(model_path), f"jaw={open_jaw}",
               "--waveform", "--captions", str(caps), "--quiet", "--device", "cpu"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    info = probe_video(out)
    seconds = sf.info(wav).duration
    assert info["video"]["frames"] == round(seconds * FPS) and info["video"]["width"] == 2 * SIZE
    assert abs(info["audio"]["duration"] - info["video"]["frames"] / FPS) <= 1 / FPS + 0.03
    frames = _single(wav, model=str(model_path), layout="grid", cameras=("front", "side"),
                     compare=(str(model_path), f"jaw={open_jaw}"), waveform=True, captions=str(caps))  # fmt: skip
    assert info["video"]["height"] == frames[0].shape[0]
    bad = [
        (["--layout", "grid", "--cameras", "front,top"], "unknown camera"),
        (["--captions"], "needs --text"),
        (["--compare", str(tmp_path / "missing.npz"), "default"], "not found"),
        (["--compare", "default"], "two or more"),
        (["--waveform", "--export-mesh", str(tmp_path / "m.npz")], "one view"),
    ]
    for extra, message in bad:
        rc = main(["render", str(wav), "-o", str(tmp_path / "bad.mp4"), "--model", str(model_path), "--quiet",
                   "--size", str(SIZE), *extra])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert rc == 1 and message in err and "\n" not in err, (extra, err)
        assert not (tmp_path / "bad.mp4").exists()


def test_captions_from_text_are_the_aligned_words():
    """``--captions`` with ``--text``: the transcript's words, force-aligned to the shipped sample, in order."""
    from l2t_gs.assets import asset_path
    from l2t_gs.audio.io import load_audio
    from l2t_gs.pipeline import _read_captions

    text = (
        "Hello! My name is Ava. I am a talking head made of Gaussian splats, and my lips move when I speak. "
        "Press play, then bring your own voice."
    )
    audio = load_audio(asset_path("samples", "hello.wav"), sr=16000)
    caps = _read_captions(RenderConfig(text=text, captions="text"), audio)
    assert [c.text for c in caps] == text.lower().replace(",", "").replace(".", "").replace("!", "").split()
    starts = [c.start for c in caps]
    assert starts == sorted(starts) and all(c.end > c.start for c in caps) and caps[-1].end <= len(audio) / 16000
    phones = json.loads(asset_path("samples", "hello.json").read_text())
    first_m = next(p for p in phones if p["phone"] == "m")  # "my": the TTS engine's own timing of its /m/
    assert abs(caps[1].start - first_m["start"]) < 0.1
