"""The shipped model and avatar render bit-identical frames through the public API.

``tests/data/reference_frames.npz`` was rendered before the layout refactor (the sample clip, 96x96,
front camera, CPU backend); any change to these pixels must be deliberate (a new model, avatar or
rasterizer), and then the reference is regenerated with ``python tests/test_reference_frames.py``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from l2t_gs.assets import asset_path
from l2t_gs.pipeline import RenderConfig, render_frames
from l2t_gs.render.backend_cpu import fast_cpu_available

REFERENCE = Path(__file__).parent / "data" / "reference_frames.npz"
CONFIG = RenderConfig(size=96, fps=25.0, camera="front", backend="torch", device="cpu", quiet=True)


def _render(indices: list[int]) -> np.ndarray:
    wanted = set(indices)
    frames = render_frames(asset_path("samples", "hello.wav"), CONFIG)
    picked = {i: f for i, f in enumerate(itertools.islice(frames, max(indices) + 1)) if i in wanted}
    return np.stack([picked[i] for i in indices])


@pytest.mark.skipif(not fast_cpu_available(), reason="the reference was rendered by the compiled CPU path")
def test_shipped_model_and_avatar_render_the_reference_frames() -> None:
    ref = np.load(REFERENCE)
    got = _render([int(i) for i in ref["indices"]])
    assert got.shape == ref["frames"].shape
    assert np.array_equal(got, ref["frames"]), f"{int((got != ref['frames']).sum())} pixel values differ"


if __name__ == "__main__":  # regenerate after a deliberate change
    idx = [0, 12, 30]
    np.savez_compressed(REFERENCE, frames=_render(idx), indices=np.array(idx))
    print(f"wrote {REFERENCE}", file=sys.stderr)
