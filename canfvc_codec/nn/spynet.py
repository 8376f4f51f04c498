"""SPyNet (Ranjan & Black): coarse-to-fine optical flow over a 5-level image pyramid.

Each level refines the up-sampled flow of the coarser level from the first frame, the second frame
warped by that flow, and the flow itself. Used by the encoder only (the decoder receives flows).
The flow returned warps ``second`` onto ``first``: ``backward_warp(second, flow) ≈ first``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from canfvc_codec.nn.layers import backward_warp, conv

KERNEL = 7
IN_CHANNELS = 3 + 3 + 2
FLOW_CHANNELS = 2
DOWN = 2


class _Level(nn.Sequential):
    def __init__(self, channels: tuple[int, ...]) -> None:
        layers: list[nn.Module] = []
        previous = IN_CHANNELS
        for width in channels:
            layers += [conv(previous, width, KERNEL, 1), nn.ReLU(inplace=True)]
            previous = width
        layers.append(conv(previous, FLOW_CHANNELS, KERNEL, 1))
        super().__init__(*layers)


class SpyNet(nn.Module):
    def __init__(self, levels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = nn.ModuleList(_Level(channels) for _ in range(levels))

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Flow (N, 2, H, W) in pixels; H and W must divide by 2^(levels-1)."""
        pyramid = [(first, second)]
        for _ in range(len(self.levels) - 1):
            a, b = pyramid[-1]
            pyramid.append((F.avg_pool2d(a, DOWN), F.avg_pool2d(b, DOWN)))
        a, b = pyramid[-1]
        flow = a.new_zeros(a.shape[0], FLOW_CHANNELS, a.shape[2], a.shape[3])
        for level, (a, b) in zip(self.levels, reversed(pyramid), strict=True):
            if flow.shape[-2:] != a.shape[-2:]:
                # Twice the resolution: twice the displacement in pixels.
                flow = DOWN * F.interpolate(
                    flow, size=a.shape[-2:], mode="bilinear", align_corners=False
                )
            flow = flow + level(torch.cat([a, backward_warp(b, flow), flow], dim=1))
        return flow
