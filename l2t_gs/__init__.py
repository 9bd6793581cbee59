"""l2t-gs: speech to talking 3D Gaussian Splatting head avatars."""

__version__ = "0.1.0"
