"""The interactive viser viewer (installed as ``l2t_gs.viewer``)."""
