"""Measure how the face-mesh model's relative depth relates to the true one (``DEPTH_SCALE``, ``DEPTH_TILT``
in l2t_gs/authoring/photo/fit.py) on renders of the default avatar.

Usage: python docs/scripts/photo_depth_calibration.py
"""

from __future__ import annotations

import math

from l2t_gs.authoring.photo.fit import DEPTH_VIEWS, calibrate_depth


def main() -> None:
    scale, tilt, table = calibrate_depth()
    print("azimuth  elevation  distance  scale  tilt")
    for (azimuth, elevation, distance), (s, t) in zip(DEPTH_VIEWS, table, strict=True):
        print(f"{azimuth:7.0f}  {elevation:9.0f}  {distance:8.2f}  {s:5.3f}  {t:5.3f}")
    print(f"median: scale {scale:.3f}, tilt {tilt:.3f} ({math.degrees(math.atan(tilt)):.1f} degrees of pitch)")


if __name__ == "__main__":
    main()
