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

from canfvc_codec.defaults import ANCHOR_LAMBDAS, DEFAULT_MODEL
from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.lab.flow import picture_psnr, read_rgb_frames
from canfvc_codec.networks import VideoModel
from canfvc_codec.networks.video import pad_to_multiple
from canfvc_codec.threads import thread_count
from canfvc_codec.weights import load_model


@torch.no_grad()
def intra_ceiling(
    model: VideoModel, frames: Sequence[torch.Tensor], lambdas: Sequence[float]
) -> dict[str, list[float]]:
    """Per frame (1, 3, H, W): PSNR-RGB of the intra coder's unquantised reconstruction
    ("ceiling"), and at each λ the coded PSNR-RGB and estimated bpp (latents rounded as coding
    rounds them)."""
    if not frames:
        raise InputError("need at least one frame")
    model = model.eval()
    rows: dict[str, list[float]] = {"ceiling": []}
    for lmbda in lambdas:
        rows[f"psnr, λ {lmbda:g}"] = []
        rows[f"bpp, λ {lmbda:g}"] = []
    for x in frames:
        height, width = x.shape[-2:]
        padded = pad_to_multiple(x)
        ceiling = model.intra.unquantised(padded)[..., :height, :width]
        rows["ceiling"].append(picture_psnr(ceiling.clamp(0, 1), x))
        for lmbda in lambdas:
            out = model.forward_intra(padded, lmbda)
            rows[f"psnr, λ {lmbda:g}"].append(
                picture_psnr(out.x_hat[..., :height, :width].clamp(0, 1), x)
            )
            rows[f"bpp, λ {lmbda:g}"].append(float(out.bits()) / (height * width))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m canfvc_codec.lab.ceiling", description=__doc__)
    parser.add_argument("input", help="a video with a header (y4m, or a container ffmpeg reads)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--start", type=int, default=0, help="first frame")
    parser.add_argument("--frames", type=int, default=2, help="frames to read")
    parser.add_argument(
        "--lambda",
        dest="lambdas",
        type=float,
        action="append",
        metavar="LAMBDA",
        help=f"λ to code at (repeat; default {', '.join(f'{v:g}' for v in ANCHOR_LAMBDAS)})",
    )
    parser.add_argument("--threads", type=thread_count, help="CPU threads for torch")
    parser.add_argument("--json", action="store_true", help="print per-frame figures as JSON")
    options = parser.parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        model, model_id = load_model(options.model)
        frames = read_rgb_frames(options.input, options.start, options.frames)
        rows = intra_ceiling(model.float(), frames, options.lambdas or ANCHOR_LAMBDAS)
    except (CanfvcError, OSError) as exc:
        sys.exit(f"canfvc: error: {exc}")
    if options.json:
        print(json.dumps({"model_id": model_id.hex(), "intra": rows}, indent=1))
        return
    print(f"intra coder over {len(frames)} frames, model {model_id.hex()}:")
    for name, values in rows.items():
        unit = "bpp" if name.startswith("bpp") else "dB"
        print(f"  {name:16s} {sum(values) / len(values):7.3f} {unit}")


if __name__ == "__main__":
    main()
