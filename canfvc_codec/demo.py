"""`make demo`: encode and decode a real clip with the canfvc commands; report bpp and PSNR.

The clip is the development range of ``bikes.mp4`` (never used for training). Encoding and
decoding go through the real ``canfvc`` commands, exactly as a user would run them, once per
intra coder asked for (``--intra-coders anfic,hevc``: the model's I-frames, then HEVC intra's).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from canfvc_codec.datasets import DEV_RANGES, clip_path
from canfvc_codec.defaults import DEFAULT_LAMBDA
from canfvc_codec.errors import CanfvcError
from canfvc_codec.hevc import INTRA_CODERS
from canfvc_codec.io import Frame, open_reader, open_writer
from canfvc_codec.psnr import psnr_from_mse

DEMO_RANGE = DEV_RANGES[0]
# PSNR-YUV weights the Y, U and V plane PSNRs 6:1:1, as is common practice.
YUV_WEIGHTS = (6 / 8, 1 / 8, 1 / 8)


def _canfvc(*args: str) -> None:
    """Run one canfvc command; its own error line is already on stderr when it fails."""
    result = subprocess.run([sys.executable, "-m", "canfvc_codec", *args])
    if result.returncode != 0:
        sys.exit(f"demo: 'canfvc {args[0]}' failed (exit status {result.returncode})")


def _psnr_yuv(ref: Frame, rec: Frame, peak: float) -> float:
    total = 0.0
    for weight, a, b in zip(YUV_WEIGHTS, (ref.y, ref.u, ref.v), (rec.y, rec.u, rec.v), strict=True):
        mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
        total += weight * psnr_from_mse(mse, peak)
    return total


def _intra_coders(text: str) -> list[str]:
    coders = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in coders if name not in INTRA_CODERS]
    if not coders or unknown:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(INTRA_CODERS)}, not {text!r}")
    return coders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="canfvc demo on a real clip")
    parser.add_argument("--lambda", dest="lmbda", type=float, default=DEFAULT_LAMBDA)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--model", default=None, help="model name or path (default: canfvc's)")
    parser.add_argument(
        "--intra-coders",
        type=_intra_coders,
        default=list(INTRA_CODERS),
        help="comma-separated canfvc encode --intra-coder values, one run each",
    )
    args = parser.parse_args(argv)

    source = clip_path(DEMO_RANGE.clip)
    frames = min(args.frames, DEMO_RANGE.count)
    with tempfile.TemporaryDirectory(prefix="canfvc-demo-") as tmp:
        work = Path(tmp)
        original = work / "original.y4m"
        print(
            f"demo: {source.name} frames {DEMO_RANGE.start}-{DEMO_RANGE.start + frames - 1}, "
            f"lambda {args.lmbda:g}",
            flush=True,
        )
        with open_reader(str(source), start=DEMO_RANGE.start, frames=frames) as reader:
            with open_writer(str(original), reader.info) as writer:
                for frame in reader:
                    writer.write(frame)
        for intra_coder in args.intra_coders:
            _code(original, work / intra_coder, args.lmbda, args.model, intra_coder)


def _code(original: Path, work: Path, lmbda: float, model: str | None, intra_coder: str) -> None:
    """Encode, decode and describe ``original`` with one intra coder; print bpp and PSNR."""
    work.mkdir()
    coded, decoded = work / "demo.cvc", work / "decoded.y4m"
    model_args = ["--model", model] if model else []
    _canfvc(
        "encode", str(original), "-o", str(coded), "--lambda", str(lmbda),
        "--intra-coder", intra_coder, *model_args,
    )  # fmt: skip
    _canfvc("decode", str(coded), "-o", str(decoded), *model_args)
    _canfvc("info", str(coded))

    with open_reader(str(original)) as ref_reader, open_reader(str(decoded)) as rec_reader:
        info = ref_reader.info
        peak = float((1 << info.bit_depth) - 1)
        psnrs = [_psnr_yuv(a, b, peak) for a, b in zip(ref_reader, rec_reader, strict=True)]
    size = coded.stat().st_size
    bpp = size * 8 / (info.width * info.height * len(psnrs))
    print(
        f"demo result ({intra_coder} I-frames): {len(psnrs)} frames {info.width}x{info.height}, "
        f"{size} bytes, {bpp:.4f} bpp, PSNR-YUV {np.mean(psnrs):.2f} dB"
    )


if __name__ == "__main__":
    try:
        main()
    except CanfvcError as exc:
        sys.exit(f"demo: {exc}")
