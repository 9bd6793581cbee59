"""The Learn2Talk ablation: baseline, + sync, + lip-read and full Audio2Mesh runs, scored on held-out voices.

``l2t-gs train ablation --data CORPUS --out RUN --syncnet SYNCNET_RUN --lipreader LIPREADER_RUN`` (recipe
``training/ablation.toml``) trains variants of one base recipe that differ only in their losses:

- ``baseline``: the base recipe's losses (FaceFormer's vertex + velocity, rig L2);
- ``sync``: baseline + ``[loss.sync]`` (frozen SyncNet3D expert);
- ``lipread``: baseline + ``[loss.lipread]`` (frozen lip reader over rendered mouth crops);
- ``full``: baseline + both (Learn2Talk);
- ``full_contact``: full + ``[loss.lip_gap]``, the project's lip-gap contact term (the shipped default
  model is this variant).

Compute: the Learn2Talk losses are switched on after ``warm_start_steps`` (the sync and lip-read
losses' ``start_step``). Until then every variant is the same run, so it is trained once
(``RUN/warm``) and each variant resumes a copy of its checkpoint up to ``steps``; the learning-rate
schedule spans ``steps`` in every stage. The baseline continues the same way with its own losses,
so all four see the same data for the same number of steps.

Each variant is then evaluated on ``[eval] split`` (held-out voices) with LVE, FDD, lip-closure recall,
lip-opening correlation and LSE-D / LSE-C / offset under ``[eval] syncnet`` (by default the loss's
expert; a second expert trained with another seed is a fairer judge of the sync variants). Results go
to ``RUN/results.json`` and a markdown report (``--report``, default ``RUN/ablation.md``); hand-written
notes below :data:`NOTES_MARKER` in an existing report survive a rewrite. Every stage resumes: rerunning
the command skips finished runs and evaluations.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from l2t_gs.errors import L2TError
from l2t_gs.io.atomic import write_text_atomic
from l2t_gs.models.checkpoint import load_model
from l2t_gs.training.audio2mesh import load_recipe, train
from l2t_gs.training.common import read_recipe, recipe_file, typed_table
from l2t_gs.training.data.datasets import load_dataset
from l2t_gs.training.metrics.evaluate import DEFAULT_METRICS, evaluate, get_metric
from l2t_gs.training.metrics.lse import LSE
from l2t_gs.training.trainers import TRAINER_HELP, TRAINERS, Trainer

__all__ = ["VARIANTS", "AblationConfig", "add_arguments", "load_ablation", "run", "run_ablation"]

#: Text after this line of an existing report is kept when the report is rewritten.
NOTES_MARKER = "<!-- notes: kept when the report is rewritten -->"
SECTIONS = ("ablation", "train", "loss", "eval")

#: variant -> (table label, Learn2Talk losses it adds)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "baseline": ("baseline (vertex + velocity)", ()),
    "sync": ("+ sync loss", ("sync",)),
    "lipread": ("+ lip-read loss", ("lipread",)),
    "full": ("full (+ sync + lip-read)", ("sync", "lipread")),
    "full_contact": ("full + lip-gap contact", ("sync", "lipread", "lip_gap")),
}
#: Losses an ablation recipe may add (``[loss.NAME]`` tables).
ADDED_LOSSES = ("sync", "lipread", "lip_gap")


@dataclass
class AblationConfig:
    """The ``[ablation]`` table: ``recipe`` (base Audio2Mesh recipe, a name or path), ``steps`` per variant,
    ``warm_start_steps`` shared before the Learn2Talk losses switch on (0: each variant from scratch),
    ``variants`` to run, ``threads`` (CPU threads, 0: torch's default)."""

    recipe: str = "corpus_cpu"
    steps: int = 2400
    warm_start_steps: int = 2000
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    threads: int = 0

    def validate(self) -> AblationConfig:
        if self.steps < 1 or not 0 <= self.warm_start_steps < self.steps:
            raise L2TError("[ablation]: steps must be >= 1 and 0 <= warm_start_steps < steps")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants or len(set(self.variants)) != len(self.variants):
            known = ", ".join(VARIANTS)
            raise L2TError(f"[ablation]: variants must be distinct names out of {known}, got {self.variants}")
        if self.threads < 0:
            raise L2TError("[ablation]: threads must be >= 0")
        return self


@dataclass
class EvalConfig:
    """The ``[eval]`` table: ``split`` scored, ``syncnet`` judging LSE ("": the sync loss's expert)."""

    split: str = "test"
    syncnet: str = ""


def _recipe_file(spec: str | os.PathLike) -> Path:
    return recipe_file(spec, "ablation recipe", prefix="ablation")


def load_ablation(
    spec: str | os.PathLike = "ablation",
) -> tuple[AblationConfig, dict[str, Any], dict[str, dict[str, Any]], EvalConfig]:
    """Read an ablation recipe: its ``[ablation]`` config, ``[train]`` overrides of the base recipe, the
    ``[loss.sync]`` / ``[loss.lipread]`` tables the variants add, and the ``[eval]`` config."""
    raw = read_recipe(_recipe_file(spec), SECTIONS)
    cfg = typed_table(AblationConfig, raw["ablation"], "[ablation]").validate()
    losses = raw["loss"]
    unknown = sorted(set(losses) - set(ADDED_LOSSES))
    if unknown:
        known = ", ".join(ADDED_LOSSES)
        raise L2TError(f"ablation recipe: [loss] may only hold {known} tables, got {', '.join(unknown)}")
    for name in ADDED_LOSSES:
        if not isinstance(losses.get(name, {}), dict):
            raise L2TError(f"ablation recipe: [loss.{name}] must be a table")
    added = {k: dict(losses.get(k, {})) for k in ADDED_LOSSES}
    return cfg, raw["train"], added, typed_table(EvalConfig, raw["eval"], "[eval]")


def variant_recipe(
    base: dict[str, dict[str, Any]],
    variant: str,
    added: dict[str, dict[str, Any]],
    cfg: AblationConfig,
    train_overrides: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """The Audio2Mesh recipe of ``variant``: ``base`` (with the ``[train]`` overrides) plus its Learn2Talk
    losses, switched on at the warm start; the learning-rate schedule spans ``steps``."""
    recipe = copy.deepcopy(base)
    recipe["train"].update(train_overrides or {})
    recipe["train"]["schedule_steps"] = cfg.steps
    if cfg.threads:
        recipe["train"]["threads"] = cfg.threads
    for name in VARIANTS[variant][1]:
        opts = dict(added[name])
        opts.setdefault("start_step", cfg.warm_start_steps)
        recipe["loss"][name] = opts
    return recipe


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _train(data: Path, out: Path, recipe: dict[str, dict[str, Any]], steps: int, progress: bool | None) -> float:

    t0 = time.time()
    train(data, out, recipe, max_steps=steps, progress=progress)
    return time.time() - t0


def _evaluate(run: Path, data: Path, split: str, syncnet: str) -> dict[str, Any]:
    import torch

    torch.manual_seed(0)
    model = load_model(run / "last.pt")
    metrics = [get_metric(m) for m in DEFAULT_METRICS if m != "lse"] + [LSE(syncnet)]
    result = evaluate(model, load_dataset(data, split=split), metrics=metrics, data_root=data)
    return result.to_dict(model=str(run / "last.pt"), data=str(data), split=split, style=None)


COLUMNS = (
    ("LVE mm² ↓", "lve_mm2", "{:.2f}"),
    ("FDD ×10⁻⁷ mm² ↓", "fdd_mm2", "{:.3f}"),
    ("LSE-D ↓", "lse_d", "{:.3f}"),
    ("LSE-C ↑", "lse_c", "{:.3f}"),
    ("offset 0", "lse_offset0", "{:.0%}"),
    ("closure recall ↑", "closure_recall", "{:.3f}"),
    ("lip-opening r ↑", "lip_corr", "{:.3f}"),
)


def _cell(overall: dict[str, Any], key: str, fmt: str) -> str:
    v = overall.get(key)
    if v is None:
        return "-"
    if key == "fdd_mm2":
        v = v * 1e7
    return fmt.format(v)


PAIRED = (("lve_mm2", "LVE", -1), ("lse_d", "LSE-D", -1), ("lse_c", "LSE-C", 1), ("lip_corr", "lip-opening r", 1))


def paired_table(results: dict[str, Any], reference: str = "baseline") -> str:
    """Per-clip paired comparison with ``reference``: mean difference and the share of clips that improve."""
    rows = results["variants"]
    if reference not in rows:
        return ""
    ref = {c["name"]: c for c in rows[reference]["eval"]["clips"]}
    head = "| variant vs baseline | " + " | ".join(f"Δ {label} (clips better)" for _, label, _ in PAIRED) + " |"
    lines = [head, "|" + "---|" * (len(PAIRED) + 1)]
    for name, r in rows.items():
        if name == reference:
            continue
        cells = []
        for key, _, sign in PAIRED:
            pairs = [
                (c[key], ref[c["name"]][key])
                for c in r["eval"]["clips"]
                if c.get(key) is not None and ref.get(c["name"], {}).get(key) is not None
            ]
            if not pairs:
                cells.append("-")
                continue
            diff = sum(a - b for a, b in pairs) / len(pairs)
            better = sum(sign * (a - b) > 0 for a, b in pairs)
            cells.append(f"{diff:+.4f} ({better}/{len(pairs)})")
        lines.append(f"| {VARIANTS[name][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(results: dict[str, Any]) -> str:
    """The ablation's markdown report from ``results.json``'s content."""
    rows = results["variants"]
    first = next(iter(rows.values()))["eval"]["overall"]
    head = "| variant | " + " | ".join(c[0] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, r in rows.items():
        ov = r["eval"]["overall"]
        lines.append(f"| {VARIANTS[name][0]} | " + " | ".join(_cell(ov, k, f) for _, k, f in COLUMNS) + " |")
    gt = {
        "lse_d": first.get("lse_d_gt"),
        "lse_c": first.get("lse_c_gt"),
        "lse_offset0": first.get("lse_offset0_gt"),
        "closure_recall": first.get("closure_recall_gt"),
        "lip_corr": 1.0,
    }
    lines.append("| *ground truth* | - | - | " + " | ".join(_cell(gt, k, f) for _, k, f in COLUMNS[2:]) + " |")
    cfg = results["config"]
    per = "\n".join(
        f"| {VARIANTS[n][0]} | {r['seconds'] / 60:.1f} | {r['eval']['overall'].get('clips')} | "
        f"{r['eval']['overall'].get('bilabials')} |"
        for n, r in rows.items()
    )
    subjects = sorted(next(iter(rows.values()))["eval"]["subjects"])
    warm = results.get("warm_seconds") or 0.0
    warm_line = f"Shared warm start: {warm / 60:.1f} minutes." if warm > 1.0 else ""
    return f"""# Learn2Talk ablation

Written by `l2t-gs train ablation` ({results["written"]}); rerunning the command rewrites this file.

    {results["command"]}

- Data: `{results["data"]}`, scored on split `{cfg["eval"]["split"]}`, voices never heard in training:
  {", ".join(subjects)}.
- Base recipe `{cfg["ablation"]["recipe"]}`; every variant trains {cfg["ablation"]["steps"]} steps, the
  first {cfg["ablation"]["warm_start_steps"]} shared (the added losses switch on after them).
- Sync loss: `{json.dumps(cfg["loss"]["sync"])}`.
- Lip-read loss: `{json.dumps(cfg["loss"]["lipread"])}`.
- Lip-gap contact loss: `{json.dumps(cfg["loss"]["lip_gap"])}`.
- LSE judged by SyncNet3D `{results["judge"]}`.

{chr(10).join(lines)}

LVE: mean over frames of the maximal lip-vertex L2 error squared; FDD: upper-face dynamics deviation
(CodeTalker's definitions); LSE-D / LSE-C / offset: SyncNet3D distance, confidence and the share of clips
whose best offset in ±15 frames is 0 (syncnet_python's definitions on 3D lip motion); closure recall:
share of p/b/m whose lips close (midline gap < 1 mm); lip-opening r: Pearson correlation of predicted
and ground-truth lip opening per clip, averaged. Ground-truth row: the same expert on the data's own
motion.

Paired per clip against the baseline (same clips; "better" = lower LVE / LSE-D, higher LSE-C / r):

{paired_table(results)}

Wall time of each variant's own steps (on the machine that ran it, other jobs included):

| variant | training minutes (after the warm start) | clips | bilabials |
|---|---|---|---|
{per}

{warm_line}
"""


def run_ablation(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: str | os.PathLike = "ablation",
    *,
    syncnet: str | None = None,
    lipreader: str | None = None,
    judge: str | None = None,
    report: str | os.PathLike | None = None,
    progress: bool | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Train and evaluate the ablation (see the module docstring); returns ``results.json``'s content."""

    cfg, overrides, added, ecfg = load_ablation(config)
    data, out = Path(data), Path(out)
    if syncnet:
        added["sync"]["syncnet"] = str(syncnet)
    if lipreader:
        added["lipread"]["lipreader"] = str(lipreader)
    needs = {loss for v in cfg.variants for loss in VARIANTS[v][1]}
    if "sync" in needs and not added["sync"].get("syncnet"):
        raise L2TError("the ablation needs a SyncNet3D expert: --syncnet RUN (l2t-gs train syncnet3d)")
    if "lipread" in needs and not added["lipread"].get("lipreader"):
        raise L2TError("the ablation needs a lip reader: --lipreader RUN (l2t-gs train lipreader)")
    judge = judge or ecfg.syncnet or added["sync"].get("syncnet")
    if not judge:
        raise L2TError("LSE needs a SyncNet3D: --judge RUN, [eval] syncnet or --syncnet")
    if not data.is_dir():
        raise L2TError(f"--data {data} is not a directory")
    base = load_recipe(cfg.recipe)
    out.mkdir(parents=True, exist_ok=True)

    warm_seconds = 0.0
    warm = out / "warm"
    if cfg.warm_start_steps:
        _say(f"[ablation] shared warm start: {cfg.warm_start_steps} steps -> {warm}")
        warm_recipe = variant_recipe(base, "baseline", added, cfg, overrides)
        trained_before = (warm / "last.pt").is_file()
        warm_seconds = _train(data, warm, warm_recipe, cfg.warm_start_steps, progress)
        if trained_before:
            warm_seconds = 0.0  # resumed or already done: this call's time is not the warm start's

    results: dict[str, Any] = {"variants": {}}
    done_path = out / "results.json"
    if done_path.is_file():
        try:
            results = json.loads(done_path.read_text())
        except (OSError, ValueError):
            results = {"variants": {}}
    for name in cfg.variants:
        run = out / name
        recipe = variant_recipe(base, name, added, cfg, overrides)
        if cfg.warm_start_steps and not (run / "last.pt").is_file():
            run.mkdir(parents=True, exist_ok=True)
            tmp = run / "last.pt.tmp"
            shutil.copyfile(warm / "last.pt", tmp)
            os.replace(tmp, run / "last.pt")
        prev = results["variants"].get(name)
        if prev and prev.get("steps") == cfg.steps and prev.get("judge") == str(judge):
            _say(f"[ablation] {name}: done ({run})")
            continue
        _say(f"[ablation] {name}: training to step {cfg.steps} -> {run}")
        seconds = _train(data, run, recipe, cfg.steps, progress)
        if prev and prev.get("steps") == cfg.steps:
            seconds = prev.get("seconds", seconds)
        _say(f"[ablation] {name}: evaluating on split {ecfg.split!r}")
        ev = _evaluate(run, data, ecfg.split, str(judge))
        results["variants"][name] = {"steps": cfg.steps, "seconds": seconds, "judge": str(judge), "eval": ev}
        write_text_atomic(done_path, json.dumps(results, indent=2) + "\n")
    results["variants"] = {n: results["variants"][n] for n in cfg.variants}
    results.update(
        {
            "config": {
                "ablation": {f.name: getattr(cfg, f.name) for f in fields(cfg)},
                "train": overrides,
                "loss": added,
                "eval": {"split": ecfg.split, "syncnet": ecfg.syncnet},
            },
            "data": str(data),
            "judge": str(judge),
            "warm_seconds": warm_seconds or results.get("warm_seconds") or 0.0,
            "written": time.strftime("%Y-%m-%d"),
            "command": command or f"l2t-gs train ablation --data {data} --out {out}",
        }
    )
    write_text_atomic(done_path, json.dumps(results, indent=2) + "\n")
    report_path = Path(report) if report else out / "ablation.md"
    text = report_markdown(results)
    if report_path.is_file():  # keep the hand-written notes after the marker
        old = report_path.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            text += "\n" + NOTES_MARKER + old.split(NOTES_MARKER, 1)[1]
    write_text_atomic(report_path, text)
    _say(f"[ablation] wrote {report_path} and {done_path}")
    return results


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``l2t-gs train ablation`` options."""
    p.add_argument("--data", required=True, metavar="DIR", help="the project corpus (l2t-gs data synth)")
    p.add_argument("--out", required=True, metavar="RUN", help="ablation folder; rerunning resumes")
    p.add_argument("--config", default="ablation", metavar="RECIPE", help="ablation recipe (default: ablation)")
    p.add_argument("--syncnet", metavar="RUN", help="SyncNet3D expert of the sync loss (l2t-gs train syncnet3d)")
    p.add_argument("--lipreader", metavar="RUN", help="lip reader of the lip-read loss (l2t-gs train lipreader)")
    p.add_argument("--judge", metavar="RUN", help="SyncNet3D scoring LSE (default: [eval] syncnet, else --syncnet)")
    p.add_argument("--report", metavar="FILE.md", help="markdown report (default: RUN/ablation.md)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run ``l2t-gs train ablation`` from parsed arguments (the command line is recorded in the report)."""
    parts = ["l2t-gs train ablation", f"--data {args.data}", f"--out {args.out}"]
    for opt in ("config", "syncnet", "lipreader", "judge", "report"):
        v = getattr(args, opt)
        if v and not (opt == "config" and v == "ablation"):
            parts.append(f"--{opt} {v}")
    run_ablation(
        args.data,
        args.out,
        args.config,
        syncnet=args.syncnet,
        lipreader=args.lipreader,
        judge=args.judge,
        report=args.report,
        progress=False if args.no_progress else None,
        command=" ".join(parts),
    )
    return 0


TRAINERS.add("ablation", Trainer(add_arguments, run), help=TRAINER_HELP["ablation"])
