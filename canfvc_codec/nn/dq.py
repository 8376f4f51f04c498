"""Quality enhancement ("DQ"): a small residual network applied to decoded frames."""

from __future__ import annotations

import torch
from torch import nn

from canfvc_codec.nn.layers import ResidualBlock, conv


class QualityEnhancement(nn.Module):
    """x + conv(res-blocks(conv(x))): learns to remove coding artefacts, identity-like at start."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(3, channels, 3, 1),
            *[ResidualBlock(channels) for _ in range(blocks)],
            conv(channels, 3, 3, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
