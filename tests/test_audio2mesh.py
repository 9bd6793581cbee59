"""Audio2Mesh: features, encoders, decoder pieces, chunked/streaming inference, checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from l2t_gs.audio.features import LogMel, mel_filterbank
from l2t_gs.errors import L2TError
from l2t_gs.models.audio2mesh import (
    Audio2Mesh,
    Audio2MeshConfig,
    PeriodicPositionalEncoding,
    biased_causal_bias,
)
from l2t_gs.models.checkpoint import load_model, save_checkpoint
from l2t_gs.models.encoders import SAMPLE_RATE, alibi_slopes, align_features

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = {"d_model": 32, "n_layers": 2, "enc_dim": 32, "enc_layers": 2, "dropout": 0.0}


def tiny_model(n_verts: int = 40, seed: int = 0, **overrides) -> Audio2Mesh:
    torch.manual_seed(seed)
    model = Audio2Mesh(Audio2MeshConfig(**(TINY | overrides)), ["spk_a", "spk_b"], n_verts)
    for p in model.decoder.out.parameters():  # the trained-from-scratch output layer starts at zero
        torch.nn.init.normal_(p, std=0.05)
    return model.eval()


def speechy(seconds: float, seed: int = 0) -> torch.Tensor:
    """Amplitude-modulated harmonics plus noise: audio whose features change over time."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    env = 0.5 + 0.5 * torch.sin(2 * math.pi * 3.1 * t)
    x = sum(torch.sin(2 * math.pi * f * t) / (k + 1) for k, f in enumerate((180.0, 360.0, 720.0, 1500.0)))
    return (0.2 * env * x + 0.01 * torch.randn(t.shape, generator=g)).float()


def max_join_jump(frames: torch.Tensor, joins: list[int]) -> tuple[float, float]:
    """Largest frame-to-frame change at the given join frames, and the 99th percentile elsewhere."""
    step = (frames[1:] - frames[:-1]).flatten(1).norm(dim=1)  # step[i]: frame i -> i + 1
    at = torch.tensor([step[j - 1] for j in joins if 0 < j < frames.shape[0]])
    mask = torch.ones_like(step, dtype=torch.bool)
    mask[[j - 1 for j in joins if 0 < j < frames.shape[0]]] = False
    return float(at.max()), float(step[mask].quantile(0.99))


