"""Training losses in one registry (:data:`l2t_gs.training.losses.registry.LOSSES`): the motion losses
(:mod:`~l2t_gs.training.losses.motion`), the SyncNet3D sync loss (:mod:`~l2t_gs.training.losses.sync`) and the
lip-read loss (:mod:`~l2t_gs.training.losses.lipread`)."""
