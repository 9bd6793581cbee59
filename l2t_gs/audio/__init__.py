"""Audio input/output and features (the first layer: audio -> motion -> rig -> gaussians -> render)."""

from l2t_gs.audio.io import audio_duration, load_audio, read_audio, resample, save_wav, to_mono

__all__ = ["audio_duration", "load_audio", "read_audio", "resample", "save_wav", "to_mono"]
