"""Factorised prior (Ballé et al.'s EntropyBottleneck) for hyper-latents.

Each channel has its own learned, non-parametric cumulative density, computed by a small monotone
network ``c(x)``. Training uses ``P(bin) = c(x + 1/2) - c(x - 1/2)``; ``update()`` samples that
density at the integers around each channel's median and stores integer tables (buffers) for
coding. ``quantiles`` track the channel's tails and median through ``aux_loss``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from canfvc_codec.entropy.coder import (
    TabledModel,
    decode_indexed,
    encode_indexed,
    round_to_symbols,
    tables_from_pmfs,
)
from canfvc_codec.entropy.ops import lower_bound, round_straight_through, uniform_noise

LIKELIHOOD_BOUND = 1e-9
TAIL_MASS = 1e-9
INIT_SCALE = 10.0
FILTERS = (3, 3, 3, 3)
# Largest distance from a channel's median covered by its table; further values use the escape.
MAX_HALF_WIDTH = 2048
_BISECTION_STEPS = 40


class FactorizedPrior(TabledModel):
    """Per-channel learned density for ``z`` of shape ``(N, C, H, W)``."""

    def __init__(
        self, channels: int, filters: tuple[int, ...] = FILTERS, init_scale: float = INIT_SCALE
    ) -> None:
        super().__init__()
        self.channels = int(channels)
        widths = (1, *filters, 1)
        # The density network is initialised so that c(x) starts close to a logistic of width
        # ``init_scale``, wide enough for untrained latents.
        scale = init_scale ** (1 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            init = math.log(math.expm1(1 / scale / widths[i + 1]))
            rows, cols = widths[i + 1], widths[i]
            self.matrices.append(nn.Parameter(torch.full((channels, rows, cols), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, rows, 1).uniform_(-0.5, 0.5)))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, rows, 1)))
        self.quantiles = nn.Parameter(
            torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1)
        )
        target = math.log(2 / TAIL_MASS - 1)
        self.register_buffer("target", torch.tensor([-target, 0.0, target]), persistent=False)

    @property
    def medians(self) -> Tensor:
        return self.quantiles[:, 0, 1].detach()

    def _logits_cumulative(self, x: Tensor, detach: bool = False) -> Tensor:
        """Logit of the learned CDF at ``x`` of shape ``(C, 1, K)``; monotone in ``x``.

        ``detach`` stops the gradient to the density network (the auxiliary loss moves only the
        quantiles).
        """
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            if detach:
                matrix, bias = matrix.detach(), bias.detach()
            x = torch.matmul(F.softplus(matrix), x) + bias
            if i < len(self.factors):
                factor = self.factors[i].detach() if detach else self.factors[i]
                x = x + torch.tanh(factor) * torch.tanh(x)
        return x

    def _likelihood(self, values: Tensor) -> Tensor:
        """P of the unit bin around each value of ``values`` shaped ``(C, 1, K)``."""
        lower = self._logits_cumulative(values - 0.5)
        upper = self._logits_cumulative(values + 0.5)
        # Evaluate on the side of the logistic where the difference keeps its precision.
        sign = -torch.sign(lower + upper).detach()
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))

    def aux_loss(self) -> Tensor:
        """Pulls ``quantiles`` to the tails (mass TAIL_MASS/2 each side) and the median."""
        logits = self._logits_cumulative(self.quantiles, detach=True)
        return torch.abs(logits - self.target).sum()

    def _to_channel_rows(self, z: Tensor) -> Tensor:
        if z.dim() != 4 or z.shape[1] != self.channels:
            raise ValueError(f"expected (N, {self.channels}, H, W), got {tuple(z.shape)}")
        return z.permute(1, 0, 2, 3).reshape(self.channels, 1, -1)

    def quantize(self, z: Tensor, straight_through: bool = False) -> Tensor:
        """``round(z - median) + median`` per channel: what the decoder reconstructs. With
        ``straight_through`` the rounding passes gradients unchanged (encoder-side refinement)."""
        rounding = round_straight_through if straight_through else torch.round
        medians = self.medians.view(1, -1, 1, 1).to(z.dtype)
        return rounding(z - medians) + medians

    def likelihood(self, z_hat: Tensor) -> Tensor:
        """Probability of the unit bin around each value of ``z_hat`` (N, C, H, W), bounded."""
        rows = self._to_channel_rows(z_hat)
        likelihood = self._likelihood(rows).reshape(self.channels, z_hat.shape[0], *z_hat.shape[2:])
        return lower_bound(likelihood.permute(1, 0, 2, 3), LIKELIHOOD_BOUND)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_hat, likelihoods)``: ``z + U(-0.5, 0.5)`` in training, quantised otherwise.

        With ``rounded_in_training`` training prices ``z + U(-0.5, 0.5)`` but returns ``z``
        rounded as the decoder has it, passing the gradient straight through the rounding.
        """
        if not self.training:
            z_hat = self.quantize(z)
            return z_hat, self.likelihood(z_hat)
        z_noisy = uniform_noise(z)
        if not self.rounded_in_training:
            return z_noisy, self.likelihood(z_noisy)
        return self.quantize(z, straight_through=True), self.likelihood(z_noisy)

    def _tail_points(self, medians: Tensor) -> tuple[Tensor, Tensor]:
        """Per channel, where the learned CDF leaves TAIL_MASS / 2 on each side (by bisection).

        The tables are cut there. Bisection on the monotone CDF does not depend on how far
        ``aux_loss`` has moved the tail quantiles, so tables are right even for a prior whose
        quantiles have not converged; the search is limited to ``MAX_HALF_WIDTH`` around the median.
        """
        target = float(self.target[2])
        bounds = []
        for side in (-1.0, 1.0):
            near, far = medians.clone(), medians + side * MAX_HALF_WIDTH
            for _ in range(_BISECTION_STEPS):
                mid = (near + far) / 2
                logits = self._logits_cumulative(mid.view(-1, 1, 1))[:, 0, 0]
                beyond = side * logits > target
                far = torch.where(beyond, mid, far)
                near = torch.where(beyond, near, mid)
            bounds.append(far)
        return bounds[0], bounds[1]

    @torch.no_grad()
    def update(self) -> None:
        """Build the integer tables from the current density (one per channel)."""
        medians = self.medians
        lowest, highest = self._tail_points(medians)
        # nan_to_num: a degenerate density still gives valid (if poor) tables.
        low = torch.ceil(medians - lowest).nan_to_num(0).clamp(0, MAX_HALF_WIDTH).long()
        high = torch.ceil(highest - medians).nan_to_num(0).clamp(0, MAX_HALF_WIDTH).long()
        length = int((low + high).max()) + 1
        offsets = torch.arange(length, dtype=medians.dtype, device=medians.device)
        samples = (medians - low).view(-1, 1, 1) + offsets.view(1, 1, -1)
        pmf = self._likelihood(samples)[:, 0, :].double().cpu().numpy()
        # The escape's mass is what lies outside the table on both sides.
        lower = torch.sigmoid(self._logits_cumulative(samples[:, :, :1] - 0.5))[:, 0, 0]
        upper = torch.sigmoid(-self._logits_cumulative(samples[:, :, -1:] + 0.5))[:, 0, 0]
        tails = (lower + upper).double().cpu().numpy()
        pmfs = []
        for c in range(self.channels):
            n = int(low[c] + high[c]) + 1
            pmfs.append(np.append(np.nan_to_num(pmf[c, :n]), np.nan_to_num(tails[c])))
        self.set_tables(tables_from_pmfs(pmfs, -low.cpu().numpy()))

    def _indexes(self, shape: tuple[int, ...]) -> np.ndarray:
        n, c, h, w = shape
        return np.broadcast_to(np.arange(c, dtype=np.int64).reshape(1, c, 1, 1), (n, c, h, w))

    def symbols(self, z: Tensor) -> np.ndarray:
        """The integers that are coded, ``round(z - median)`` per channel (int32 or int64)."""
        medians = self.medians.view(1, -1, 1, 1).to(z.dtype)
        return round_to_symbols(z - medians)

    def compress(self, z: Tensor) -> bytes:
        """Range-code ``round(z - median)`` with each channel's table (``update()`` first)."""
        self._to_channel_rows(z)  # shape check
        return encode_indexed(self.symbols(z), self._indexes(tuple(z.shape)), self.tables())

    def decompress(self, data: bytes, shape: tuple[int, int, int, int]) -> Tensor:
        """``z_hat`` of ``shape`` (float32) from ``compress``'s bytes."""
        if len(shape) != 4 or shape[1] != self.channels:
            raise ValueError(f"expected (N, {self.channels}, H, W), got {tuple(shape)}")
        values = decode_indexed(data, self._indexes(tuple(shape)), self.tables(), narrow=True)
        medians = self.medians.to("cpu", torch.float32).view(1, -1, 1, 1)
        return (torch.from_numpy(values).to(torch.float32) + medians).to(self.quantiles.device)
