"""Per-channel latent gains that let one model serve every rate.

At each anchor λ the unit holds a learned gain vector (applied to the latent before quantisation)
and an inverse gain vector (applied after). Between anchors both are interpolated linearly in
log-λ on their logarithms, i.e. exponentially, so the quantisation step changes smoothly with λ.
Outside the anchors λ is clamped: the extreme anchors' gains are used.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from canfvc_codec.defaults import ANCHOR_LAMBDAS

# With an MSE distortion the optimal quantisation step scales like λ^-1/2, so the gains start at
# (λ / REFERENCE_LAMBDA)^1/2: rates already order with λ before any training.
REFERENCE_LAMBDA = 1024.0
INITIAL_EXPONENT = 0.5


def lambda_tensor(lmbda: float | torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
    """λ as a (batch,) tensor on ``like``'s device and dtype (a scalar is broadcast)."""
    value = torch.as_tensor(lmbda, dtype=like.dtype, device=like.device).reshape(-1)
    return value.expand(batch) if value.numel() == 1 else value


class LambdaGain(nn.Module):
    """Gain and inverse-gain vectors for ``channels`` latent channels, interpolated in log-λ."""

    def __init__(self, channels: int, anchors: tuple[float, ...] = ANCHOR_LAMBDAS) -> None:
        super().__init__()
        if len(anchors) < 2 or list(anchors) != sorted(anchors):
            raise ValueError("need at least two increasing anchor λ values")
        log_anchors = torch.log(torch.tensor(anchors, dtype=torch.float64))
        self.register_buffer("log_anchors", log_anchors.float(), persistent=False)
        start = (INITIAL_EXPONENT * (log_anchors - math.log(REFERENCE_LAMBDA))).float()
        self.log_gain = nn.Parameter(start[:, None].repeat(1, channels))
        self.log_inv_gain = nn.Parameter(-start[:, None].repeat(1, channels))

    def _interpolate(self, table: torch.Tensor, lmbda: torch.Tensor) -> torch.Tensor:
        anchors = self.log_anchors.to(lmbda.dtype)
        log_l = torch.minimum(torch.maximum(torch.log(lmbda), anchors[0]), anchors[-1])
        upper = torch.searchsorted(anchors, log_l).clamp(1, len(anchors) - 1)
        lower = upper - 1
        weight = ((log_l - anchors[lower]) / (anchors[upper] - anchors[lower]))[:, None]
        table = table.to(lmbda.dtype)
        return torch.exp(table[lower] * (1 - weight) + table[upper] * weight)[:, :, None, None]

    def gains(
        self, lmbda: float | torch.Tensor, batch: int, like: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(gain, inverse gain), each (batch, channels, 1, 1), for λ (scalar or one per sample)."""
        value = lambda_tensor(lmbda, batch, like)
        return self._interpolate(self.log_gain, value), self._interpolate(self.log_inv_gain, value)
