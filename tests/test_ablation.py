"""The Learn2Talk ablation driver (``l2t-gs train ablation``): recipes, the shared warm start, results and report.

Runs on the tiny synthetic sync dataset of ``test_syncnet3d.py`` with its tiny SyncNet3D expert; the lip-read
loss is replaced by a cheap stand-in with the same options (the real one is tested in ``test_lipreader.py``):
what is tested here is the driver.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_syncnet3d import tiny_expert

from l2t_gs.cli.main import main as cli_main
from l2t_gs.errors import L2TError
from l2t_gs.training import audio2mesh as a2m
from l2t_gs.training.ablation import VARIANTS, load_ablation, run_ablation, variant_recipe
from l2t_gs.training.losses.registry import LOSSES

BASE = """
[model]
d_model = 16
n_layers = 1
enc_dim = 16
enc_layers = 1
n_mels = 40

[train]
epochs = 3
batch_size = 2
crop_s = 1.0
log_every = 1
threads = 1
lr = 1e-3

[loss]
vertex = 1.0
velocity = 0.5
"""


def ablation_recipe(base: Path, **over: Any) -> str:
    cfg = {"steps": 5, "warm_start_steps": 3, "threads": 1} | over
    lines = [f'recipe = "{base}"'] + [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
    return (
        "[ablation]\n" + "\n".join(lines) + "\n\n[train]\nepochs = 100\nval_every_epochs = 2\n\n"
        '[loss.sync]\nweight = 0.5\nwindows = 4\n\n[loss.lipread]\nweight = 0.5\nlipreader = "stand-in"\n\n'
        "[loss.lip_gap]\nweight = 0.5\npair = [0, 11]\n\n"
        '[eval]\nsplit = "val"\n'
    )


def _stand_in_lipread(options: dict[str, Any], model: Any, device: torch.device) -> Any:
    """Lip-read stand-in: squared lip-vertex error of every 2nd frame, off before ``start_step``."""
    start = int(options.get("start_step", 0))
    assert options.get("lipreader") == "stand-in"

    def fn(ctx: Any) -> torch.Tensor:
        if 0 <= ctx.step < start:
            return ctx.pred.sum() * 0.0
        d = (ctx.pred[:, ::2, :12] - ctx.target[:, ::2, :12]).square()
        return d.mean() * 10.0

    return fn


@pytest.fixture(autouse=True)
def stand_in():
    torch.set_num_threads(1)
    with LOSSES.overridden("lipread", _stand_in_lipread):
        yield


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    data, expert, _ = tiny_expert(tmp_path_factory)
    root = tmp_path_factory.mktemp("ablation")
    base = root / "base.toml"
    base.write_text(BASE)
    recipe = root / "ablation.toml"
    recipe.write_text(ablation_recipe(base))
    return data, expert, recipe, root


def test_packaged_recipe_and_variant_recipes():
    cfg, train_over, added, ev = load_ablation("ablation")
    assert cfg.variants == list(VARIANTS) and 0 < cfg.warm_start_steps < cfg.steps
    assert ev.split == "test" and train_over["val_every_epochs"] >= 1
    base = a2m.load_recipe(cfg.recipe)
    assert set(base["loss"]) == {"vertex", "velocity", "rig_l2"}
    recipes = {v: variant_recipe(base, v, added, cfg, train_over) for v in VARIANTS}
    assert set(recipes["baseline"]["loss"]) == set(base["loss"])
    assert set(recipes["sync"]["loss"]) - set(base["loss"]) == {"sync"}
    assert set(recipes["lipread"]["loss"]) - set(base["loss"]) == {"lipread"}
    assert set(recipes["full"]["loss"]) - set(base["loss"]) == {"sync", "lipread"}
    assert set(recipes["full_contact"]["loss"]) - set(base["loss"]) == {"sync", "lipread", "lip_gap"}
    for r in recipes.values():
        assert r["train"]["schedule_steps"] == cfg.steps and r["model"] == base["model"]
        for name in ("sync", "lipread", "lip_gap"):
            if name in r["loss"]:
                assert r["loss"][name]["start_step"] == cfg.warm_start_steps
    assert "sync" not in base["loss"]  # the base recipe is not modified


@pytest.mark.parametrize(
    "text, match",
    [
        ("[ablation]\nsteps = 5\nwarm_start_steps = 5\n", "warm_start_steps < steps"),
        ('[ablation]\nvariants = ["baseline", "sink"]\n', "variants"),
        ("[ablation]\nstep = 5\n", "unknown key"),
        ("[ablation]\nsteps = 'many'\n", "steps must be int"),
        ("[loss.vertex]\nweight = 1\n", "only hold sync, lipread, lip_gap"),
        ("[evaluation]\n", "unknown section"),
    ],
)
def test_bad_recipes_are_one_line_errors(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(L2TError, match=match):
        load_ablation(p)
    with pytest.raises(L2TError, match="not found"):
        load_ablation(tmp_path / "missing.toml")


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_ablation_trains_evaluates_reports_and_resumes(setup, tmp_path):
    data, expert, recipe, root = setup
    out = tmp_path / "abl"
    report = tmp_path / "docs" / "ablation.md"
    report.parent.mkdir()
    res = run_ablation(data, out, recipe, syncnet=str(expert), report=report, progress=False)
    assert list(res["variants"]) == list(VARIANTS)
    for name, r in res["variants"].items():
        ov = r["eval"]["overall"]
        assert r["steps"] == 5 and ov["clips"] == 6, name
        for key in ("lve_mm2", "fdd_mm2", "lse_d", "lse_c"):
            assert math.isfinite(ov[key]), (name, key)
        assert (out / name / "last.pt").is_file()
        st = torch.load(out / name / "last.pt", weights_only=False)["train"]
        assert st["step"] == 5
        header = (out / name / "train_log.csv").read_text().splitlines()[0].split(",")
        assert {"sync", "lipread", "lip_gap"} & set(header) == set(VARIANTS[name][1])
    # the shared warm start is exact: resuming its copy equals training the variant from scratch
    scratch = tmp_path / "scratch_full"
    cfg, over, added, _ = load_ablation(recipe)
    added["sync"]["syncnet"] = str(expert)
    full = variant_recipe(a2m.load_recipe(cfg.recipe), "full_contact", added, cfg, over)
    a2m.train(data, scratch, full, max_steps=cfg.steps, progress=False)
    a, b = _state(out / "full_contact" / "last.pt"), _state(scratch / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the Learn2Talk losses change the model; the variants really differ
    base, sync = _state(out / "baseline" / "last.pt"), _state(out / "sync" / "last.pt")
    assert any(not torch.equal(base[k], sync[k]) for k in base)
    assert _state(out / "warm" / "last.pt").keys() == base.keys()
    # the report: one row per variant and the ground-truth row, with the measured numbers
    text = report.read_text()
    for name in VARIANTS:
        assert f"| {VARIANTS[name][0]} |" in text
    lve = res["variants"]["sync"]["eval"]["overall"]["lve_mm2"]
    assert f"{lve:.2f}" in text and "*ground truth*" in text
    paired = text.split("| variant vs baseline |")[1].split("\n\n")[0]
    assert paired.count("/6)") == 3 * (len(VARIANTS) - 1)  # LVE, LSE-D, LSE-C per variant, over the 6 clips
    saved = json.loads((out / "results.json").read_text())
    assert saved["variants"]["full"]["eval"]["overall"] == res["variants"]["full"]["eval"]["overall"]
    # rerunning skips finished work and gives the same results; notes below the marker survive
    from l2t_gs.training.ablation import NOTES_MARKER

    report.write_text(text + "\n" + NOTES_MARKER + "\n\nWhat it shows: a hand-written paragraph.\n")
    mtime = (out / "full" / "last.pt").stat().st_mtime_ns
    again = run_ablation(data, out, recipe, syncnet=str(expert), report=report, progress=False)
    assert (out / "full" / "last.pt").stat().st_mtime_ns == mtime
    assert again["variants"]["full"]["eval"] == res["variants"]["full"]["eval"]
    rewritten = report.read_text()
    assert rewritten.count(NOTES_MARKER) == 1 and rewritten.endswith("What it shows: a hand-written paragraph.\n")
    assert rewritten.split(NOTES_MARKER)[0].strip() == text.strip()


def test_cli_and_missing_experts(setup, tmp_path, capsys):
    data, expert, recipe, _ = setup
    one = tmp_path / "one.toml"
    one.write_text(recipe.read_text().replace("threads = 1", 'threads = 1\nvariants = ["baseline", "sync"]'))
    rc = cli_main(["train", "ablation", "--data", str(data), "--out", str(tmp_path / "run"), "--config", str(one),
                   "--syncnet", str(expert), "--no-progress"])  # fmt: skip
    assert rc == 0
    md = (tmp_path / "run" / "ablation.md").read_text()
    assert "+ sync loss" in md and "+ lip-read" not in md.split("| variant |")[1].split("LVE:")[0]
    capsys.readouterr()
    rc = cli_main(["train", "ablation", "--data", str(data), "--out", str(tmp_path / "r2"), "--config", str(recipe)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "--syncnet" in err and len(err.splitlines()) == 1
    rc = cli_main(["train", "ablation", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r3"),
                   "--config", str(one), "--syncnet", str(expert)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "nope" in err and len(err.splitlines()) == 1
