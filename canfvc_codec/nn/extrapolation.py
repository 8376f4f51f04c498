"""Flow extrapolation: predict the condition f_c of conditional motion coding (paper §3.2, Fig. A4).

Input: the three latest decoded frames and the two latest decoded flows, 3*3 + 2*2 = 13 channels.
The network predicts a correction to the latest decoded flow: under constant motion f_c ≈ f̂_{t-1},
so the U-Net only has to learn how motion changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from canfvc_codec.nn.unet import UNet

FRAMES = 3
FLOWS = 2
IN_CHANNELS = FRAMES * 3 + FLOWS * 2  # 13
FLOW_CHANNELS = 2


class FlowExtrapolation(nn.Module):
    def __init__(
        self, channels: tuple[int, int, int], scale: int = 1, zero_output: bool = False
    ) -> None:
        super().__init__()
        self.unet = UNet(IN_CHANNELS, FLOW_CHANNELS, channels, scale, zero_output)

    def forward(
        self, frames: Sequence[torch.Tensor], flows: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """f_c from ``frames`` (x̂_{t-3}, x̂_{t-2}, x̂_{t-1}) and ``flows`` (f̂_{t-2}, f̂_{t-1})."""
        if len(frames) != FRAMES or len(flows) != FLOWS:
            raise ValueError(f"flow extrapolation needs {FRAMES} frames and {FLOWS} flows")
        return flows[-1] + self.unet(torch.cat([*frames, *flows], dim=1))
