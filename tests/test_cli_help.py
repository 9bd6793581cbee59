"""``--help`` answers at once: the overview, every command's help and ``train``'s list of trainers are
built without torch; registries declare names without importing; lazy packages."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from l2t_gs.cli import main as cli_main
from l2t_gs.cli.prog import COMMAND_HELP
from l2t_gs.core.registry import Registry
from l2t_gs.training.trainers import TRAINER_HELP

#: Every command line whose help must not import torch (a trainer's own help loads its module).
LIGHT_HELP = [
    [],
    ["train"],
    ["info"],
    ["render"],
    ["view"],
    ["head"],
    ["head", "build"],
    ["head", "export"],
    ["head", "render"],
    ["avatar"],
    ["avatar", "build"],
    ["avatar", "render"],
    ["avatar", "from-photo"],
    ["avatar", "export-ply"],
    ["avatar", "import-ga"],
    ["data"],
    ["data", "align"],
    ["data", "synth"],
    ["data", "human"],
    ["eval"],
    ["eval-motion"],
]


def test_help_of_every_light_command_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import contextlib, io, json, sys\n"
        "from l2t_gs.cli.main import main\n"
        "texts = []\n"
        f"for argv in {LIGHT_HELP!r}:\n"
        "    buf = io.StringIO()\n"
        "    with contextlib.redirect_stdout(buf):\n"
        "        try:\n"
        "            main([*argv, '--help'])\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, (argv, exc.code)\n"
        "    texts.append(buf.getvalue())\n"
        "heavy = sorted(m for m in ('torch', 'numba', 'av', 'viser') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'texts': texts}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["heavy"] == []
    texts = dict(zip((" ".join(a) for a in LIGHT_HELP), got["texts"], strict=True))
    assert all(t.startswith("usage: l2t-gs") for t in texts.values())
    # the overview lists every command with its one-line help (argparse wraps long lines)
    overview = " ".join(texts[""].split())
    for name, text in COMMAND_HELP.items():
        assert f"{name} {' '.join(text.split())}" in overview, name
    # choices that come from the lazy modules are listed in full
    assert "{auto,torch,gsplat,torch-pure,cpu-fast}" in texts["render"]
    assert "{front,three-quarter,side,orbit}" in texts["render"]
    assert "{front,three-quarter,side,mouth}" in texts["head render"]
    assert "{auto,ignore,apply}" in texts["avatar import-ga"] or "{auto,ignore,apply}" in texts["avatar render"]
    for name, text in TRAINER_HELP.items():
        assert name in texts["train"] and " ".join(text.split()) in " ".join(texts["train"].split()), name


def test_a_trainers_help_loads_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["train", "contact-threshold", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: l2t-gs train contact-threshold" in out and "--holds" in out and "--max-false" in out


def test_overview_and_full_parser_agree() -> None:
    """The overview's bare entries carry the same one-line helps as the registered commands."""
    full = cli_main.build_parser()
    overview = cli_main._parser(None, overview=True)

    def helps(parser: argparse.ArgumentParser) -> dict[str, str]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return {c.dest: c.help for c in sub._choices_actions}

    assert helps(full) == helps(overview) == COMMAND_HELP
    assert list(COMMAND_HELP) == list(cli_main.COMMANDS)


def test_unknown_command_from_the_overview_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["rendr"])
    assert exc.value.code == 2
    assert "invalid choice: 'rendr'" in capsys.readouterr().err


def test_declared_registry_names_need_no_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reg_one.py").write_text("from test_reg_host import REG\nREG.add('one', 1)\n")
    (tmp_path / "reg_two.py").write_text("from test_reg_host import REG\nREG.add('two', 2)\nREG.add('three', 3)\n")
    host = type(sys)("test_reg_host")
    host.REG = Registry("thing", modules={"one": "reg_one", "two": "reg_two", "three": "reg_two"})
    monkeypatch.setitem(sys.modules, "test_reg_host", host)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = host.REG
    assert reg.modules == ("reg_one", "reg_two")
    assert reg.names() == ("one", "two", "three")
    assert "reg_one" not in sys.modules and "reg_two" not in sys.modules  # nothing imported yet
    reg.add("extra", 4)
    assert reg.names() == ("one", "two", "three", "extra")
    assert reg.choices() == ("extra", "one", "two", "three")  # loading imports the modules
    assert reg.get("three") == 3
    # a registry without declared names imports its modules for names(), as choices() does
    (tmp_path / "reg_plain.py").write_text("from test_reg_host import PLAIN\nPLAIN.add('p', 0)\n")
    host.PLAIN = Registry("plain", modules=("reg_plain",))
    assert host.PLAIN.names() == ("p",) == host.PLAIN.choices()


def test_backends_declare_the_names_their_modules_register() -> None:
    from l2t_gs.render.backends import BACKENDS

    names = BACKENDS.names()
    assert set(names) == set(BACKENDS.choices()) and len(names) == len(BACKENDS.choices())
    assert all(BACKENDS.get(n).name == n for n in names)


@pytest.mark.parametrize("package", ["l2t_gs.render", "l2t_gs.gaussians"])
def test_lazy_packages_export_their_submodules_names(package: str) -> None:
    pkg = importlib.import_module(package)
    exports = pkg._EXPORTS
    submodules = {m.name for m in pkgutil.iter_modules(pkg.__path__)}
    # an exported name equal to a submodule's would be replaced by the module once that module loads
    assert not set(exports) & submodules
    assert set(exports.values()) <= submodules
    assert sorted(pkg.__all__) == sorted(exports)
    for name, module in exports.items():
        assert getattr(pkg, name) is getattr(importlib.import_module(f"{package}.{module}"), name)
    assert set(exports) <= set(dir(pkg))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pkg.nope  # noqa: B018
