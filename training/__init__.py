"""Training recipes and entry points (installed as ``l2t_gs.training``)."""
