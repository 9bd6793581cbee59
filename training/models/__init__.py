"""Networks only training and evaluation need: SyncNet3D (with its mel front-end) and the lip reader."""
