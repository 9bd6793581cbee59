"""Pieces every trainer shares: the ``[train]`` table's common fields, recipe files, the resumable CSV log
and the learning-rate schedule."""

from __future__ import annotations

import csv
import math
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from l2t_gs.core.device import DEVICE_CHOICES
from l2t_gs.errors import L2TError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_Config = TypeVar("_Config", bound="BaseTrainConfig")

#: Where the packaged recipes (``*.toml``) live.
RECIPES_DIR = Path(__file__).resolve().parent


@dataclass
class BaseTrainConfig:
    """The ``[train]`` fields every trainer has (each trainer's ``TrainConfig`` subclasses this, adds its own
    fields and overrides defaults): ``epochs``; ``max_steps`` (0: no step limit); ``batch_size``; AdamW's
    ``lr`` and ``weight_decay``; ``warmup_steps`` of linear warm-up, then a ``constant`` or ``cosine``
    ``lr_schedule`` (:func:`lr_at`); ``grad_clip`` (0: none); ``seed``; ``checkpoint_every`` (steps between
    ``last.pt`` writes, 0: epoch ends only); ``log_every`` (steps between log rows); ``device`` (``auto``,
    ``cpu``, ``cuda``; :func:`l2t_gs.core.device.resolve_device`); ``threads`` (CPU threads, 0: torch's default).
    """

    #: The smallest ``batch_size`` the trainer accepts.
    min_batch_size: ClassVar[int] = 1

    epochs: int = 1
    max_steps: int = 0
    batch_size: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    device: str = "auto"
    threads: int = 0

    def validate(self: _Config) -> _Config:
        """Check the common fields (subclasses check theirs after calling this); returns ``self``."""
        if self.epochs < 1 or self.batch_size < self.min_batch_size or self.max_steps < 0:
            raise L2TError(f"[train]: epochs must be >= 1, batch_size >= {self.min_batch_size}, max_steps >= 0")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise L2TError("[train]: lr must be > 0; weight_decay, grad_clip, warmup_steps >= 0")
        if self.lr_schedule not in ("constant", "cosine"):
            raise L2TError(f"[train]: lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.device not in DEVICE_CHOICES:
            raise L2TError(f"[train]: device must be {', '.join(DEVICE_CHOICES)}, got {self.device!r}")
        if self.checkpoint_every < 0 or self.log_every < 1 or self.threads < 0 or self.seed < 0:
            raise L2TError("[train]: checkpoint_every, threads, seed >= 0 and log_every >= 1")
        return self


def recipe_file(spec: str | os.PathLike | None, what: str, prefix: str = "") -> Path | None:
    """A recipe: a ``.toml`` path, or the name of a packaged recipe whose name starts with ``prefix``
    (``None`` stays ``None``); otherwise a one-line error naming ``what`` and the packaged choices."""
    if spec is None:
        return None
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    packaged = RECIPES_DIR / f"{spec}.toml"
    if "/" not in str(spec) and str(spec).startswith(prefix) and packaged.is_file():
        return packaged
    known = ", ".join(sorted(q.stem for q in RECIPES_DIR.glob(f"{prefix}*.toml")))
    raise L2TError(f"{what} not found: {spec} (a .toml file, or one of: {known})")


def typed_table(cls: type, data: dict[str, Any], where: str) -> Any:
    """The dataclass ``cls`` from a TOML table: unknown keys and wrong types are one-line errors; an int
    is accepted for a float field, a bool never for a number; a list field takes a list of strings, a dict
    field a table of integers."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise L2TError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    ref = cls()
    kw = {}
    for key, value in data.items():
        want = type(getattr(ref, key))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, want) and (want is bool or not isinstance(value, bool))
        if want is list:
            ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
        if want is dict:
            ok = isinstance(value, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values())
        if not ok:
            raise L2TError(f"{where}: {key} must be {want.__name__}, got {value!r}")
        kw[key] = value
    return cls(**kw)


def read_recipe(path: Path | None, sections: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """A TOML recipe as one dict per section (``path`` None: all empty); unknown or non-table sections
    are one-line errors."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise L2TError(f"cannot read recipe {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise L2TError(f"recipe {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise L2TError(f"recipe {path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(sections)}")
    bad = [s for s in sections if s in raw and not isinstance(raw[s], dict)]
    if bad:
        raise L2TError(f"recipe {path}: {', '.join(bad)} must be table(s)")
    return {s: dict(raw.get(s, {})) for s in sections}


def resolve_recipe(
    recipe: dict[str, dict[str, Any]], sections: tuple[str, ...], **train: Any
) -> dict[str, dict[str, Any]]:
    """A loaded recipe with every section of ``sections`` present (copied tables; any other section is a
    one-line error) and the ``[train]`` overrides that are not ``None`` applied (``epochs=...``, ``seed=...``)."""
    unknown = sorted(set(recipe) - set(sections))
    if unknown:
        raise L2TError(f"recipe: unknown section(s) {', '.join(unknown)}; known: {', '.join(sections)}")
    out = {s: dict(recipe.get(s, {})) for s in sections}
    out["train"].update({k: v for k, v in train.items() if v is not None})
    return out


def int_or_zero(x: Any) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return 0


class CsvLog:
    """Append-only CSV; on resume, rows past the resumed step are dropped (they were not checkpointed).

    With ``widen``, a row carrying new keys (a loss added on resume) rewrites the file with a wider
    header; otherwise keys outside ``columns`` are ignored.
    """

    def __init__(self, path: Path, columns: list[str], resume_step: int | None, *, widen: bool = True) -> None:
        self.path, self.columns, self.widen = path, columns, widen
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.is_file():
            with path.open(newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int_or_zero(r.get("step")) <= resume_step]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        with self.path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, self.columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        new = [c for c in row if c not in self.columns]
        if self.widen and new:
            with self.path.open(newline="") as fh:
                old = list(csv.DictReader(fh))
            self.columns = [*self.columns, *new]
            self._rewrite(old)
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def lr_at(cfg: Any, step: int, total: int) -> float:
    """Linear warm-up over ``cfg.warmup_steps``, then constant or cosine (``cfg.lr_schedule``) to ``total``."""
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "cosine" and total > cfg.warmup_steps:
        prog = min(1.0, max(0.0, (step - cfg.warmup_steps) / (total - cfg.warmup_steps)))
        return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * prog))
    return cfg.lr * warm


# --------------------------------------------------------------------------- command-line overrides
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _field_types(cls: type) -> dict[str, Any]:
    """Field name -> annotated type of the dataclass ``cls`` (string annotations resolved)."""
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, type(getattr(cls(), f.name))) for f in fields(cls)}


