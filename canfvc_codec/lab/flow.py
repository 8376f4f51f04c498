"""How well the encoder's motion search predicts the next frame: warp PSNR of its flows on a clip.

    python -m canfvc_codec.lab.flow bikes_dev.y4m --start 2 --frames 9 \\
        --model models/canfvc-lite.pt

For each pair of neighbouring frames, the previous frame is warped onto the next one by a flow and
scored in PSNR-RGB: no motion at all (the previous frame as it is), the model's SPyNet, and
OpenCV's DIS flow (the encoder's default motion search, canfvc_codec.encoder.motion,
and the teacher of SPyNet's training). The motion coder codes one of these flows; motion
compensation and the conditional coders can only be as good as the prediction it allows, so this
is the first thing to check when P-frames cost too much. With ``--coded LAMBDA`` the flow of
``--motion-search`` also goes through the first-P motion coder (rate estimated, nothing written):
the warp by the decoded flow and the motion-compensated frame x_c show what reaches the inter
coder. With ``--chain LAMBDA`` the frames are coded as the codec codes a GOP (an I-frame, then
P-frames on decoded references, the motion at the encoder's motion λ; rates estimated): per
P-frame the motion and inter-frame bits, x_c, the searched flow's warp of the decoded reference
(what the motion coder could have sent), and the decoded frame, which show whether the inter coder
turns a better x_c into fewer bits; and the inter coder's ceiling, what its transforms reach
from that x_c with nothing rounded (``python -m canfvc_codec.lab.ceiling`` for the intra coder).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from canfvc_codec.defaults import DEFAULT_MODEL
from canfvc_codec.encoder.motion import (
    DEFAULT_MOTION_SEARCH,
    MOTION_SEARCHES,
    FlowEstimator,
    dis_flow,
    motion_search,
)
from canfvc_codec.errors import CanfvcError, InputError
from canfvc_codec.io import open_reader
from canfvc_codec.io.color import yuv_to_rgb
from canfvc_codec.networks import References, VideoModel, to_reference
from canfvc_codec.networks.video import pad_to_multiple
from canfvc_codec.nn.layers import backward_warp
from canfvc_codec.psnr import psnr_from_mse
from canfvc_codec.rates import Rates
from canfvc_codec.threads import thread_count
from canfvc_codec.weights import load_model


def picture_psnr(picture: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR-RGB of ``picture`` against ``target``, both RGB in [0, 1]."""
    return psnr_from_mse(float(((picture - target) ** 2).mean()), 1.0)


