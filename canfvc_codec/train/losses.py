"""Training losses: the rate-distortion objective of Eq. 12 and the flow pre-training losses.

Conventions (those of DVC and CANF-VC): frames are in [0, 1], distortion is the mean squared error,
rate is in bits per pixel of the coded frame, and the loss of one coded frame is

    R_inter + R_motion + lambda_1 * mean((y_2 - x_c)^2) + lambda_2 * MSE(x_t, x^_t)

with ``lambda_1 = 0.01 * lambda_2``. ``lambda_2`` is the rate knob of the variable-rate model; it is
drawn once per batch, log-uniformly over [256, 2048], so that every rate gets the same share of
training in the log domain (where the RD curve is smooth).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from canfvc_codec.defaults import ANCHOR_LAMBDAS
from canfvc_codec.nn.layers import backward_warp
from canfvc_codec.psnr import psnr_from_mse

LAMBDA_MIN, LAMBDA_MAX = ANCHOR_LAMBDAS[0], ANCHOR_LAMBDAS[-1]
LAMBDA1_RATIO = 0.01  # lambda_1 = 0.01 * lambda_2 (paper, Sec. 4.1)
CHARBONNIER_EPS = 1e-3  # robust photometric penalty for unsupervised flow
FLOW_SMOOTHNESS = 0.01  # weight of the first-order flow smoothness term (per pixel of flow)
WARP_LEVELS = 4  # pyramid levels of the unsupervised flow loss


def sample_lambda(
    rng: np.random.Generator, low: float = LAMBDA_MIN, high: float = LAMBDA_MAX
) -> float:
    """One rate knob, log-uniform over [low, high]."""
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def mse(a: Tensor, b: Tensor) -> Tensor:
    return F.mse_loss(a.float(), b.float())


def psnr(distortion: Tensor | float) -> float:
    """PSNR in dB of frames in [0, 1] from their MSE; NaN for an MSE that is not finite (a step
    that blew up), which the log shows and the divergence watch counts as a drop."""
    mse = float(distortion)
    return psnr_from_mse(mse) if math.isfinite(mse) else math.nan


def rd_loss(
    rate_bpp: Tensor, distortion: Tensor, lmbda: float, y2_gap: Tensor | None = None
) -> Tensor:
    """Eq. 12: rate + lambda_1 * ||y_2 - x_c||^2 (mean) + lambda_2 * distortion."""
    loss = rate_bpp + lmbda * distortion
    if y2_gap is not None:
        loss = loss + LAMBDA1_RATIO * lmbda * y2_gap
    return loss


def charbonnier(x: Tensor) -> Tensor:
    return torch.sqrt(x.float() ** 2 + CHARBONNIER_EPS**2).mean()


def flow_smoothness(flow: Tensor) -> Tensor:
    """Mean absolute first difference of a flow field, in pixels."""
    dx = (flow[..., :, 1:] - flow[..., :, :-1]).abs().mean()
    dy = (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean()
    return dx + dy


def warping_loss(warped: Tensor, target: Tensor, flow: Tensor) -> Tensor:
    """Unsupervised flow objective: robust photometric error plus a little smoothness."""
    return charbonnier(warped - target) + FLOW_SMOOTHNESS * flow_smoothness(flow)


def multiscale_warping_loss(
    reference: Tensor, target: Tensor, flow: Tensor, levels: int = WARP_LEVELS
) -> Tensor:
    """:func:`warping_loss` averaged over a pyramid of the frames and the flow.

    At full resolution the photometric gradient only sees a pixel or two around the current
    flow; at 1/8 it sees eight times further, which is what lets a flow network that starts at
    zero find large motions.
    """
    total = flow.new_zeros(())
    for level in range(levels):
        if level:
            reference, target = F.avg_pool2d(reference, 2), F.avg_pool2d(target, 2)
            flow = F.avg_pool2d(flow, 2) / 2  # half the resolution: half the displacement
        total = total + warping_loss(backward_warp(reference, flow), target, flow)
    return total / levels


def endpoint_error(flow: Tensor, target: Tensor) -> Tensor:
    """Mean Euclidean distance between two flow fields (N, 2, H, W), in pixels."""
    return torch.linalg.vector_norm((flow - target).float(), dim=1).mean()
