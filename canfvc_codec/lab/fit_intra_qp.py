"""Fit the λ -> QP mapping of HEVC intra I-frames (canfvc_codec.hevc.qp_for_lambda).

    python -m canfvc_codec.lab.fit_intra_qp --qps 24,26,...,46 \\
        --out bench/results/hevc_intra/qp_fit.json \\
        --runs bench/results/real/35f6baed47735d0a_{bikes,bigbuckbunny}_l{256,512,1024,2048}

The target: at every λ the HEVC I-frames sit at the quality the P-frames reach at that λ. For each
real-file run given (``canfvc eval`` folders of the dev clips, ANFIC I-frames, one λ each), the
target is the mean PSNR-RGB of its P-frames. The dev frames of each clip (every ``--step``-th) are
coded as HEVC intra pictures at each QP of ``--qps`` (canfvc_codec.hevc.HevcIntra, the encoder's
own coder) and scored like the runs (eval.metrics.frame_metrics); the QP at which the mean
PSNR-RGB meets the target is read off that curve by linear interpolation. A least-squares line
QP = a - b · log2(λ / 1024) through those QPs gives the constants of canfvc_codec.hevc.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from canfvc_codec.datasets import DEV_RANGES, clip_path
from canfvc_codec.eval.metrics import frame_metrics
from canfvc_codec.hevc import REFERENCE_LAMBDA, HevcIntra
from canfvc_codec.io import open_reader

DEFAULT_QPS = tuple(range(24, 45, 2))
PSNR_RGB = "psnr-rgb"


def p_frame_targets(run_dirs: list[Path]) -> list[dict]:
    """(sequence, λ, mean PSNR-RGB of the P-frames, P-frames, frames) of each run's points."""
    targets = []
    for run in run_dirs:
        record = json.loads((run / "results.json").read_text(encoding="utf-8"))
        for name, seq in record["sequences"].items():
            for point in seq["codecs"].get("canfvc", []):
                inter = [f[PSNR_RGB] for f in point["frames"] if f.get("type") == "P"]
                targets.append(
                    {
                        "sequence": name,
                        "lambda": point["value"],
                        "p_psnr_rgb": float(np.mean(inter)),
                        "p_frames": len(inter),
                        "frames": len(point["frames"]),
                        "run": str(run),
                    }
                )
    return targets


def hevc_curve(clip: str, start: int, count: int, step: int, qps: tuple[int, ...]) -> dict:
    """Mean bpp and PSNR-RGB of HEVC intra pictures of every ``step``-th frame, per QP."""
    with open_reader(str(clip_path(clip)), start=start, frames=count) as reader:
        info = reader.info
        frames = [frame for index, frame in enumerate(reader) if index % step == 0]
    rows = []
    for qp in qps:
        coder = HevcIntra(info, qp)
        bits, quality = [], []
        for frame in frames:
            payload = coder.encode(frame)
            bits.append(8 * len(payload) / (info.width * info.height))
            quality.append(frame_metrics(frame, coder.decode(payload), info)[PSNR_RGB])
        rows.append({"qp": qp, "bpp": float(np.mean(bits)), PSNR_RGB: float(np.mean(quality))})
        print(f"{clip} qp {qp}: {rows[-1]['bpp']:.4f} bpp {rows[-1][PSNR_RGB]:.2f} dB", flush=True)
    return {"clip": clip, "start": start, "frames": len(frames), "step": step, "points": rows}


def qp_at(curve: dict, psnr_rgb: float) -> float:
    """The QP at which the curve's mean PSNR-RGB (falling with QP) is ``psnr_rgb``."""
    qps = [p["qp"] for p in curve["points"]]
    quality = [p[PSNR_RGB] for p in curve["points"]]
    if not min(quality) <= psnr_rgb <= max(quality):
        raise ValueError(f"{psnr_rgb:.2f} dB lies outside the QPs measured ({qps[0]}..{qps[-1]})")
    return float(np.interp(psnr_rgb, quality[::-1], qps[::-1]))


def fit(targets: list[dict]) -> dict:
    """Least squares QP = a - b · log2(λ / REFERENCE_LAMBDA) over every target."""
    octaves = np.array([math.log2(t["lambda"] / REFERENCE_LAMBDA) for t in targets])
    qps = np.array([t["qp"] for t in targets])
    slope, intercept = np.polyfit(octaves, qps, 1)
    residuals = qps - (intercept + slope * octaves)
    return {
        "qp_at_reference_lambda": float(intercept),
        "qp_per_octave": float(-slope),
        "reference_lambda": REFERENCE_LAMBDA,
        "rms_residual_qp": float(np.sqrt(np.mean(residuals**2))),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--qps", default=",".join(map(str, DEFAULT_QPS)))
    parser.add_argument("--step", type=int, default=2, help="code every STEP-th dev frame")
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args(argv)
    qps = tuple(int(v) for v in options.qps.split(","))
    targets = p_frame_targets(options.runs)
    names = {Path(r.clip).stem: r for r in DEV_RANGES}
    curves = {}
    for name in sorted({t["sequence"] for t in targets}):
        if name not in names:
            sys.exit(f"fit_intra_qp: {name} is not a dev clip")
        dev = names[name]
        curves[name] = hevc_curve(dev.clip, dev.start, dev.count, options.step, qps)
    for target in targets:
        target["qp"] = qp_at(curves[target["sequence"]], target["p_psnr_rgb"])
    result = {"fit": fit(targets), "targets": targets, "hevc_intra": curves}
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["fit"], indent=1))


if __name__ == "__main__":
    main()
