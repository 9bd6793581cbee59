"""``l2t-gs render``: audio in, MP4 out (duration, streams, exports, bad input)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from l2t_gs.cli.main import main
from l2t_gs.io.video import probe_video


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small random-weight Audio2Mesh on the built-in head (rig output), saved as a checkpoint."""
    from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
    from l2t_gs.models.checkpoint import save_checkpoint

    cfg = Audio2MeshConfig(
        fps=30, enc_dim=32, enc_layers=1, enc_heads=2, d_model=32, n_heads=2, n_layers=1, n_mels=40, output="rig"
    )
    torch.manual_seed(0)
    model = Audio2Mesh(cfg, ["spk_a"], 7931)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(path, model)
    return path


def _speech(path, seconds=1.3, sr=22050, channels=2):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sf.write(path, np.stack([x] * channels, -1) if channels > 1 else x, sr)
    return seconds


def _run(capsys, *argv) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_render_mp4_matches_audio(tmp_path, model_path, capsys):
    wav = tmp_path / "s.wav"
    seconds = _speech(wav)
    out = tmp_path / "talk.mp4"
    mesh = tmp_path / "mesh.npz"
    plys = tmp_path / "plys"
    code, err = _run(
        capsys, "render", str(wav), "-o", str(out), "--model", str(model_path), "--size", "64", "--fps", "25",
        "--export-mesh", str(mesh), "--export-ply", str(plys), "--quiet", "--camera", "orbit",
    )  # fmt: skip
    assert code == 0, err
    info = probe_video(out)
    assert info["video"]["codec"] == "h264" and info["audio"]["codec"] == "aac"
    assert abs(info["video"]["frames"] / 25 - seconds) <= 1 / 25
    assert (info["video"]["width"], info["video"]["height"]) == (64, 64)
    with np.load(mesh) as z:
        assert z["vertices"].shape == (info["video"]["frames"], 7931, 3)
        assert z["faces"].shape[1] == 3 and float(z["fps"]) == 25
    assert len(list(plys.glob("*.ply"))) == info["video"]["frames"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.npz", "plys", "s.wav", "talk.mp4"]


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing", "not found"),
        ("notaudio", "audio"),
        ("empty", "audio"),
        ("avatar", "avatar"),
        ("outdir", "does not exist"),
        ("topology", "topology"),
    ],
)
def test_bad_input_one_line_no_output(tmp_path, model_path, capsys, case, needle):
    wav = tmp_path / "s.wav"
    _speech(wav, 0.5)
    args = ["render", str(wav), "-o", str(tmp_path / "o.mp4"), "--model", str(model_path), "--size", "32", "--quiet"]
    if case == "missing":
        args[1] = str(tmp_path / "nope.wav")
    elif case == "notaudio":
        (tmp_path / "x.wav").write_text("hello, not audio")
        args[1] = str(tmp_path / "x.wav")
    elif case == "empty":
        sf.write(tmp_path / "e.wav", np.zeros(0, np.float32), 16000)
        args[1] = str(tmp_path / "e.wav")
    elif case == "avatar":
        args += ["--avatar", "no-such-avatar"]
    elif case == "outdir":
        args[3] = str(tmp_path / "nodir" / "o.mp4")
    elif case == "topology":
        from l2t_gs.models.audio2mesh import Audio2Mesh, Audio2MeshConfig
        from l2t_gs.models.checkpoint import save_checkpoint

        cfg = Audio2MeshConfig(fps=30, enc_dim=32, enc_layers=1, enc_heads=2, d_model=32, n_heads=2, n_layers=1)
        save_checkpoint(tmp_path / "m5023.pt", Audio2Mesh(cfg, ["a"], 5023))
        args[5] = str(tmp_path / "m5023.pt")
    before = set(tmp_path.iterdir())
    code, err = _run(capsys, *args)
    assert code == 1 and len(err) == 1 and needle in err[0].lower(), err
    assert set(tmp_path.iterdir()) == before  # nothing written, no temp files
