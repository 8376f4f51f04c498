"""Encode a video with canfvc from Python, decode it frame by frame, and score it.

    python docs/examples/encode_decode.py clip.y4m                  # λ 1024
    python docs/examples/encode_decode.py clip.mp4 --bitrate 500k --frames 16
    python docs/examples/encode_decode.py clip.y4m --model random-tiny   # untrained, fast

It codes INPUT (any video ``canfvc encode`` reads) into INPUT's name with .cvc, prints each
frame's type, bytes and PSNR-RGB as the encoder measured them, then decodes the stream one frame
at a time as RGB and compares each with the input's RGB. docs/api.md describes the calls.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import canfvc_codec as canfvc
from canfvc_codec.io import open_reader
from canfvc_codec.io.color import yuv_to_rgb


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two RGB pictures in [0, 1]."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1 / mse) if mse else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--model", default="small", help="a model name or a weights file")
    parser.add_argument("--lambda", dest="lmbda", type=float, help="λ [default: 1024]")
    parser.add_argument("--bitrate", help="a target bitrate instead of λ, e.g. 500k")
    parser.add_argument("--frames", type=int, help="code at most this many frames")
    args = parser.parse_args()

    model = canfvc.load_model(args.model)  # loaded once, for any number of calls
    stream = args.input.with_suffix(".cvc")
    result = canfvc.encode(
        args.input,
        stream,
        model=model,
        lmbda=args.lmbda,
        bitrate=args.bitrate,
        frames=args.frames,
        overwrite=True,
        progress=True,
    )
    print(f"{stream}: {result.bytes} bytes, {result.kbps:.1f} kbit/s, {result.bpp:.4f} bpp, "
          f"λ {result.lmbda:g}, PSNR-RGB {result.psnr_rgb:.2f} dB")  # fmt: skip
    for frame in result.frames:
        print(f"  frame {frame.index}: {frame.type} {frame.bytes} B {frame.psnr_rgb:.2f} dB")

    # Decoding is lazy: each frame is decoded when the loop asks for it, so memory holds one
    # frame (and the decoder's references) whatever the length of the video.
    with (
        canfvc.decode(stream, model=model, rgb=True) as decoded,
        open_reader(str(args.input), frames=args.frames) as source,
    ):
        for index, (rgb, original) in enumerate(zip(decoded, source, strict=True)):
            reference = yuv_to_rgb(original, source.info).permute(1, 2, 0).numpy()
            print(f"  decoded frame {index}: PSNR-RGB {psnr(rgb, reference):.2f} dB")

    header = canfvc.info(stream)["header"]  # what `canfvc info` shows
    print(f"model {header['model_id']}, {header['width']}x{header['height']}, "
          f"GOP {header['gop']}, λ {header['lambda']:g}")  # fmt: skip


if __name__ == "__main__":
    main()