def _parse_typed(text: str, want: Any, where: str) -> Any:
    """``text`` as a value of the annotated type ``want`` (bool, int, float, str, list[str], ``X | None``)."""
    import types
    import typing

    args = typing.get_args(want)
    if typing.get_origin(want) in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        want = next(a for a in args if a is not type(None))
    origin = typing.get_origin(want) or want
    try:
        if origin is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if origin is int:
            return int(text)
        if origin is float:
            return float(text)
        if origin is list:
            return [x.strip() for x in text.split(",") if x.strip()]
        if origin is str:
            return text
    except ValueError:
        pass
    else:
        raise L2TError(
            f"{where}: cannot set a field of type {getattr(origin, '__name__', origin)} from the command line"
        )
    raise L2TError(f"{where}: expected {getattr(origin, '__name__', origin)}, got {text!r}")


def _loss_value(text: str, where: str) -> Any:
    """A loss weight (float) or a loss option (TOML scalar: number, bool or quoted/bare string)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text.strip():
            return text
    raise L2TError(f"{where}: empty value")


def apply_overrides(
    recipe: dict[str, dict[str, Any]], items: Any, schema: dict[str, type], loss_names: Any = ()
) -> dict[str, dict[str, Any]]:
    """The recipe with ``--set KEY=VALUE`` overrides applied (a copy; ``recipe`` is not changed).

    ``KEY`` is ``section.field`` (``train.lr``, ``model.d_model``) or a bare field name found in exactly
    one section of ``schema`` (section -> config dataclass); the value is parsed to the field's type.
    ``loss.NAME=W`` sets a loss weight and ``loss.NAME.OPTION=V`` a loss option (``loss_names``: the known
    losses). An unknown key is a one-line error naming the nearest known keys.
    """
    import difflib

    out = {s: dict(t) for s, t in recipe.items()}
    types = {s: _field_types(cls) for s, cls in schema.items()}
    known = [f"{s}.{k}" for s, ts in types.items() for k in ts] + [f"loss.{n}" for n in loss_names]
    for item in items or ():
        key, sep, text = str(item).partition("=")
        key = key.strip()
        where = f"--set {item}"
        if not sep or not key:
            raise L2TError(f"{where}: expected KEY=VALUE (e.g. train.lr=3e-4)")
        section, _, name = key.rpartition(".") if key.count(".") == 1 else ("", "", key)
        if key.startswith("loss.") and "loss" in out:
            parts = key.split(".")
            if len(parts) not in (2, 3) or (loss_names and parts[1] not in loss_names):
                near = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
                raise L2TError(
                    f"{where}: unknown loss {parts[1]!r}" + (f"; did you mean {', '.join(near)}?" if near else "")
                )
            value = _loss_value(text, where)
            if len(parts) == 2:
                prev = out["loss"].get(parts[1])
                out["loss"][parts[1]] = (prev | {"weight": value}) if isinstance(prev, dict) else value
            else:
                prev = out["loss"].get(parts[1], 1.0)
                table = dict(prev) if isinstance(prev, dict) else {"weight": prev}
                out["loss"][parts[1]] = table | {parts[2]: value}
            continue
        if not section:
            owners = [s for s, ts in types.items() if name in ts]
            if len(owners) > 1:
                raise L2TError(f"{where}: {name} is a field of {', '.join(owners)}; write {owners[0]}.{name}")
            section = owners[0] if owners else ""
        if section not in types or name not in types[section]:
            near = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            bare = {k.split(".", 1)[1]: k for k in known}
            near = near or [bare[b] for b in difflib.get_close_matches(name, list(bare), n=3, cutoff=0.5)]
            hint = f"; did you mean {', '.join(near)}?" if near else f"; sections: {', '.join(types)}"
            raise L2TError(f"{where}: unknown recipe field {key!r}{hint}")
        out[section][name] = _parse_typed(text.strip(), types[section][name], where)
    return out
