"""What a P-frame costs against an I-frame of the same picture at the same quality.

    python -m canfvc_codec.lab.intra_share ALL_INTRA.json ESTIMATE.json [--sequence bikes]

Comparing P-frames with the I-frames of the same stream mixes two differences: the pictures and
the quality (a P-frame coded from a P-frame is a little worse). This prices each P-frame of an
estimate record against the intra coder on the same picture at the same PSNR-RGB, read off that
picture's own intra RD curve (an estimate of the same frames with every frame intra, ``"gop": 1``,
at several λ; log-rate linear in PSNR between its points, extended from the nearest two). The
ratio of the sums is the share of the intra bits that conditional coding still spends: 1 means
inter coding saves nothing, 0.5 that it halves the rate.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.lab.estimate import ESTIMATE, read_record

MIN_CURVE_POINTS = 2


def intra_bpp(curve: list[tuple[float, float]], psnr: float) -> float:
    """The rate of the intra curve ``[(psnr, bpp), ...]`` at ``psnr``."""
    curve = sorted(curve)
    if len(curve) < MIN_CURVE_POINTS:
        raise InputError(f"an intra curve needs {MIN_CURVE_POINTS} λ points, got {len(curve)}")
    last = len(curve) - 2
    k = next((k for k in range(last) if psnr <= curve[k + 1][0]), last)
    (q0, r0), (q1, r1) = curve[k], curve[k + 1]
    if q1 <= q0 or min(r0, r1) <= 0:
        raise InputError("an intra curve needs rising PSNR and positive rates at every λ")
    t = (psnr - q0) / (q1 - q0)
    return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))


def intra_share(all_intra: dict, record: dict, sequence: str) -> list[dict]:
    """Per λ of ``record``: P-frame bits over the intra bits of the same pictures at the same
    PSNR-RGB, with the plain P/I ratio beside it."""
    try:
        intra_points = all_intra["sequences"][sequence]["codecs"][ESTIMATE]
        points = record["sequences"][sequence]["codecs"][ESTIMATE]
    except KeyError:
        raise InputError(f"both records need estimates of {sequence}") from None
    rows = []
    for point in points:
        if point.get("bpp-P") is None or point.get("bpp-I") is None:
            continue  # no P-frame (or no I-frame) to compare
        inter = [f for f in point["frames"] if f["type"] == "P"]
        same_quality = 0.0
        for frame in inter:
            k = frame["frame"]
            if any(k >= len(p["frames"]) for p in intra_points):
                raise InputError(f"the all-intra record lacks frame {k} of {sequence}")
            curve = [(p["frames"][k]["psnr-rgb"], p["frames"][k]["bpp"]) for p in intra_points]
            same_quality += intra_bpp(curve, frame["psnr-rgb"])
        p_bits = sum(f["bpp"] for f in inter)
        rows.append(
            {
                "lambda": point["value"],
                "p_frames": len(inter),
                "p_over_i": point["bpp-P"] / point["bpp-I"],
                "p_over_same_intra": p_bits / same_quality,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m canfvc_codec.lab.intra_share", description=__doc__
    )
    parser.add_argument("all_intra", type=Path, help="estimate of the frames, every one intra")
    parser.add_argument("estimate", type=Path, help="estimate of the same frames as coded")
    parser.add_argument("--sequence", default="bikes")
    options = parser.parse_args(argv)
    try:
        rows = intra_share(
            read_record(options.all_intra), read_record(options.estimate), options.sequence
        )
    except CanfvcError as exc:
        sys.exit(f"canfvc: error: {exc}")
    for row in rows:
        print(
            f"λ {row['lambda']:g}: {row['p_frames']} P-frames, P/I {row['p_over_i']:.3f}, "
            f"P against intra at the same PSNR {row['p_over_same_intra']:.3f}"
        )


if __name__ == "__main__":
    main()
