"""How far the intra coder's transforms reach at any rate, beside what it codes at each λ.

    python -m canfvc_codec.lab.ceiling bikes_dev.y4m --start 0 --frames 2 --model MODEL.pt

A coder reconstructs from rounded latents, so its quality at a high λ is bounded by what its
analysis and synthesis reach with no rounding at all (:meth:`AnfCoder.unquantised
<canfvc_codec.networks.anf_coder.AnfCoder.unquantised>`): the ceiling. When the coded PSNR at the
highest λ sits just under the ceiling, more rate buys little, and it is the transforms, not the
entropy model, that hold the top of the RD curve down. The inter coder's ceiling on P-frames is
in ``python -m canfvc_codec.lab.flow --chain``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from canfvc_codec.defaults import ANCHOR_LAMBDAS
from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.lab.flow import add_clip_arguments, decoded_psnr, open_clip, summary
from canfvc_codec.networks import VideoModel
from canfvc_codec.networks.video import pad_to_multiple


@torch.no_grad()
def intra_ceiling(
    model: VideoModel, frames: Sequence[torch.Tensor], lambdas: Sequence[float]
) -> dict[str, list[float]]:
    """Per frame (1, 3, H, W): PSNR-RGB of the intra coder's unquantised reconstruction
    ("ceiling"), and at each λ the coded PSNR-RGB and estimated bpp. ``model`` in eval mode
    rounds the latents as coding rounds them."""
    if not frames:
        raise InputError("need at least one frame")
    rows: dict[str, list[float]] = {"ceiling": []}
    for lmbda in lambdas:
        rows[f"psnr, λ {lmbda:g}"] = []
        rows[f"bpp, λ {lmbda:g}"] = []
    for x in frames:
        padded = pad_to_multiple(x)
        rows["ceiling"].append(decoded_psnr(model.intra.unquantised(padded), x))
        for lmbda in lambdas:
            out = model.forward_intra(padded, lmbda)
            rows[f"psnr, λ {lmbda:g}"].append(decoded_psnr(out.x_hat, x))
            rows[f"bpp, λ {lmbda:g}"].append(float(out.bits()) / (x.shape[-2] * x.shape[-1]))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m canfvc_codec.lab.ceiling", description=__doc__)
    add_clip_arguments(parser, 2, "frames to read")
    parser.add_argument(
        "--lambda",
        dest="lambdas",
        type=float,
        action="append",
        metavar="LAMBDA",
        help=f"λ to code at (repeat; default {', '.join(f'{v:g}' for v in ANCHOR_LAMBDAS)})",
    )
    options = parser.parse_args(argv)
    try:
        model, model_id, frames = open_clip(options)
        rows = intra_ceiling(model, frames, options.lambdas or ANCHOR_LAMBDAS)
    except (CanfvcError, OSError) as exc:
        sys.exit(f"canfvc: error: {exc}")
    if options.json:
        print(json.dumps({"model_id": model_id.hex(), "intra": rows}, indent=1))
        return
    print(f"intra coder over {len(frames)} frames, model {model_id.hex()}:")
    for name, value in summary(rows).items():
        unit = "bpp" if name.startswith("bpp") else "dB"
        print(f"  {name:16s} {value:7.3f} {unit}")


if __name__ == "__main__":
    main()
