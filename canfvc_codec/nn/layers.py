"""Basic layers shared by every network: strided convolutions, GDN and the backward warp.

The convolutions compute as PyTorch's do until :attr:`Conv2d.striped` is set (the codec's
networks, :meth:`canfvc_codec.networks.video.VideoModel.compute_in_stripes`): then large frames
are computed without large unfolded buffers (:mod:`canfvc_codec.nn.stripes`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from canfvc_codec.nn.stripes import (
    shifted_products_conv2d,
    striped_conv2d,
    striped_conv_transpose2d,
    uses_shifted_products,
)

# GDN keeps beta and gamma non-negative through a squared reparametrisation with a small pedestal,
# as in Ballé et al.; these bounds keep the square root and its gradient away from zero.
GDN_PEDESTAL = 2.0**-36
GDN_BETA_MIN = 1e-6
GDN_GAMMA_INIT = 0.1


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state), which can compute in bounded memory.

    ``striped``: a float64 stride-1 convolution on a CPU is computed as shifted matrix products,
    any other whose unfolded input would be large in row stripes (:mod:`canfvc_codec.nn.stripes`);
    ``library_convolutions`` keeps PyTorch's own float64 kernel instead of the shifted products
    (a numerical path of docs/determinism.md).
    """

    striped = False
    library_convolutions = False

    def forward(self, x: Tensor) -> Tensor:
        if not self.striped:
            return super().forward(x)
        if uses_shifted_products(self, x):
            return shifted_products_conv2d(self, x)
        return striped_conv2d(self, x)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d``, computed in output row stripes when ``striped`` and large."""

    striped = False

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if not self.striped or output_size is not None:
            return super().forward(x, output_size)
        return striped_conv_transpose2d(self, x)


def conv(in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2) -> Conv2d:
    """A 'same'-padded convolution; with stride 2 it halves the spatial size exactly."""
    return Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2)


def deconv(
    in_channels: int, out_channels: int, kernel_size: int = 5, stride: int = 2
) -> ConvTranspose2d:
    """The mirror of :func:`conv`: with stride 2 it doubles the spatial size exactly."""
    return ConvTranspose2d(
        in_channels,
        out_channels,
        kernel_size,
        stride,
        padding=kernel_size // 2,
        output_padding=stride - 1,
    )


class _NonNegative(nn.Module):
    """Stores ``sqrt(x + pedestal)``; the value used, ``stored² - pedestal``, stays >= minimum."""

    def __init__(self, minimum: float = 0.0) -> None:
        super().__init__()
        self.pedestal = GDN_PEDESTAL
        self.bound = (minimum + GDN_PEDESTAL) ** 0.5

    def init(self, value: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(value + self.pedestal, min=self.pedestal))

    def forward(self, stored: torch.Tensor) -> torch.Tensor:
        return torch.clamp(stored, min=self.bound) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalisation, ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j²)``.

    With ``inverse=True`` it is the inverse GDN of the synthesis transforms (multiplies instead).
    """

    def __init__(self, channels: int, inverse: bool = False) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_param = _NonNegative(GDN_BETA_MIN)
        self.gamma_param = _NonNegative()
        self.beta = nn.Parameter(self.beta_param.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_param.init(GDN_GAMMA_INIT * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        beta = self.beta_param(self.beta)
        gamma = self.gamma_param(self.gamma).reshape(channels, channels, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


def backward_warp(frame: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``frame`` at ``p + flow(p)``: bilinear, border padding, ``flow`` = (dx, dy) pixels.

    The sampling grid is built in the frame's dtype so that a float64 decoder path stays float64.
    """
    n, _, height, width = frame.shape
    ys = torch.arange(height, dtype=frame.dtype, device=frame.device)
    xs = torch.arange(width, dtype=frame.dtype, device=frame.device)
    base_y, base_x = torch.meshgrid(ys, xs, indexing="ij")
    # align_corners=True maps pixel centres 0 and size-1 to -1 and +1.
    grid_x = (base_x + flow[:, 0]) * (2.0 / max(width - 1, 1)) - 1.0
    grid_y = (base_y + flow[:, 1]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([grid_x, grid_y], dim=-1).expand(n, height, width, 2)
    return F.grid_sample(frame, grid, mode="bilinear", padding_mode="border", align_corners=True)


class ResidualBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3 with an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3, 1), nn.ReLU(inplace=True), conv(channels, channels, 3, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
