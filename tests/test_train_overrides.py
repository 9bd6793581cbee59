"""``l2t-gs train audio2mesh --encoder / --encoder-path / --set``: override the recipe, saved in the run."""

from __future__ import annotations

import pytest
from test_train_audio2mesh import make_dataset, recipe, run_cli

from l2t_gs.errors import L2TError
from l2t_gs.models.checkpoint import load_model
from l2t_gs.models.encoders import ENCODERS
from l2t_gs.training.audio2mesh import DataConfig, TrainConfig, dump_toml, load_recipe, with_overrides
from l2t_gs.training.common import apply_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


def test_cli_flags_override_the_recipe_and_are_saved(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", sentences=2)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(dump_toml(recipe(train={"epochs": 1}, model={"encoder": "wav2vec2", "encoder_path": "x/y"})))
    out = tmp_path / "run"
    rc = run_cli(
        "train", "audio2mesh", "--data", str(data), "--out", str(out), "--config", str(cfg), "--device", "cpu",
        "--no-progress", "--max-steps", "1", "--encoder", "builtin", "--set", "train.lr=0.002",
        "--set", "model.d_model=24", "--set", "n_heads=3", "--set", "loss.velocity=0.25",
        "--set", "data.val_split=", "--set", "cache_clips=yes",
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    saved = load_recipe(out / "config.toml")
    assert saved["model"]["encoder"] == "builtin" and saved["model"]["d_model"] == 24 and saved["model"]["n_heads"] == 3
    assert saved["train"]["lr"] == 0.002 and saved["train"]["cache_clips"] is True
    assert saved["loss"] == {"vertex": 1.0, "velocity": 0.25} and saved["data"]["val_split"] == ""
    head = (out / "config.toml").read_text().split("\n\n")[0]
    assert "model.encoder=builtin" in head and "train.lr=0.002" in head and "loss.velocity=0.25" in head
    model = load_model(out)  # the model was built from the overridden recipe
    assert model.config.d_model == 24 and model.config.n_heads == 3 and model.config.encoder == "builtin"
    # the saved config reproduces the run as a recipe
    assert load_recipe(out / "config.toml")["model"]["d_model"] == 24


def test_encoder_path_must_be_a_folder_and_is_resolved(tmp_path):
    base = {"model": {}, "train": {}, "data": {}, "loss": {}}
    folder = tmp_path / "wav2vec2-base-960h"
    folder.mkdir()
    out, done = with_overrides(base, encoder="hubert", encoder_path=folder)
    assert out["model"] == {"encoder": "hubert", "encoder_path": str(folder.resolve())}
    assert done == ["model.encoder=hubert", f"model.encoder_path={folder.resolve()}"] and base["model"] == {}
    with pytest.raises(L2TError, match="not a folder"):
        with_overrides(base, encoder_path=tmp_path / "missing")
    with pytest.raises(L2TError, match="--encoder must be one of"):
        with_overrides(base, encoder="mfcc")
    assert {"builtin", "wav2vec2", "hubert"} <= set(ENCODERS.choices())


def test_set_parses_types_and_names_near_matches():
    from l2t_gs.models.audio2mesh import Audio2MeshConfig

    schema = {"model": Audio2MeshConfig, "train": TrainConfig, "data": DataConfig}
    base = {"model": {}, "train": {"lr": 1.0}, "data": {}, "loss": {"vertex": 1.0}}
    out = apply_overrides(
        base,
        ["epochs=7", "model.encoder_normalize=none", "model.dropout=0", "loss.lip_gap.margin_mm=0.5",
         "loss.vertex=2", "train.warmup_steps=10"],
        schema, loss_names=("vertex", "lip_gap"),
    )  # fmt: skip
    assert out["train"] == {"lr": 1.0, "epochs": 7, "warmup_steps": 10} and isinstance(out["model"]["dropout"], float)
    assert out["model"]["encoder_normalize"] is None
    assert out["loss"] == {"vertex": 2, "lip_gap": {"weight": 1.0, "margin_mm": 0.5}}
    cases = [
        ("train.lrr=1", "did you mean train.lr"),
        ("d_modle=3", "did you mean model.d_model"),
        ("epochs=many", "expected int"),
        ("seed", "expected KEY=VALUE"),
        ("model.extra=1", "cannot set"),
        ("loss.vertx=1", "did you mean loss.vertex"),
        ("device=gpu", None),  # typed as str here; the recipe's own validation rejects the value
    ]
    for item, message in cases:
        if message is None:
            assert apply_overrides(base, [item], schema)["train"]["device"] == "gpu"
            continue
        with pytest.raises(L2TError, match=message) as info:
            apply_overrides(base, [item], schema, loss_names=("vertex", "lip_gap"))
        assert "\n" not in str(info.value)


def test_cli_unknown_key_is_one_line(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", sentences=2)
    rc = run_cli("train", "audio2mesh", "--data", str(data), "--out", str(tmp_path / "r"), "--set", "train.bach_size=2")
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("l2t-gs: error:") and "train.batch_size" in err and "\n" not in err
    assert not (tmp_path / "r" / "config.toml").exists()


def test_init_from_starts_a_new_run_from_trained_weights(tmp_path, capsys):
    """``[train] init_from``: a second stage starts from the first run's weights (fresh step count); a
    different ``[model]`` table is refused in one line before anything is written."""
    import torch

    from l2t_gs.models.checkpoint import read_checkpoint

    data = make_dataset(tmp_path / "data", sentences=2)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(dump_toml(recipe(train={"epochs": 1})))
    first = tmp_path / "first"
    common = ("--data", str(data), "--config", str(cfg), "--device", "cpu", "--no-progress")
    assert run_cli("train", "audio2mesh", "--out", str(first), *common, "--max-steps", "2") == 0
    src = read_checkpoint(first / "last.pt")
    # lr so small that one step leaves the weights where they were (to float precision)
    second = tmp_path / "second"
    rc = run_cli(
        "train", "audio2mesh", "--out", str(second), *common, "--max-steps", "1",
        "--set", f"train.init_from={first}", "--set", "train.lr=1e-12", "--set", "train.warmup_steps=0",
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    out = read_checkpoint(second / "last.pt")
    assert out["train"]["step"] == 1  # a fresh run, not a resumed one
    fresh = tmp_path / "fresh"
    assert (
        run_cli("train", "audio2mesh", "--out", str(fresh), *common, "--max-steps", "1", "--set", "train.lr=1e-12") == 0
    )
    other = read_checkpoint(fresh / "last.pt")["model"]
    for k, v in src["model"].items():
        torch.testing.assert_close(out["model"][k], v, rtol=0, atol=1e-6)
    assert any(not torch.equal(other[k], v) for k, v in src["model"].items())  # unlike a run from scratch
    capsys.readouterr()
    bad = tmp_path / "bad"
    rc = run_cli(
        "train", "audio2mesh", "--out", str(bad), *common, "--max-steps", "1",
        "--set", f"train.init_from={first}", "--set", "model.d_model=24",
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "init_from" in err[0] and "d_model" in err[0], err
    assert not (bad / "last.pt").exists()


def test_init_from_carries_styles_over_to_a_corpus_with_other_subjects(tmp_path, capsys):
    """A second stage on a corpus with other training subjects: a subject of the first run keeps its style
    row, a new one starts at the mean of the first run's styles, and every other weight is carried over."""
    import torch

    from l2t_gs.models.checkpoint import read_checkpoint

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(dump_toml(recipe(train={"epochs": 1})))
    first_data = make_dataset(tmp_path / "d1", sentences=2, subjects=("spkA", "spkB"))
    first = tmp_path / "first"
    opts = ("--config", str(cfg), "--device", "cpu", "--no-progress")
    rc = run_cli("train", "audio2mesh", "--data", str(first_data), "--out", str(first), *opts, "--max-steps", "2")
    assert rc == 0
    src = read_checkpoint(first / "last.pt")
    # same vertex count and templates basis, subjects: spkB (known), spkC (new), in a different order
    second_data = make_dataset(tmp_path / "d2", sentences=2, subjects=("spkC", "spkB"), seed=1)
    second = tmp_path / "second"
    rc = run_cli(
        "train", "audio2mesh", "--data", str(second_data), "--out", str(second), *opts, "--max-steps", "1",
        "--set", f"train.init_from={first}", "--set", "train.lr=1e-12", "--set", "train.warmup_steps=0",
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "1 of 2 training subjects keep their style" in err
    out = read_checkpoint(second / "last.pt")
    assert out["subjects"] == ["spkC", "spkB"] and src["subjects"] == ["spkA", "spkB"]
    old, new = src["model"]["decoder.style.weight"], out["model"]["decoder.style.weight"]
    torch.testing.assert_close(new[1], old[1], rtol=0, atol=1e-6)  # spkB kept its row
    torch.testing.assert_close(new[0], old.mean(0), rtol=0, atol=1e-6)  # spkC: the mean style
    for k, v in src["model"].items():
        if k != "decoder.style.weight":
            torch.testing.assert_close(out["model"][k], v, rtol=0, atol=1e-6)


def test_data_repeat_weights_subjects_in_each_epoch(tmp_path, capsys):
    """``[data.repeat]``: clips of matching training subjects appear that many times in an epoch (and
    the count of steps grows to match); a pattern matching no training subject is one line."""
    from collections import Counter

    from l2t_gs.training.audio2mesh import DataConfig, _epoch_batches

    subjects = ["asterisk-es", "asterisk-fr", "espeak-en", "espeak-en", "flite-awb"]
    cfg = DataConfig(repeat={"asterisk-*": 3, "*-fr": 2})
    assert cfg.repeats(subjects) == [3, 3, 1, 1, 1]  # the larger count wins for asterisk-fr
    batches = _epoch_batches([10, 20, 30, 40, 50], 2, 1, 0, seed=0, epoch=1, repeats=cfg.repeats(subjects))
    counts = Counter(i for b in batches for i in b)
    assert counts == {0: 3, 1: 3, 2: 1, 3: 1, 4: 1} and len(batches) == 5
    assert sorted(i for b in _epoch_batches([10, 20, 30, 40, 50], 2, 1, 0, 0, 1) for i in b) == [0, 1, 2, 3, 4]
    with pytest.raises(L2TError, match="matches no training subject"):
        DataConfig(repeat={"fillets-*": 2}).repeats(subjects)
    with pytest.raises(L2TError, match=">= 1"):
        DataConfig(repeat={"espeak-*": 0}).repeats(subjects)
    # through the CLI: the recipe's table is saved quoted in config.toml and read back
    data = make_dataset(tmp_path / "data", sentences=3)
    rc = tmp_path / "tiny.toml"
    rc.write_text(dump_toml(recipe(train={"epochs": 1}, data={"repeat": {"spkA*": 2}})))
    out = tmp_path / "run"
    args = ("--data", str(data), "--out", str(out), "--config", str(rc), "--device", "cpu", "--no-progress")
    assert run_cli("train", "audio2mesh", *args) == 0, capsys.readouterr().err
    assert load_recipe(out / "config.toml")["data"]["repeat"] == {"spkA*": 2}
    import csv

    with open(out / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert int(rows[-1]["step"]) == 3  # 2 train clips of spkA twice + 2 of spkB, batch 2 -> 3 steps
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text(dump_toml(recipe(train={"epochs": 1}, data={"repeat": {"nobody": 2}})))
    assert run_cli("train", "audio2mesh", *args[:2], "--out", str(tmp_path / "r2"), "--config", str(bad)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches no training subject" in err[0]
