"""The compact transforms of the ``small`` model: resolution falls first, cheap blocks follow.

The paper's transforms (:mod:`canfvc_codec.nn.anf`) spend most of their multiply-accumulates on
5x5 convolutions at half and quarter resolution. Here the input is folded into channels at once
(space-to-depth by 4, as DCVC-RT folds by 8), so every 3x3 convolution runs at 1/4 of the frame
or less: a 1080p transform of 64 filters costs about a hundredth of the paper's. GDN, whose cost
is one 1x1 convolution, stays at each change of resolution; a residual block adds depth at 1/8,
where it is cheap.

Both transforms end in a layer that starts at zero (:func:`zero_`): a fresh synthesis adds
nothing to the condition it decodes from, and the coder learns corrections from there.
"""

from __future__ import annotations

from torch import nn

from canfvc_codec.nn.layers import GDN, ResidualBlock, conv, deconv

# Space-to-depth factor: the first layer works at 1/4 of the frame's width and height.
FOLD = 4
# After folding, two stride-2 stages bring the latent to 1/16 of the frame.
KERNEL = 3


def zero_(layer: nn.Conv2d | nn.ConvTranspose2d) -> nn.Module:
    """``layer`` with zero weights and bias (in place): a residual branch that starts silent."""
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


class CompactAnalysis(nn.Sequential):
    """(in, H, W) -> (out, H/16, W/16): fold by 4, conv3 + GDN at 1/4, stride-2 conv3 + GDN
    and a residual block at 1/8, stride-2 conv3 to 1/16."""

    def __init__(self, in_channels: int, filters: int, out_channels: int) -> None:
        super().__init__(
            nn.PixelUnshuffle(FOLD),
            conv(in_channels * FOLD * FOLD, filters, KERNEL, 1),
            GDN(filters),
            conv(filters, filters, KERNEL),
            GDN(filters),
            ResidualBlock(filters),
            conv(filters, out_channels, KERNEL),
        )


class CompactSynthesis(nn.Sequential):
    """The mirror of :class:`CompactAnalysis`: (in, h, w) -> (out, 16h, 16w), inverse GDN, and a
    last convolution that predicts each 4x4 block's pixels (depth-to-space), starting at zero."""

    def __init__(self, in_channels: int, filters: int, out_channels: int) -> None:
        super().__init__(
            deconv(in_channels, filters, KERNEL),
            GDN(filters, inverse=True),
            ResidualBlock(filters),
            deconv(filters, filters, KERNEL),
            GDN(filters, inverse=True),
            zero_(conv(filters, out_channels * FOLD * FOLD, KERNEL, 1)),
            nn.PixelShuffle(FOLD),
        )
