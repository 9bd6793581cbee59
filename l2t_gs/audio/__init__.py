"""Audio input/output and features (the first layer: audio -> motion -> rig -> gaussians -> render)."""
