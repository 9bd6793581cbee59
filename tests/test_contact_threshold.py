"""Contact-threshold calibration: the choice rule, the checkpoint field, and one-line errors."""

from __future__ import annotations

import pytest

from l2t_gs.errors import L2TError
from l2t_gs.models.audio2mesh import Audio2MeshConfig
from l2t_gs.training.contact_threshold import choose


def _row(t: float, recall: float, fc: float) -> dict[str, float]:
    return {"threshold": t, "recall1": recall, "false_closure_rate": fc}


def test_choose_takes_the_best_recall_within_the_false_closure_budget():
    table = [_row(0.5, 0.9, 0.15), _row(0.7, 0.8, 0.05), _row(0.8, 0.8, 0.02), _row(0.9, 0.6, 0.01)]
    assert choose(table, 0.05)["threshold"] == 0.8  # ties on recall: the higher threshold
    assert choose(table, 0.2)["threshold"] == 0.5
    # nothing within budget: the fewest false closures
    assert choose(table, 0.001)["threshold"] == 0.9


def test_contact_threshold_is_validated():
    with pytest.raises(L2TError, match="contact_threshold"):
        Audio2MeshConfig(contact_head=True, output="rig", contact_threshold=1.0).validate()


def test_calibrating_a_model_without_contact_head_is_one_line(tmp_path, capsys):
    from l2t_gs.cli.main import main
    from l2t_gs.models.audio2mesh import Audio2Mesh
    from l2t_gs.models.checkpoint import save_checkpoint

    old = tmp_path / "old.pt"
    cfg = Audio2MeshConfig(output="rig", head="builtin", enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2)
    save_checkpoint(old, Audio2Mesh(cfg, subjects=["a"], n_verts=7931))
    out = tmp_path / "x.pt"
    code = main(["train", "contact-threshold", "--model", str(old), "--data", str(tmp_path), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "no contact head" in err[0], err
    assert not out.exists()


def test_contact_gate_is_validated_and_stored_only_when_set(tmp_path):
    from l2t_gs.models.audio2mesh import Audio2Mesh
    from l2t_gs.models.checkpoint import load_model, read_checkpoint, save_checkpoint

    with pytest.raises(L2TError, match="contact_gate_mm"):
        Audio2MeshConfig(contact_head=True, output="rig", contact_gate_mm=-1.0).validate()
    kw = dict(output="rig", head="builtin", enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2)
    model = Audio2Mesh(Audio2MeshConfig(contact_head=True, **kw), subjects=["a"], n_verts=7931)
    save_checkpoint(tmp_path / "plain.pt", model)
    assert "contact_gate_mm" not in read_checkpoint(tmp_path / "plain.pt")["config"]  # readable by older versions
    model.config.contact_gate_mm = 3.0
    save_checkpoint(tmp_path / "gated.pt", model)
    assert read_checkpoint(tmp_path / "gated.pt")["config"]["contact_gate_mm"] == 3.0
    assert load_model(tmp_path / "gated.pt").config.contact_gate_mm == 3.0
