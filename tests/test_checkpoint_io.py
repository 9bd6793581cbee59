"""The shared checkpoint I/O (:mod:`l2t_gs.io.checkpoint`) and the trainer registry."""

from __future__ import annotations

import argparse

import pytest
import torch

from l2t_gs.errors import L2TError
from l2t_gs.io.checkpoint import CheckpointFormat, save_payload

KIND = CheckpointFormat("l2t-gs/test", 2, what="test checkpoint", kind="a test checkpoint", required=("model",))


def test_header_save_and_read_back(tmp_path):
    payload = KIND.header() | {"model": {"w": torch.arange(3.0)}}
    assert list(payload)[:3] == ["format", "format_version", "l2t_gs_version"]
    path = save_payload(tmp_path / "m.pt", payload)
    back = KIND.read(path)
    assert back["format"] == "l2t-gs/test" and torch.equal(back["model"]["w"], torch.arange(3.0))
    run = tmp_path / "run"
    run.mkdir()
    save_payload(run / "last.pt", payload)
    assert KIND.resolve(run) == run / "last.pt"  # best.pt first, else last.pt


def test_every_failure_is_one_line(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    torch.save({"format": "l2t-gs/test", "format_version": 3, "model": {}}, tmp_path / "future.pt")
    torch.save({"format": "l2t-gs/test", "format_version": 1}, tmp_path / "partial.pt")
    (tmp_path / "run").mkdir()
    cases = {
        "empty.pt": "test checkpoint .* is empty",
        "junk.pt": "corrupt, truncated",
        "other.pt": "is not a test checkpoint \\(it is 'other'\\)",
        "future.pt": "format version 3; this l2t-gs reads up to 2",
        "partial.pt": "missing 'model'",
        "missing.pt": "test checkpoint not found",
        "run": "no test checkpoint in",
    }
    for name, message in cases.items():
        with pytest.raises(L2TError, match=message) as info:
            KIND.read(tmp_path / name)
        assert "\n" not in str(info.value), name


def test_the_shipped_model_loads_through_the_shared_reader():
    from l2t_gs.assets import asset_path
    from l2t_gs.models.checkpoint import CHECKPOINT, load_model

    path = asset_path("models", "default", "model.pt")
    assert CHECKPOINT.read(path)["format"] == "l2t-gs/audio2mesh"
    assert load_model(path).n_verts == 7931


def test_train_subcommands_come_from_the_trainer_registry():
    from l2t_gs.cli.train import register
    from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS

    names = ("audio2mesh", "syncnet3d", "lipreader", "ablation", "contact-head", "contact-threshold", "posevae")
    assert TRAINERS.names() == names and sorted(TRAINERS.choices()) == sorted(names)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    for name in TRAINERS.names():
        extra = ["--model", "m"] if name.startswith("contact-") else []
        args = parser.parse_args(["train", name, "--data", "d", "--out", "o", *extra])
        assert args.func is TRAINERS.get(name).run and TRAINERS.help(name) == TRAINER_HELP[name]
