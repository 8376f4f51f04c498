"""Quality enhancement ("DQ"): a small residual network applied to decoded frames."""

from __future__ import annotations

import torch
from torch import nn

from canfvc_codec.nn.compact import zero_
from canfvc_codec.nn.layers import ResidualBlock, conv
from canfvc_codec.nn.stripes import ENHANCE_HALO, StripeLayout, run_in_stripes

RGB = 3


class QualityEnhancement(nn.Module):
    """x + conv(res-blocks(conv(x))): learns to remove coding artefacts, identity-like at start.

    With ``scale`` > 1 the body works at 1/scale of the resolution on the folded picture
    (space-to-depth), its output unfolded again; ``zero_output`` makes it exactly the identity at
    start. ``striped``: computed on row stripes with a halo, as :class:`~canfvc_codec.nn.unet.UNet`.
    """

    striped = False

    def __init__(
        self, channels: int, blocks: int, scale: int = 1, zero_output: bool = False
    ) -> None:
        super().__init__()
        self.scale = scale
        folded = RGB * scale * scale
        layers = [
            conv(folded, channels, 3, 1),
            *[ResidualBlock(channels) for _ in range(blocks)],
            conv(channels, folded, 3, 1),
        ]
        if zero_output:
            zero_(layers[-1])
        if scale > 1:
            layers = [nn.PixelUnshuffle(scale), *layers, nn.PixelShuffle(scale)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.striped:
            layout = StripeLayout.scaled(ENHANCE_HALO, self.scale)
            return run_in_stripes(self._forward, x, layout.halo, layout.max_pixels, layout.align)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
