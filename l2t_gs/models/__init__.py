"""Neural networks: audio encoders, the Audio2Mesh student, SyncNet3D, the lip reader."""
