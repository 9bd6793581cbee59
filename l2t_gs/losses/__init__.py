"""Training losses that use other networks: the SyncNet3D sync loss (:mod:`l2t_gs.losses.sync`)."""

from l2t_gs.losses.sync import SyncLoss, sync_loss_factory

__all__ = ["SyncLoss", "sync_loss_factory"]
