"""The layer rules of docs/architecture.md, checked on the import graph of the source tree.

Every ``import``/``from ... import`` of a project module counts, at module level or inside a function:
imports may only go to the same or a lower layer, and the module graph has no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Layers from the bottom up; a module may import only from its own layer or the ones listed before it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("l2t_gs.errors", "l2t_gs.core", "l2t_gs.io", "l2t_gs.assets"),
    ("l2t_gs.audio",),
    ("l2t_gs.speech",),
    ("l2t_gs.rig",),
    ("l2t_gs.motion",),
    ("l2t_gs.models",),
    ("l2t_gs.gaussians",),
    ("l2t_gs.render",),
    ("l2t_gs.catalog", "l2t_gs.pipeline"),
    ("l2t_gs.authoring",),
    ("l2t_gs.training",),
    ("l2t_gs.viewer",),
    ("l2t_gs.cli", "l2t_gs.__main__"),
)
PACKAGE_DIRS = {"l2t_gs": ROOT / "l2t_gs", "l2t_gs.training": ROOT / "training", "l2t_gs.viewer": ROOT / "viewer",
                "l2t_gs.avatars": ROOT / "avatars"}  # fmt: skip


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for prefix, base in PACKAGE_DIRS.items():
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("").parts
            if rel and rel[-1] == "__init__":
                rel = rel[:-1]
            name = ".".join((prefix, *rel)) if rel else prefix
            mods[name] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported dotted name refers to (a module, or a name inside one)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
        else:
            continue
        for t in targets:
            r = _resolve(t)
            if r is not None and r != name:
                out.add(r)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    if module.startswith("l2t_gs.avatars") or module == "l2t_gs":
        return 0
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md")


def test_every_module_has_a_layer() -> None:
    for m in MODULES:
        layer_of(m)


def test_imports_run_down_the_layers() -> None:
    upward = [
        f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if layer_of(t) > layer_of(m) and m != "l2t_gs"
    ]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), ignoring package __init__ re-exports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def edges(v: str) -> list[str]:
        # a package's __init__ importing its own submodules is how it re-exports; not a dependency cycle
        return [w for w in GRAPH[v] if not w.startswith(v + ".")]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_checker_sees_a_cycle_and_an_upward_import(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = {"l2t_gs.rig.a": {"l2t_gs.render.b"}, "l2t_gs.render.b": {"l2t_gs.rig.a"}}
    monkeypatch.setattr(__import__(__name__), "GRAPH", fake)
    assert _cycles() == [["l2t_gs.render.b", "l2t_gs.rig.a"]]
    assert layer_of("l2t_gs.render.b") > layer_of("l2t_gs.rig.a")


def test_registry_lists_lazy_modules_and_restores_overrides() -> None:
    from l2t_gs.core.registry import Registry
    from l2t_gs.errors import L2TError
    from l2t_gs.render.backends import BACKENDS, backend_choices

    assert {"gsplat", "cpu-fast", "torch-pure"} <= set(BACKENDS.choices())
    assert backend_choices()[:2] == ("auto", "torch")
    reg: Registry[int] = Registry("thing")
    reg.add("a", 1, "first")
    with pytest.raises(L2TError, match="registered twice"):
        reg.add("a", 2)
    with reg.overridden("a", 5):
        assert reg.get("a") == 5
    with reg.overridden("b", 7):
        assert reg.choices() == ("a", "b")
    assert reg.get("a") == 1 and reg.choices() == ("a",) and reg.help("a") == "first"
    with pytest.raises(L2TError, match="unknown thing 'c'; choose from a"):
        reg.get("c")