def decoded_psnr(picture: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR-RGB of a padded reconstruction against ``target``: cropped to the target's size and
    clamped to [0, 1], as the decoder writes pictures."""
    height, width = target.shape[-2:]
    return picture_psnr(picture[..., :height, :width].clamp(0, 1), target)


def warp_psnr(reference: torch.Tensor, target: torch.Tensor, flow: torch.Tensor) -> float:
    """PSNR-RGB of ``reference`` warped by ``flow`` against ``target``."""
    return picture_psnr(backward_warp(reference, flow), target)


def spynet_estimator(model: VideoModel) -> FlowEstimator:
    """The flow the encoder computes: SPyNet on frames padded as the codec pads them."""

    def estimate(target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        height, width = target.shape[-2:]
        flow = model.spynet(pad_to_multiple(target), pad_to_multiple(reference))
        return flow[..., :height, :width]

    return estimate


def zero_flow(target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """No motion: the reference as it is."""
    n, _, height, width = target.shape
    return target.new_zeros(n, 2, height, width)


@torch.no_grad()
def warp_quality(
    frames: Sequence[torch.Tensor], estimators: dict[str, FlowEstimator]
) -> dict[str, list[float]]:
    """Per estimator, the warp PSNR of each frame from the one before it (frames: (1, 3, H, W))."""
    if len(frames) < 2:
        raise InputError("need at least two frames to measure motion")
    pairs = list(zip(frames[:-1], frames[1:], strict=True))
    return {
        name: [warp_psnr(ref, x, estimate(x, ref)) for ref, x in pairs]
        for name, estimate in estimators.items()
    }


@torch.no_grad()
def coded_motion_quality(
    model: VideoModel,
    frames: Sequence[torch.Tensor],
    lmbda: float,
    search: FlowEstimator | None = None,
) -> dict[str, list[float]]:
    """What the first-P motion coder makes of the flow of ``search`` (None: the model's SPyNet)
    at ``lmbda`` (references uncompressed): warp PSNR by the decoded flow, PSNR of the
    motion-compensated frame x_c, and the motion's estimated bits per pixel."""
    rows: dict[str, list[float]] = {"coded flow": [], "x_c": [], "motion bpp": []}
    for reference, x in zip(frames[:-1], frames[1:], strict=True):
        height, width = x.shape[-2:]
        padded, padded_reference = pad_to_multiple(x), pad_to_multiple(reference)
        flow = None if search is None else search(padded, padded_reference)
        coded, _, x_c = model.forward_motion(padded, References([padded_reference]), lmbda, flow)
        flow_hat = coded.x_hat[..., :height, :width]
        rows["coded flow"].append(warp_psnr(reference, x, flow_hat))
        rows["x_c"].append(picture_psnr(x_c[..., :height, :width], x))
        rows["motion bpp"].append(float(coded.bits()) / (height * width))
    return rows


@torch.no_grad()
def p_frame_chain(
    model: VideoModel, frames: Sequence[torch.Tensor], lmbda: float, search: FlowEstimator | None
) -> dict[str, list[float]]:
    """Code ``frames`` as one GOP at ``lmbda`` (rates estimated, nothing written): per P-frame
    its motion and inter-frame bpp, PSNR-RGB of x_c, of the decoded reference warped by the
    searched flow, of the decoded frame, and of the inter coder's reconstruction from x_c with
    its latent unrounded (its ceiling at any rate)."""
    if len(frames) < 2:
        raise InputError("need at least two frames to code P-frames")
    height, width = frames[0].shape[-2:]
    pixels = height * width
    rates = Rates.resolve(lmbda, model.config.anchor_lambdas)
    out = model.forward_intra(pad_to_multiple(frames[0]), lmbda)
    refs = References([to_reference(out.x_hat)])
    rows: dict[str, list[float]] = {
        "motion bpp": [],
        "inter bpp": [],
        "x_c": [],
        "searched warp": [],
        "decoded": [],
        "inter ceiling": [],
    }
    for x in frames[1:]:
        padded = pad_to_multiple(x)
        flow = None if search is None else search(padded, refs.frames[-1])
        out = model.forward_inter(padded, refs, rates, flow)
        reference = refs.frames[-1][..., :height, :width]
        rows["motion bpp"].append(float(out.coders["motion"].bits()) / pixels)
        rows["inter bpp"].append(float(out.coders["inter"].bits()) / pixels)
        rows["x_c"].append(decoded_psnr(out.x_c, x))
        rows["searched warp"].append(warp_psnr(reference, x, out.flow[..., :height, :width]))
        rows["decoded"].append(decoded_psnr(out.x_hat, x))
        rows["inter ceiling"].append(decoded_psnr(model.inter.unquantised(padded, out.x_c), x))
        refs = refs.push(to_reference(out.x_hat), out.flow_hat)
    return rows


def read_rgb_frames(path: str, start: int, frames: int) -> list[torch.Tensor]:
    """``frames`` frames of ``path`` from ``start``, as (1, 3, H, W) float32 RGB in [0, 1]."""
    with open_reader(path, start=start, frames=frames) as reader:
        pictures = list(reader)
        info = reader.info
    return [yuv_to_rgb(picture, info).float()[None] for picture in pictures]


def summary(per_pair: dict[str, list[float]]) -> dict[str, float]:
    return {name: round(sum(values) / len(values), 4) for name, values in per_pair.items()}


def add_clip_arguments(parser: argparse.ArgumentParser, frames: int, frames_help: str) -> None:
    """The arguments of a harness that measures a model on frames of a clip: the clip, the
    model, the frames read, torch's threads, and JSON output; :func:`open_clip` reads them."""
    parser.add_argument("input", help="a video with a header (y4m, or a container ffmpeg reads)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--start", type=int, default=0, help="first frame")
    parser.add_argument("--frames", type=int, default=frames, help=frames_help)
    parser.add_argument("--threads", type=thread_count, help="CPU threads for torch")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def open_clip(options: argparse.Namespace) -> tuple[VideoModel, bytes, list[torch.Tensor]]:
    """(model in float32 and eval mode, its id, the frames) of :func:`add_clip_arguments`'s
    options, with torch's threads set; errors are the caller's to report."""
    if options.threads:
        torch.set_num_threads(options.threads)
    model, model_id = load_model(options.model)
    frames = read_rgb_frames(options.input, options.start, options.frames)
    return model.float().eval(), model_id, frames


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m canfvc_codec.lab.flow", description=__doc__)
    add_clip_arguments(parser, 9, "frames to read (pairs + 1)")
    parser.add_argument(
        "--coded",
        type=float,
        action="append",
        default=[],
        metavar="LAMBDA",
        help="also code the flow of --motion-search at this λ (repeat)",
    )
    parser.add_argument(
        "--chain",
        type=float,
        action="append",
        default=[],
        metavar="LAMBDA",
        help="also code the frames as a GOP at this λ: per P-frame bits, x_c, decoded (repeat)",
    )
    parser.add_argument("--motion-search", choices=MOTION_SEARCHES, default=DEFAULT_MOTION_SEARCH)
    options = parser.parse_args(argv)
    try:
        model, model_id, frames = open_clip(options)
        estimators: dict[str, FlowEstimator] = {
            "no motion": zero_flow,
            "spynet": spynet_estimator(model),
        }
        estimators["opencv dis"] = dis_flow()
        per_pair = warp_quality(frames, estimators)
        search = motion_search(options.motion_search)
        for lmbda in options.coded:
            coded = coded_motion_quality(model, frames, lmbda, search)
            per_pair.update({f"{k}, λ {lmbda:g}": v for k, v in coded.items()})
        for lmbda in options.chain:
            chain = p_frame_chain(model, frames, lmbda, search)
            per_pair.update({f"chain {k}, λ {lmbda:g}": v for k, v in chain.items()})
    except (CanfvcError, OSError) as exc:
        sys.exit(f"canfvc: error: {exc}")
    if options.json:
        print(json.dumps({"model_id": model_id.hex(), "warp_psnr_rgb": per_pair}, indent=1))
        return
    print(f"warp PSNR-RGB over {len(frames) - 1} frame pairs, model {model_id.hex()}:")
    for name, value in summary(per_pair).items():
        unit = "bpp" if "bpp" in name else "dB"
        print(f"  {name:30s} {value:7.3f} {unit}")


if __name__ == "__main__":
    main()