# --------------------------------------------------------------------------- features
def test_mel_filterbank_and_log_mel():
    fb = mel_filterbank(16000, 400, 80)
    assert fb.shape == (80, 201) and bool((fb >= 0).all())
    peaks = fb.argmax(1)
    assert bool((peaks[1:] >= peaks[:-1]).all())  # centres increase with the band index
    mel = LogMel()
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(16000) / 16000)
    out = mel(tone)
    assert out.shape == (80, 16000 // 160 + 1)
    band = int(out[:, 10:-10].mean(1).argmax())
    centre_hz = float(peaks[band]) * 16000 / 400
    assert abs(centre_hz - 1000) < 80
    assert mel(torch.stack([tone, tone])).shape == (2, 80, 101)


def test_log_mel_of_a_hop_aligned_window_matches_the_whole_signal():
    mel = LogMel()
    x = speechy(2.0)
    whole = mel(x)
    start = 160 * 40  # a window starting on a hop boundary
    part = mel(x[start : start + 16000])
    assert torch.allclose(part[:, 3:-3], whole[:, 40 + 3 : 40 + part.shape[1] - 3], atol=1e-4)


# --------------------------------------------------------------------------- decoder pieces
def test_alibi_slopes_and_faceformer_bias():
    assert alibi_slopes(4).tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256]
    assert len(alibi_slopes(6)) == 6
    slopes, n, period, window = alibi_slopes(4), 12, 3, 7
    bias = biased_causal_bias(slopes, n, period, window)
    for h in range(4):
        for i in range(n):
            for j in range(n):
                want = -float(slopes[h]) * ((i - j) // period) if 0 <= i - j < window else -math.inf
                assert float(bias[h, i, j]) == pytest.approx(want), (h, i, j)


def test_periodic_positional_encoding_is_periodic_and_offsettable():
    ppe = PeriodicPositionalEncoding(16, 30)
    x = torch.zeros(1, 95, 16)
    y = ppe(x)
    assert torch.equal(y[0, :30], y[0, 30:60]) and not torch.equal(y[0, 0], y[0, 1])
    assert torch.equal(ppe(x[:, :20], offset=37)[0], y[0, 37:57])


def test_align_features_interpolates_in_time_and_is_translation_invariant():
    rate, n = 50.0, 200
    ramp = torch.arange(n, dtype=torch.float32)[None, :, None] / rate  # feature value = its time (s)
    out = align_features(ramp, rate, 0.0, 120, 30.0)
    assert out.shape == (1, 120, 1, 1)
    assert torch.allclose(out[0, :, 0, 0], torch.arange(120) / 30.0, atol=1e-5)
    two = align_features(ramp, rate, 0.0, 100, 25.0, per_frame=2)[0, :, :, 0]
    assert torch.allclose(two[10], torch.tensor([10 / 25 - 0.01, 10 / 25 + 0.01]), atol=1e-5)
    shifted = align_features(ramp[:, 50:], rate, 0.0, 30, 30.0)  # window starting at 1 s = frame 30
    assert torch.allclose(shifted[0, :, 0, 0], out[0, 30:60, 0, 0], atol=1e-5)
    clamped = align_features(ramp, rate, 0.0, 200, 30.0)
    assert float(clamped[0, -1, 0, 0]) == pytest.approx((n - 1) / rate)


def test_config_validation():
    with pytest.raises(L2TError, match="unknown key"):
        Audio2MeshConfig.from_dict({"d_modle": 3})
    with pytest.raises(L2TError, match="must be int"):
        Audio2MeshConfig.from_dict({"d_model": "64"})
    with pytest.raises(L2TError, match="autoregressive"):
        Audio2MeshConfig.from_dict({"decoder": "ar", "output": "rig"})
    with pytest.raises(L2TError, match="divisible"):
        Audio2MeshConfig.from_dict({"d_model": 30, "n_heads": 4})
    assert Audio2MeshConfig.from_dict({"context_s": 2}).context_s == 2.0


# --------------------------------------------------------------------------- inference
def test_forward_shapes_and_zero_init_predicts_the_template():
    torch.manual_seed(0)
    model = Audio2Mesh(Audio2MeshConfig(**TINY), ["a"], 30)
    tmpl = torch.randn(2, 30, 3)
    out = model(speechy(1.0).repeat(2, 1), 30, torch.tensor([0, -1]), tmpl)
    assert out["vertices"].shape == (2, 30, 30, 3) and out["raw"].shape == (2, 30, 90)
    assert torch.equal(out["vertices"], tmpl[:, None].expand(-1, 30, -1, -1))


def test_chunked_inference_equals_whole_clip_builtin_encoder():
    model = tiny_model()
    audio, tmpl = speechy(5.3), torch.randn(40, 3) * 0.1
    whole = model.predict(audio, tmpl, style="spk_b", chunk_seconds=100.0)
    assert whole.shape == (round(5.3 * 30), 40, 3)
    with torch.no_grad():
        fwd = model(audio[None], whole.shape[0], torch.tensor([1]), tmpl[None])["vertices"][0]
    assert torch.allclose(whole, fwd, atol=1e-5)
    for chunk in (0.7, 2.2):
        chunked = model.predict(audio, tmpl, style=1, chunk_seconds=chunk)
        assert torch.allclose(chunked, whole, atol=1e-4), chunk  # finite receptive field: exact, no joins


def test_chunked_inference_of_a_non_grid_fps_stays_close():
    model = tiny_model(fps=29.97)
    audio, tmpl = speechy(4.0), torch.zeros(40, 3)
    whole = model.predict(audio, tmpl, chunk_seconds=100.0)
    chunked = model.predict(audio, tmpl, chunk_seconds=1.0)
    assert chunked.shape == whole.shape
    assert float((chunked - whole).abs().max()) < 0.05 * float(whole.abs().max())


def test_stream_concatenates_to_predict_and_memory_is_bounded():
    model = tiny_model()
    audio, tmpl = speechy(20.0), torch.zeros(40, 3)
    seen: list[int] = []
    enc_forward = model.encoder.forward
    model.encoder.forward = lambda a: (seen.append(a.shape[-1]), enc_forward(a))[1]  # type: ignore[method-assign]
    chunks = list(model.predict_stream(audio, tmpl, chunk_seconds=2.0))
    assert len(chunks) == 10 and all(c.shape[1:] == (40, 3) for c in chunks)
    ctx = model.encoder.context_s
    assert max(seen) <= (2.0 + 2 * ctx + 0.2 + 0.2) * SAMPLE_RATE  # windows never grow with the clip
    model.encoder.forward = enc_forward  # type: ignore[method-assign]
    assert torch.allclose(torch.cat(chunks), model.predict(audio, tmpl, chunk_seconds=2.0))


def test_autoregressive_kv_cache_matches_teacher_forcing_on_its_own_output():
    model = tiny_model(decoder="ar")
    audio, tmpl = speechy(3.0), torch.randn(40, 3) * 0.1
    whole = model.predict(audio, tmpl, style=0, chunk_seconds=100.0)
    with torch.no_grad():
        tf = model(audio[None], whole.shape[0], torch.tensor([0]), tmpl[None], target=whole[None])["vertices"][0]
    assert torch.allclose(tf, whole, atol=1e-5)
    assert torch.allclose(model.predict(audio, tmpl, style=0, chunk_seconds=0.7), whole, atol=1e-4)


def test_autoregressive_window_is_bounded():
    model = tiny_model(decoder="ar", context_s=0.5)
    state: dict = {}
    feats = torch.randn(1, 40, 1, model.encoder.out_dim)
    style = model.decoder.style_vector(torch.tensor([0]))
    with torch.no_grad():
        model.decoder.decode_incremental(feats, style, 0, state)
    assert all(c["k"].shape[2] == model.decoder.window - 1 for c in state["caches"])


def test_output_fps_resampling():
    model = tiny_model()
    audio, tmpl = speechy(3.0), torch.zeros(40, 3)
    base = model.predict(audio, tmpl)
    up = model.predict(audio, tmpl, fps=60, chunk_seconds=1.0)
    assert up.shape[0] == 180
    assert torch.allclose(up[0::2], base, atol=1e-5)
    assert torch.allclose(up[1:-1:2], 0.5 * (base[:-1] + base[1:]), atol=1e-5)
    down = model.predict(audio, tmpl, fps=25)
    assert down.shape[0] == 75 and torch.allclose(down[0], base[0]) and torch.allclose(down[5], base[6], atol=1e-5)


def test_style_changes_the_output_and_bad_inputs_are_user_errors():
    model = tiny_model()
    audio, tmpl = speechy(1.0), torch.zeros(40, 3)
    a, b = model.predict(audio, tmpl, style="spk_a"), model.predict(audio, tmpl, style="spk_b")
    assert not torch.allclose(a, b)
    assert model.predict(audio, tmpl, style=None).shape == a.shape
    assert model.predict(audio.numpy(), tmpl.numpy(), style=np.int64(1)).shape == a.shape
    with pytest.raises(L2TError, match="unknown style"):
        model.predict(audio, tmpl, style="nobody")
    with pytest.raises(L2TError, match="wrong topology"):
        model.predict(audio, torch.zeros(41, 3))
    with pytest.raises(L2TError, match="empty"):
        model.predict(torch.zeros(0), tmpl)
    with pytest.raises(L2TError, match="mono"):
        model.predict(torch.zeros(2, 100), tmpl)
    with pytest.raises(L2TError, match="NaN"):
        model.predict(torch.full((1000,), float("nan")), tmpl)
    assert model.predict(torch.zeros(100), tmpl).shape == (1, 40, 3)  # shorter than a frame


# --------------------------------------------------------------------------- rig output
@pytest.fixture()
def small_head(tmp_path):
    from flame_factory import make_head_model

    from l2t_gs.rig import save_head_model

    head = make_head_model(n_verts=50, n_expr=6, seed=3)
    return save_head_model(head, tmp_path / "head.npz")


def test_rig_output_decodes_through_the_flame_rig_and_round_trips(small_head, tmp_path):
    from l2t_gs.rig import FlameRig, load_head_model

    model = tiny_model(n_verts=50, output="rig", head=str(small_head), rig_expr=4)
    assert model.decoder.out_dim == 4 + 3
    audio, tmpl = speechy(2.0), torch.randn(50, 3) * 0.01
    verts = model.predict(audio, tmpl)
    params = model.predict_params(audio)
    assert params["expr"].shape == (60, 6) and params["jaw_pose"].shape == (60, 3)
    assert bool((params["expr"][:, 4:] == 0).all())
    rig = FlameRig(load_head_model(small_head))
    ref = rig(expr=params["expr"], jaw_pose=params["jaw_pose"]) - rig()[0] + tmpl
    assert torch.allclose(verts, ref, atol=1e-5)
    save_checkpoint(tmp_path / "rig.pt", model)
    small_head.unlink()  # the checkpoint carries its head model
    again = load_model(tmp_path / "rig.pt")
    assert again.head.n_verts == 50 and torch.allclose(again.predict(audio, tmpl), verts, atol=1e-6)
    with pytest.raises(L2TError, match="output = 'rig'"):
        tiny_model().predict_params(audio)


def test_expr_jaw_rig_equals_the_flame_rig_with_gradients(small_head):
    from l2t_gs.rig import ExprJawRig, FlameRig, load_head_model

    rig = FlameRig(load_head_model(small_head, dtype=torch.float64))
    fast = ExprJawRig(rig, 4)
    g = torch.Generator().manual_seed(0)
    expr = torch.rand(7, 4, generator=g, dtype=torch.float64)
    jaw = 0.3 * torch.randn(7, 3, generator=g, dtype=torch.float64)
    coeffs = torch.cat([expr, jaw], 1).requires_grad_()
    weights = torch.randn(7, 50, 3, generator=g, dtype=torch.float64)
    out = fast(coeffs)
    (out * weights).sum().backward()
    grad_fast, coeffs.grad = coeffs.grad.clone(), None
    ref = rig(expr=coeffs[:, :4], jaw_pose=coeffs[:, 4:]) - rig()
    (ref * weights).sum().backward()
    assert torch.allclose(out, ref, atol=1e-12)
    assert torch.allclose(grad_fast, coeffs.grad, atol=1e-10)
    # a vertex subset (what the exact lip closure skins) is the same rows of the full result
    ids = [31, 2, 17]
    sub = ExprJawRig(rig, 4, vertex_ids=ids)(coeffs.detach())
    assert sub.shape == (7, 3, 3) and torch.allclose(sub, ref.detach()[:, ids], atol=1e-12)
    assert torch.allclose(sub + ExprJawRig(rig, 4, ids).v_template, rig(expr=expr, jaw_pose=jaw)[:, ids], atol=1e-12)


def test_rig_output_needs_the_heads_topology(small_head):
    with pytest.raises(L2TError, match="rig output needs meshes of the head's topology"):
        tiny_model(n_verts=49, output="rig", head=str(small_head))


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_and_run_dir(tmp_path):
    model = tiny_model()
    audio, tmpl = speechy(1.5), torch.randn(40, 3)
    ref = model.predict(audio, tmpl, style="spk_b")
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(run / "last.pt", model, train={"step": 3})
    loaded = load_model(run)
    assert loaded.subjects == ["spk_a", "spk_b"] and loaded.n_verts == 40 and loaded.fps == 30.0
    assert loaded.config.d_model == 32 and not loaded.training
    assert torch.equal(loaded.predict(audio, tmpl, style="spk_b"), ref)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign", "mismatch", "future"])
def test_bad_checkpoints_are_one_line_user_errors(tmp_path, damage):
    path = tmp_path / "model.pt"
    save_checkpoint(path, tiny_model())
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        ck = torch.load(path, weights_only=True)
        if damage == "foreign":
            ck = {"state_dict": ck["model"]}
        elif damage == "mismatch":
            ck["n_verts"] = 41
        else:
            ck["format_version"] = 99
        torch.save(ck, path)
    with pytest.raises(L2TError) as err:
        load_model(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    with pytest.raises(L2TError, match="not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(L2TError, match="no checkpoint"):
        load_model(tmp_path / "empty_run")


# --------------------------------------------------------------------------- transformers encoders
@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    tiny = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": (32,) * 7,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
    }
    out = {}
    for name, cfg_cls, model_cls in (
        ("wav2vec2", transformers.Wav2Vec2Config, transformers.Wav2Vec2Model),
        ("hubert", transformers.HubertConfig, transformers.HubertModel),
    ):
        torch.manual_seed(0)
        model_cls(cfg_cls(**tiny)).save_pretrained(root / name)
        out[name] = root / name
    return out


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_transformers_encoder_from_a_local_dir(hf_dirs, kind, tmp_path):
    model = tiny_model(encoder=kind, encoder_path=str(hf_dirs[kind]))
    enc = model.encoder
    assert enc.frame_rate == 50.0 and enc.out_dim == 32 and enc.stride_samples == 320
    assert all(not p.requires_grad for p in enc.model.feature_extractor.parameters())
    assert all(p.requires_grad for p in enc.model.encoder.parameters())
    assert model.config.encoder_normalize is (kind == "wav2vec2")  # no preprocessor_config.json: per-model default
    audio, tmpl = speechy(4.5), torch.zeros(40, 3)
    with torch.no_grad():
        assert enc(audio[None]).shape[1] == pytest.approx(4.5 * 50, abs=2)
    whole = model.predict(audio, tmpl, chunk_seconds=100.0)
    chunked = model.predict(audio, tmpl, chunk_seconds=2.0)
    # global self-attention: chunks approximate the whole clip; cross-fades keep the joins smooth
    assert float((chunked - whole).abs().mean()) < 0.1 * float(whole.abs().mean())
    jump, typical = max_join_jump(chunked, [60, 120])  # 2 s chunks at 30 fps
    assert jump <= 3.0 * typical
    save_checkpoint(tmp_path / "hf.pt", model)
    loaded = load_model(tmp_path / "hf.pt")  # rebuilt from the stored config, not from the directory
    assert torch.allclose(loaded.predict(audio, tmpl, chunk_seconds=2.0), chunked, atol=1e-5)


def test_transformers_encoder_errors(tmp_path, hf_dirs):
    with pytest.raises(L2TError, match="needs encoder_path"):
        tiny_model(encoder="wav2vec2")
    with pytest.raises(L2TError, match="cannot load audio encoder"):
        tiny_model(encoder="wav2vec2", encoder_path=str(tmp_path / "nowhere"))
    with pytest.raises(L2TError, match="holds a 'hubert' model"):
        tiny_model(encoder="wav2vec2", encoder_path=str(hf_dirs["hubert"]))


def test_a_stream_left_unfinished_leaves_the_caller_out_of_inference_mode():
    """predict_stream computes chunks in inference mode but must not hold it across a yield: a caller that
    stops early (a renderer aborting, a test taking one chunk) would otherwise stay in inference mode and
    lose autograd for everything after it."""
    model = tiny_model()
    stream = model.predict_stream(speechy(3.0), torch.zeros(40, 3), chunk_seconds=1.0)
    first = next(stream)
    assert first.is_inference()  # the frames themselves come from inference mode
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    x = torch.ones(2, requires_grad=True)
    assert (x * 2).sum().requires_grad  # autograd works between chunks
    del stream
