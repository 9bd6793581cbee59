"""Motion: per-frame face rig parameters and vertices (articulation from phones; post-processing)."""
