"""Quality and rate metrics, per frame and per sequence.

- PSNR-RGB and MS-SSIM-RGB as in the CANF-VC paper: both pictures go through the same YUV -> RGB
  conversion (the project's own, BT.709 by default), MSE over the three channels in [0, 1].
- PSNR-YUV as in current practice: per-plane PSNR weighted 6:1:1 (Y:U:V).
- bpp from the real size of the coded file (headers included) over the unpadded pixels
  (:func:`canfvc_codec.bitstream.bits_per_pixel`).

Sequence values are the mean of the per-frame values (the convention of CompressAI and DCVC).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from pytorch_msssim import ms_ssim

from canfvc_codec.io.color import yuv_to_rgb
from canfvc_codec.io.frame import Frame, VideoInfo
from canfvc_codec.psnr import psnr_from_mse

YUV_PSNR_WEIGHTS = (6.0, 1.0, 1.0)
# pytorch-msssim's default 5 scales with an 11-tap window need a side longer than (11 - 1) * 2**4.
MS_SSIM_WIN_SIZE = 11
MS_SSIM_LEVELS = 5
MS_SSIM_MIN_SIDE = (MS_SSIM_WIN_SIZE - 1) * 2 ** (MS_SSIM_LEVELS - 1) + 1

# Per-frame quality keys, in report order.
QUALITY_KEYS = ("psnr-rgb", "ms-ssim-rgb", "psnr-yuv", "psnr-y", "psnr-u", "psnr-v")


def plane_mse(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean squared error of two sample planes, in float64 (no overflow for 10-bit)."""
    if reference.shape != decoded.shape:
        raise ValueError(f"plane shapes differ: {reference.shape} vs {decoded.shape}")
    diff = reference.astype(np.float64) - decoded.astype(np.float64)
    return float(np.mean(diff * diff))


def yuv_psnr(reference: Frame, decoded: Frame, bit_depth: int) -> dict[str, float]:
    """PSNR of each plane and their 6:1:1 weighted mean, on the native sample scale."""
    peak = float((1 << bit_depth) - 1)
    planes = {
        "psnr-y": psnr_from_mse(plane_mse(reference.y, decoded.y), peak),
        "psnr-u": psnr_from_mse(plane_mse(reference.u, decoded.u), peak),
        "psnr-v": psnr_from_mse(plane_mse(reference.v, decoded.v), peak),
    }
    wy, wu, wv = YUV_PSNR_WEIGHTS
    weighted = wy * planes["psnr-y"] + wu * planes["psnr-u"] + wv * planes["psnr-v"]
    planes["psnr-yuv"] = weighted / sum(YUV_PSNR_WEIGHTS)
    return planes


def rgb_psnr(reference: torch.Tensor, decoded: torch.Tensor) -> float:
    """PSNR over all channels of two RGB pictures in [0, 1]."""
    if reference.shape != decoded.shape:
        raise ValueError(
            f"picture shapes differ: {tuple(reference.shape)} vs {tuple(decoded.shape)}"
        )
    mse = torch.mean((reference.double() - decoded.double()) ** 2).item()
    return psnr_from_mse(mse, 1.0)


def rgb_ms_ssim(reference: torch.Tensor, decoded: torch.Tensor) -> float:
    """MS-SSIM of two RGB pictures ``(3, H, W)`` in [0, 1]; NaN when the picture is too small for
    the standard five scales (rather than a different, incomparable metric)."""
    if min(reference.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return math.nan
    with torch.no_grad():
        value = ms_ssim(
            reference[None].float(),
            decoded[None].float(),
            data_range=1.0,
            win_size=MS_SSIM_WIN_SIZE,
        )
    return float(value.item())


def frame_metrics(reference: Frame, decoded: Frame, info: VideoInfo) -> dict[str, float]:
    """Every quality metric of one decoded frame against its reference."""
    values = yuv_psnr(reference, decoded, info.bit_depth)
    ref_rgb = yuv_to_rgb(reference, info).clamp(0.0, 1.0)
    dec_rgb = yuv_to_rgb(decoded, info).clamp(0.0, 1.0)
    values["psnr-rgb"] = rgb_psnr(ref_rgb, dec_rgb)
    values["ms-ssim-rgb"] = rgb_ms_ssim(ref_rgb, dec_rgb)
    return {key: values[key] for key in QUALITY_KEYS}


def mean_metrics(
    per_frame: list[dict[str, float]], keys: tuple[str, ...] = QUALITY_KEYS
) -> dict[str, float]:
    """Sequence values: the mean of each per-frame metric (NaN stays NaN)."""
    if not per_frame:
        raise ValueError("no frames to average")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return {key: float(np.mean([frame[key] for frame in per_frame])) for key in keys}


def _mean_or_none(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def frame_type_split(frames: list[dict]) -> dict:
    """How many of a coded sequence's frames (rows with a ``type``) are I-frames, the mean rate and
    PSNR-RGB of each type, P-frame bits over I-frame bits (what conditional coding saves), the
    share of the sequence's bits spent on I-frames (where to look first), and the motion rate of
    P-frames where the rows give it."""
    intra = [f for f in frames if f["type"] == "I"]
    inter = [f for f in frames if f["type"] == "P"]
    split = {
        "i_frames": len(intra),
        "i_bpp": _mean_or_none([f["bpp"] for f in intra]),
        "p_bpp": _mean_or_none([f["bpp"] for f in inter]),
    }
    split["p_over_i"] = (
        split["p_bpp"] / split["i_bpp"] if split["p_bpp"] and split["i_bpp"] else None
    )
    # Every frame of a sequence has the same size, so rates add up as bits do.
    total = sum(f["bpp"] for f in frames)
    split["i_bits_share"] = sum(f["bpp"] for f in intra) / total if total > 0 else None
    split["i_psnr_rgb"] = _mean_or_none([f["psnr-rgb"] for f in intra])
    split["p_psnr_rgb"] = _mean_or_none([f["psnr-rgb"] for f in inter])
    if all("bpp-motion" in f for f in inter):
        split["p_motion_bpp"] = _mean_or_none([f["bpp-motion"] for f in inter])
    return split
