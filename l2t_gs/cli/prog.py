"""The command line's name (``l2t-gs``) and its commands' one-line helps, shared by ``l2t_gs.cli.main``
(which shows the overview without importing any command module) and the modules that register the
commands, and by the standalone ``python -m l2t_gs.cli.train`` entry, without one importing the other."""

from __future__ import annotations

PROG = "l2t-gs"

#: Sub-command -> its one-line help, in help order (each command module registers its parser with it).
COMMAND_HELP: dict[str, str] = {
    "info": "show versions, device, gsplat status, avatars and models",
    "render": "speech audio -> talking avatar MP4 (H.264 + AAC)",
    "view": "interactive viewer in the browser: the avatar as Gaussian splats, driven by speech",
    "head": "the FLAME-format head: build, export, render",
    "avatar": "avatar tools: build the default avatar, export a frame as a 3DGS PLY, import GaussianAvatars, "
    "make one from a photo",
    "data": "speech data: forced alignment, TTS with phone timings, the synthetic and human corpora",
    "train": "train networks (Audio2Mesh, SyncNet3D, lip reader, ...; `train --help` lists them)",
    "eval": "score a model on a dataset split: LVE, FDD, lip closure on p/b/m, lip-opening correlation",
    "eval-motion": "head-motion, blink and gaze statistics vs reference distributions (amplitude, spectrum, BA, ...)",
}
