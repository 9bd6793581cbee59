"""The lip-gap contact loss of Audio2Mesh training."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from l2t_gs.assets import asset_path
from l2t_gs.errors import L2TError
from l2t_gs.training.losses.registry import LOSSES


def _ctx(pred, target, step=0):
    mask = torch.ones(pred.shape[:2], dtype=torch.bool)
    return SimpleNamespace(pred=pred, target=target, scale=1000.0, mask=mask, step=step)


def test_zero_when_equal_and_boosted_on_closures():
    with np.load(asset_path("head", "l2t_head.npz")) as z:
        lo = int(z["landmark_lower_lip_mid"][0])  # the upper lip vertex stays at the origin
    fn = LOSSES.get("lip_gap")({"contact_boost": 10.0}, SimpleNamespace(n_verts=7931), torch.device("cpu"))
    target = torch.zeros(1, 2, 7931, 3)
    target[0, 1, lo, 1] = -10.0  # frame 0: lips closed (gap 0 mm), frame 1: open 10 mm (mm units)
    assert float(fn(_ctx(target.clone(), target))) == 0.0
    miss_closed = target.clone()
    miss_closed[0, 0, lo, 1] = -3.0  # predicted 3 mm where the GT closes
    miss_open = target.clone()
    miss_open[0, 1, lo, 1] = -7.0  # predicted 7 mm where the GT opens 10 mm
    a, b = float(fn(_ctx(miss_closed, target))), float(fn(_ctx(miss_open, target)))
    assert a == pytest.approx(11 * 9 / 2) and b == pytest.approx(9 / 2)
    # start_step: off before it (training steps), on from it and in validation (step -1)
    late = LOSSES.get("lip_gap")({"start_step": 5}, SimpleNamespace(n_verts=7931), torch.device("cpu"))
    assert float(late(_ctx(miss_closed, target, step=4))) == 0.0
    assert float(late(_ctx(miss_closed, target, step=5))) == pytest.approx(a)
    assert float(late(_ctx(miss_closed, target, step=-1))) == pytest.approx(a)
    with pytest.raises(L2TError, match="start_step"):
        LOSSES.get("lip_gap")({"start_step": -1}, SimpleNamespace(n_verts=7931), torch.device("cpu"))


def test_other_topologies_need_a_pair():
    with pytest.raises(L2TError, match="pair"):
        LOSSES.get("lip_gap")({}, SimpleNamespace(n_verts=5023), torch.device("cpu"))
    fn = LOSSES.get("lip_gap")({"pair": [0, 1]}, SimpleNamespace(n_verts=5023), torch.device("cpu"))
    x = torch.zeros(1, 3, 5023, 3)
    assert float(fn(_ctx(x, x))) == 0.0
