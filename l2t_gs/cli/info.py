"""``l2t-gs info``: versions, compute device, renderer status, shipped avatars and models.

It answers without importing torch, gsplat or numba (seconds of start-up): versions come from package
metadata, the device and gsplat's kernels from files (:mod:`l2t_gs.core.probe`). ``--probe`` imports
torch and gsplat and asks them instead, for the definitive answer.
"""

from __future__ import annotations

import argparse
import json
import platform

from l2t_gs.cli.prog import COMMAND_HELP


def collect_info(probe: bool = False) -> dict:
    """Everything ``l2t-gs info`` reports, as a JSON-serialisable dict; ``probe``: ask torch and gsplat."""
    from l2t_gs import __version__
    from l2t_gs.catalog import list_avatars, list_head_models, list_models
    from l2t_gs.core import probe as quick

    numba = quick.package_version("numba")
    info: dict = {
        "l2t-gs": __version__,
        "python": platform.python_version(),
        "torch": quick.package_version("torch") or "not installed",
        "numba": numba or "not installed",
        "cpu_renderer": "cpu-fast (compiled, numba)" if numba else "torch-pure (install numba for cpu-fast)",
        "cpus": quick.usable_cpus(),
    }
    if probe:
        import torch

        from l2t_gs.core.device import describe_device
        from l2t_gs.render.backend_gsplat import gsplat_status

        device, (ok, gs) = describe_device(), gsplat_status()
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), probed=True)
    else:
        device = quick.quick_device()
        ok, gs = quick.quick_gsplat_status(device)
        info["probed"] = False
    info.update(device=device, gsplat_cuda=ok, gsplat=gs)
    info.update(head_models=list_head_models(), avatars=list_avatars(), models=list_models())
    return info


def run(args: argparse.Namespace) -> int:
    info = collect_info(probe=args.probe)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "(none)"
        print(f"{key:<{width}}  {value}")
    if not info["probed"]:
        print("(device and gsplat read from files without importing torch; --probe asks torch and gsplat)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help=COMMAND_HELP["info"])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--probe", action="store_true", help="import torch and gsplat to check the device and kernels (slower)"
    )
    p.set_defaults(func=run)
