"""``avatar from-photo`` on a list of photos: the issue's measures, one table row per face.

    python benchmarks/photo_avatar.py PHOTO[@FACE] ... [--work DIR] [--min-eye-distance PX]

For each photo (``@FACE`` picks a face, largest first) an avatar is built with the defaults and its
``fit.json`` read back: eye distance (pixels in the photo as used), head turn (degrees from facing the
camera), landmark error of the fit and of the re-render against the photo (the face-mesh model run on
both; over the eye distance, target <= 0.04), face-region PSNR (target >= 24 dB), wall seconds. A photo
that is refused (no face, too small) gets its one-line error in the row. Prints a markdown table, the
means over the faces fitted and how many meet each target.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from l2t_gs.authoring.photo.build import MIN_EYE_DISTANCE, PhotoAvatarConfig, build_photo_avatar
from l2t_gs.errors import L2TError


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("photos", nargs="+", metavar="PHOTO[@FACE]")
    ap.add_argument("--work", default=None, help="folder for the avatars (default: a temporary one)")
    ap.add_argument("--min-eye-distance", type=float, default=MIN_EYE_DISTANCE)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="photo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print("| photo | eye px | head turn, deg | fit error | re-render error (<= 0.04) | face PSNR, dB (>= 24) | s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for i, spec in enumerate(args.photos):
        path, _, face = spec.partition("@")
        cfg = PhotoAvatarConfig(face=int(face) if face else None, min_eye_distance=args.min_eye_distance)
        t0 = time.perf_counter()
        try:
            fit = build_photo_avatar(path, work / f"{i:02d}-{Path(path).stem}", cfg).fit
        except L2TError as exc:
            print(f"| {spec} | | | | {exc} | | |")
            continue
        turn = math.degrees(math.hypot(*(math.radians(a) for a in fit["head_rotation_deg"])))
        rr, db = fit["rerender_landmark_error_iod"], fit["face_psnr_db"]
        rows.append((rr, db))
        print(
            f"| {spec} | {fit['eye_distance_px']:.0f} | {turn:.0f} | {fit['landmark_error_iod']:.3f} | "
            f"{'-' if rr is None else f'{rr:.3f}'} | {db:.1f} | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )
    if rows:
        found = [r for r, _ in rows if r is not None]
        print(
            f"\n{len(rows)} faces fitted: re-render error mean {sum(found) / max(len(found), 1):.3f}, "
            f"<= 0.04 on {sum(r <= 0.04 for r in found)}; face PSNR mean {sum(d for _, d in rows) / len(rows):.2f} dB, "
            f">= 24 on {sum(d >= 24 for _, d in rows)}"
        )


if __name__ == "__main__":
    main()
