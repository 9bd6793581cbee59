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


@pytest.mark.parametrize(
    "field, bad, value",
    [("contact_gate_mm", -1.0, 3.0), ("contact_hold_s", -0.1, 0.04), ("contact_peak_s", -0.1, 0.07)],
)
def test_calibrated_contact_fields_are_validated_and_stored_only_when_set(tmp_path, field, bad, value):
    from l2t_gs.models.audio2mesh import Audio2Mesh
    from l2t_gs.models.checkpoint import load_model, read_checkpoint, save_checkpoint

    with pytest.raises(L2TError, match=field):
        Audio2MeshConfig(contact_head=True, output="rig", **{field: bad}).validate()
    kw = dict(output="rig", head="builtin", enc_dim=16, enc_layers=1, enc_heads=2, d_model=16, n_heads=2)
    model = Audio2Mesh(Audio2MeshConfig(contact_head=True, **kw), subjects=["a"], n_verts=7931)
    save_checkpoint(tmp_path / "plain.pt", model)
    assert field not in read_checkpoint(tmp_path / "plain.pt")["config"]  # readable by older versions
    setattr(model.config, field, value)
    save_checkpoint(tmp_path / "set.pt", model)
    assert read_checkpoint(tmp_path / "set.pt")["config"][field] == value
    assert getattr(load_model(tmp_path / "set.pt").config, field) == value


class _Fixed:
    """A stand-in model whose prediction is a given track and contact probabilities."""

    def __init__(self, hm, track, probs) -> None:
        from l2t_gs.rig import FlameRig

        self.head, self.rig, self.track, self.probs = hm, FlameRig(hm), track, probs

    def predict_params(self, audio, fps, contacts):
        import torch

        t = self.track
        return {"expr": torch.as_tensor(t.expr), "jaw_pose": torch.as_tensor(t.jaw_pose),
                "contacts": torch.as_tensor(self.probs)}  # fmt: skip


def test_the_sweep_scores_each_hold_and_the_choice_takes_the_short_closure():
    """A contact run that covers a bilabial and spills into the next open vowel: whole runs close the vowel
    (a false closure), a one-frame hold at the run's peak closes the bilabial only, and ``choose`` with a
    zero false-closure budget takes the hold."""
    from types import SimpleNamespace

    import numpy as np

    from l2t_gs.motion import articulation as art
    from l2t_gs.rig import load_head_model
    from l2t_gs.training.contact_threshold import sweep
    from l2t_gs.training.metrics.regions import builtin_regions

    fps = 30.0
    hm = load_head_model("builtin")
    phones = [("sil", 0.0, 0.2), ("aa", 0.2, 0.5), ("m", 0.5, 0.59), ("aa", 0.59, 0.89), ("sil", 0.89, 1.1)]
    n = 33
    no_m = [("aa" if p == "m" else p, a, b) for p, a, b in phones]
    open_track = art.articulate(no_m, fps=fps, n_frames=n, model=hm)  # motion that never closes
    probs = np.zeros((n, 2), np.float32)
    run = np.arange(15, 23)  # 0.50 .. 0.73 s: the m and 140 ms of the vowel after it
    probs[run, 0] = 0.9 - 0.05 * np.abs(run - 16)  # peak at frame 16, inside the m

    clip = SimpleNamespace(audio=None, fps=fps, phones=phones, subject="a")
    table = sweep(_Fixed(hm, open_track, probs), [clip], (0.5,), builtin_regions().lip_pair, (0.0,), (0.0, 0.04))
    by_hold = {row["hold_s"]: row for row in table}
    assert by_hold[0.0]["recall1"] == 1.0 and by_hold[0.0]["false_closures"] == 1.0
    assert by_hold[0.04]["recall1"] == 1.0 and by_hold[0.04]["false_closures"] == 0.0
    assert choose(table, 0.0)["hold_s"] == 0.04


def test_the_sweep_scores_peak_radii_and_a_run_over_two_bilabials_closes_both():
    """One contact run covers "m aa m" with a probability peak in each m: one closure per run closes the
    first m only; a peak radius of 0.07 s (two frames) closes both, and ``choose`` takes it."""
    from types import SimpleNamespace

    import numpy as np

    from l2t_gs.motion import articulation as art
    from l2t_gs.rig import load_head_model
    from l2t_gs.training.contact_threshold import sweep
    from l2t_gs.training.metrics.regions import builtin_regions

    fps = 30.0
    hm = load_head_model("builtin")
    phones = [("sil", 0.0, 0.2), ("aa", 0.2, 0.5), ("m", 0.5, 0.6), ("aa", 0.6, 0.7), ("m", 0.7, 0.8),
              ("aa", 0.8, 1.1), ("sil", 1.1, 1.3)]  # fmt: skip
    n = 39
    no_m = [("aa" if p == "m" else p, a, b) for p, a, b in phones]
    open_track = art.articulate(no_m, fps=fps, n_frames=n, model=hm)
    probs = np.zeros((n, 2), np.float32)
    probs[15:24, 0] = [0.7, 0.9, 0.8, 0.7, 0.6, 0.7, 0.85, 0.8, 0.7]  # peaks at 16 (first m) and 21 (second m)

    clip = SimpleNamespace(audio=None, fps=fps, phones=phones, subject="a")
    table = sweep(
        _Fixed(hm, open_track, probs), [clip], (0.5,), builtin_regions().lip_pair, (0.0,), (0.0, 0.04), (0.0, 0.07)
    )
    assert len(table) == 3  # no hold: the radius is not swept
    by = {(row["hold_s"], row["peak_s"]): row for row in table}
    assert by[0.04, 0.0]["bilabials"] == 2 and by[0.04, 0.0]["recall1"] == 0.5
    assert by[0.04, 0.07]["recall1"] == 1.0 and by[0.04, 0.07]["false_closures"] == 0.0
    best = choose(table, 0.0)
    assert (best["hold_s"], best["peak_s"]) == (0.04, 0.07)
