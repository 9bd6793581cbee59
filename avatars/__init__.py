"""Shipped avatars (installed as ``l2t_gs.avatars``); each sub-folder is one avatar."""
