"""``l2t-gs info``: versions, compute device, gsplat status, shipped avatars and models."""

from __future__ import annotations

import argparse
import json
import platform


def collect_info() -> dict:
    """Everything ``l2t-gs info`` reports, as a JSON-serialisable dict."""
    import torch

    from l2t_gs import __version__
    from l2t_gs.catalog import list_avatars, list_head_models, list_models
    from l2t_gs.core.device import describe_device
    from l2t_gs.render.backend_gsplat import gsplat_status

    ok, gs = gsplat_status()
    device = describe_device()
    return {
        "l2t-gs": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "gsplat_cuda": ok,
        "gsplat": gs,
        "head_models": list_head_models(),
        "avatars": list_avatars(),
        "models": list_models(),
    }


def run(args: argparse.Namespace) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "(none)"
        print(f"{key:<{width}}  {value}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show versions, device, gsplat status, avatars and models")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)
