"""A small three-level U-Net: the backbone of flow extrapolation and motion compensation.

With ``scale`` > 1 the U-Net works at 1/scale of the input's resolution: the input is folded
into channels (space-to-depth) and the output unfolded again, which divides its cost by about
scale² for smooth outputs such as flow corrections.
"""

from __future__ import annotations

import torch
from torch import nn

from canfvc_codec.nn.compact import zero_
from canfvc_codec.nn.layers import conv, deconv
from canfvc_codec.nn.stripes import UNET_HALO, StripeLayout, run_in_stripes

SLOPE = 0.1
LEVELS = 3


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        conv(in_channels, out_channels, 3, 1),
        nn.LeakyReLU(SLOPE, inplace=True),
        conv(out_channels, out_channels, 3, 1),
        nn.LeakyReLU(SLOPE, inplace=True),
    )


class UNet(nn.Module):
    """Three resolutions (1, 1/2, 1/4 of 1/scale) with skip connections; input sides must divide
    by 4 * scale. ``zero_output``: the output layer starts at zero (a silent residual).

    ``striped``: computed on row stripes of the input with a halo wider than its receptive field
    (:func:`~canfvc_codec.nn.stripes.run_in_stripes`), which bounds the memory of large frames."""

    striped = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: tuple[int, int, int],
        scale: int = 1,
        zero_output: bool = False,
    ) -> None:
        super().__init__()
        if len(channels) != LEVELS:
            raise ValueError(f"a U-Net needs {LEVELS} channel counts, got {channels}")
        self.scale = scale
        c1, c2, c3 = channels
        self.fold = nn.PixelUnshuffle(scale) if scale > 1 else nn.Identity()
        self.unfold = nn.PixelShuffle(scale) if scale > 1 else nn.Identity()
        self.enc1 = _block(in_channels * scale * scale, c1)
        self.enc2 = nn.Sequential(
            conv(c1, c2, 3, 2), nn.LeakyReLU(SLOPE, inplace=True), _block(c2, c2)
        )
        self.bottom = nn.Sequential(
            conv(c2, c3, 3, 2), nn.LeakyReLU(SLOPE, inplace=True), _block(c3, c3)
        )
        self.up2 = deconv(c3, c2, 3, 2)
        self.dec2 = _block(2 * c2, c2)
        self.up1 = deconv(c2, c1, 3, 2)
        self.dec1 = _block(2 * c1, c1)
        self.out = conv(c1, out_channels * scale * scale, 3, 1)
        if zero_output:
            zero_(self.out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.striped:
            layout = StripeLayout.scaled(UNET_HALO, self.scale)
            return run_in_stripes(self._forward, x, layout.halo, layout.max_pixels, layout.align)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(self.fold(x))
        e2 = self.enc2(e1)
        bottom = self.bottom(e2)
        d2 = self.dec2(torch.cat([self.up2(bottom), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.unfold(self.out(d1))
