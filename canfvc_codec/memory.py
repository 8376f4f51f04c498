"""How much memory coding a frame size needs, checked before anything is allocated.

A header or an input may claim any size up to 16384x16384; without this check such a claim would
only end when the operating system kills the process. The estimate follows how the networks
compute large frames (:mod:`canfvc_codec.nn.stripes`).
"""

from __future__ import annotations

import os

import torch

from canfvc_codec.errors import InputError
from canfvc_codec.networks.config import ModelConfig
from canfvc_codec.nn.stripes import STRIPE_PIXELS, UNET_HALO, UNFOLD_BUDGET_BYTES

GIB = 1 << 30


# The estimate is calibrated on measured decodes (bench/results/memory.json). At its peak a decoder
# holds, besides its weights and libraries (BASE_BYTES):
# - frame-sized buffers: references, flows, conditions, outputs (about 40 planes of samples);
# - then either the autoencoding transforms' half-resolution tensors that are not striped (a GDN
#   holds about 6 of them: 6 * filters / 4 planes), or the working set of one stripe of a U-Net
#   (about 6 activations of its first level), never both at once;
# - and one unfolded buffer of a convolution.
FULL_RESOLUTION_PLANES = 40
HALF_RESOLUTION_LIVE = 6
STRIPE_LIVE = 6
BASE_BYTES = 640 << 20


def decode_memory_estimate(
    filters: int, stripe_channels: int, width: int, height: int, itemsize: int
) -> int:
    """An estimate of the peak memory of decoding one stream, in bytes (see the constants).

    ``filters``: the widest autoencoding transform; ``stripe_channels``: the widest
    full-resolution network (U-Net first level or quality enhancement). Sizes are padded first.
    """
    padded_width = -(-width // 64) * 64
    pixels = padded_width * (-(-height // 64) * 64)
    stripe = min(pixels, STRIPE_PIXELS + 2 * UNET_HALO * padded_width)
    transforms = pixels * HALF_RESOLUTION_LIVE * filters / 4
    networks = stripe * STRIPE_LIVE * stripe_channels
    frames = pixels * FULL_RESOLUTION_PLANES
    return int((frames + max(transforms, networks)) * itemsize + UNFOLD_BUDGET_BYTES + BASE_BYTES)


def physical_memory() -> int | None:
    """This machine's physical memory in bytes, when the platform says."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(
    config: ModelConfig, width: int, height: int, dtype: torch.dtype, task: str = "decode"
) -> None:
    """Refuse, with one clear line, a frame size this machine cannot decode (or encode: the
    encoder holds the decoder's networks and more, so the decoder's need is its floor).

    A header or an input may claim any size up to 16384x16384; without this check such a claim
    would only end when the operating system kills the process.
    """
    filters = max(c.filters for c in (config.intra, config.inter, config.motion))
    channels = max(config.mc_channels[0], config.extrapolation_channels[0], config.dq_channels)
    itemsize = torch.empty((), dtype=dtype).element_size()
    needed = decode_memory_estimate(filters, channels, width, height, itemsize)
    available = physical_memory()
    if available is not None and needed > available:
        raise InputError(
            f"frame size {width}x{height} needs {'at least ' if task != 'decode' else ''}about "
            f"{needed / GIB:.0f} GiB to {task}, "
            f"more than this machine's {available / GIB:.0f} GiB"
        )
