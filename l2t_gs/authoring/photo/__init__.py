"""One photo -> a talking Gaussian avatar, offline on a CPU (``l2t-gs avatar from-photo``).

Modules: :mod:`.landmarks` (MediaPipe face detection + 468-point face mesh through LiteRT),
:mod:`.correspondence` (face-mesh points on the built-in head, shipped once), :mod:`.fit` (rig +
camera fit to the landmarks), :mod:`.appearance` (photo colours, symmetry fill, photometric
refinement), :mod:`.build` (the whole job, written atomically with ``fit.json``).
"""
