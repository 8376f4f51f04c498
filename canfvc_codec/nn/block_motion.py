"""Block motion: the motion field a classical coder sends, as a path through a motion coder.

Flow fields are smooth, and a field of one motion vector per 16x16 block already predicts most
of a frame (on bikes' dev frames DIS flow averaged over 16x16 blocks and rounded to whole pixels
warps the previous frame at 27.4 dB PSNR-RGB, the full flow at 31.0 dB, no motion at 21.2 dB).
A learned motion coder has to discover that from scratch, through GDN layers that saturate on
flows of tens of pixels. With this path it starts from it:

- analysis: the latent's first two channels receive each latent cell's mean motion (the latent
  lives at 1/16 of the frame, so a cell is a 16x16 block), in units of 1/``PRECISION`` pixel;
- synthesis: those two channels, back in pixels, up-sampled bilinearly to the frame, are added
  to the learned synthesis.

The learned transforms add corrections on top: finer motion inside blocks, motion boundaries.
The path has no parameters, so a trained model's weights still fit it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Latent cells are 16x16 pixels (the coders' transforms reduce the frame by 16).
BLOCK = 16
# Motion is carried in quarter pixels before the λ gains: at the gains' starting values the
# quantisation step is a quarter pixel at λ 1024 and half a pixel at λ 256.
PRECISION = 4.0
FLOW_CHANNELS = 2


class BlockMotion(nn.Module):
    """The parameter-free block-motion path of a motion coder's last additive step."""

    def analyse(self, flow: torch.Tensor) -> torch.Tensor:
        """(N, 2, H, W) flow -> (N, 2, H/16, W/16) block means, in 1/PRECISION pixels."""
        return F.avg_pool2d(flow, BLOCK) * PRECISION

    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        """The flow the latent's first two channels describe, up-sampled to the frame."""
        blocks = z[:, :FLOW_CHANNELS] / PRECISION
        return F.interpolate(blocks, scale_factor=BLOCK, mode="bilinear", align_corners=False)

    @staticmethod
    def into_latent(latent: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """``latent`` with ``blocks`` added to its first two channels."""
        leading = latent[:, :FLOW_CHANNELS] + blocks
        return torch.cat([leading, latent[:, FLOW_CHANNELS:]], dim=1)
