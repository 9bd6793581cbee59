"""Training losses: motion losses, the SyncNet3D sync loss and the lip-read loss, in one registry."""
