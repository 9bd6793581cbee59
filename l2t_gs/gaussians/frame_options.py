"""Choices for reading a motion file's per-frame rig parameters (no torch: ``--help`` lists them)."""

from __future__ import annotations

#: How ``dynamic_offset`` is treated: by the meaning of its source file, never, or always.
DYNAMIC_OFFSET_MODES: tuple[str, ...] = ("auto", "ignore", "apply")
