"""to_uint8: one rounding rule (clamp to [0, 1], times 255, half up) on every path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from l2t_gs.render.image import to_uint8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_the_rule_at_the_rounding_edges(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 40, 50, 3, generator=g) * 1.4 - 0.2).to(dtype)
    edges = torch.tensor([0.5, 1.5, 127.5, 254.5, 254.49, -3.0, 300.0, 255.0, 0.0], dtype=dtype) / 255
    x.view(-1)[: edges.numel()] = edges
    got = to_uint8(x)
    assert got.dtype == np.uint8 and got.shape == (2, 40, 50, 3)
    want = np.floor(np.clip(x.double().numpy(), 0, 1) * 255 + 0.5)
    # exact except where the float product lands within rounding of a half step
    assert np.abs(got.astype(int) - want).max() <= 1
    assert (got.astype(int) == want).mean() > 0.999
    np.testing.assert_array_equal(got, (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())  # the torch form
    assert list(got.reshape(-1)[:9]) == [1, 2, 128, 255, 254, 0, 255, 255, 0]
