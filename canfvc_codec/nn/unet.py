"""A small three-level U-Net: the backbone of flow extrapolation and motion compensation."""

from __future__ import annotations

import torch
from torch import nn

from canfvc_codec.nn.layers import conv, deconv

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
    """Three resolutions (1, 1/2, 1/4) with skip connections; input sides must divide by 4."""

    def __init__(self, in_channels: int, out_channels: int, channels: tuple[int, int, int]) -> None:
        super().__init__()
        if len(channels) != LEVELS:
            raise ValueError(f"a U-Net needs {LEVELS} channel counts, got {channels}")
        c1, c2, c3 = channels
        self.enc1 = _block(in_channels, c1)
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
        self.out = conv(c1, out_channels, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        bottom = self.bottom(e2)
        d2 = self.dec2(torch.cat([self.up2(bottom), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.out(d1)
