"""Training losses that use other networks: the SyncNet3D sync loss and the teacher lip-reading loss.

Import from the sub-modules (:mod:`l2t_gs.losses.sync`, :mod:`l2t_gs.losses.lipread`); this package
imports nothing heavy by itself.
"""
