"""Motion compensation: backward warp of the reference, refined by a three-level U-Net.

x_c = warp(x̂_{t-1}, f̂_t) + U-Net(warped, x̂_{t-1}, f̂_t). The refinement sees the unwarped
reference and the flow too, so it can repair occlusions and blur from bilinear sampling.
"""

from __future__ import annotations

import torch
from torch import nn

from canfvc_codec.nn.layers import backward_warp
from canfvc_codec.nn.unet import UNet

IN_CHANNELS = 3 + 3 + 2


class MotionCompensation(nn.Module):
    def __init__(
        self, channels: tuple[int, int, int], scale: int = 1, zero_output: bool = False
    ) -> None:
        super().__init__()
        self.refine = UNet(IN_CHANNELS, 3, channels, scale, zero_output)

    def forward(self, reference: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        warped = backward_warp(reference, flow)
        return warped + self.refine(torch.cat([warped, reference, flow], dim=1))
