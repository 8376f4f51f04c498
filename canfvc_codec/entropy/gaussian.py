"""Gaussian conditional entropy model with a 64-level scale table (latents given the hyperprior)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from canfvc_codec.entropy.coder import (
    IntegerTables,
    TabledModel,
    decode_indexed,
    encode_indexed,
    round_to_symbols,
    tables_from_pmfs,
)
from canfvc_codec.entropy.ops import lower_bound, round_straight_through, uniform_noise
from canfvc_codec.entropy.scale_table import SCALE_MIN, SCALE_TABLE, scale_indexes

LIKELIHOOD_BOUND = 1e-9
# Probability mass left outside each table's support; values out there use the escape symbol.
TAIL_MASS = 1e-9
# Largest symbol magnitude in any table; together with the escape this bounds table sizes.
MAX_HALF_WIDTH = 4096


def _standard_cdf(x: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-x * (2**-0.5))


def gaussian_tables(
    scales: np.ndarray = SCALE_TABLE, tail_mass: float = TAIL_MASS
) -> IntegerTables:
    """Integer tables of zero-mean Gaussians discretised to integer bins, one per scale.

    Table k covers ``[-R_k, R_k]`` with ``R_k = ceil(s_k * z)``, where ``z`` leaves ``tail_mass`` of
    probability outside; that outside mass is the escape symbol's.
    """
    z = -_inverse_standard_cdf(tail_mass / 2)
    pmfs, mins = [], []
    for s in np.asarray(scales, dtype=np.float64):
        half = min(int(math.ceil(s * z)), MAX_HALF_WIDTH)
        values = torch.arange(-half, half + 1, dtype=torch.float64)
        upper = _standard_cdf((0.5 - values.abs()) / s)
        lower = _standard_cdf((-0.5 - values.abs()) / s)
        pmf = (upper - lower).numpy()
        tail = 2.0 * float(_standard_cdf(torch.tensor((-half - 0.5) / s, dtype=torch.float64)))
        pmfs.append(np.append(pmf, tail))
        mins.append(-half)
    return tables_from_pmfs(pmfs, np.array(mins))


@functools.cache
def _default_gaussian_tables() -> IntegerTables:
    """The tables of the standard scale table, built once per process (they never change)."""
    return gaussian_tables()


def _inverse_standard_cdf(p: float) -> float:
    return float(math.sqrt(2.0) * torch.erfinv(torch.tensor(2.0 * p - 1.0, dtype=torch.float64)))


class GaussianConditional(TabledModel):
    """Latents ``y``, each Gaussian with its own mean ``μ`` and scale ``σ`` from the hyperprior.

    ``forward`` gives training likelihoods; ``compress``/``decompress`` code ``round(y - μ)`` with
    the integer table whose scale is nearest to ``σ`` (:func:`scale_to_index`). The tables are
    built here, deterministically, and stored as buffers so that a decoder uses the very integers
    the encoder used.
    """

    def __init__(self) -> None:
        super().__init__()
        self.set_tables(_default_gaussian_tables())

    @staticmethod
    def quantize(y: Tensor, means: Tensor | None = None, straight_through: bool = False) -> Tensor:
        """``round(y - means) + means``: the value the decoder reconstructs. With
        ``straight_through`` the rounding passes gradients unchanged (encoder-side refinement)."""
        rounding = round_straight_through if straight_through else torch.round
        if means is None:
            return rounding(y)
        return rounding(y - means) + means

    def likelihood(self, y_hat: Tensor, scales: Tensor, means: Tensor | None = None) -> Tensor:
        """Probability of the unit bin around ``y_hat`` under N(means, scales), bounded below."""
        values = (y_hat - means if means is not None else y_hat).abs()
        scales = lower_bound(scales, SCALE_MIN)
        # Both tails are evaluated on the left side of the Gaussian, where erfc is accurate.
        upper = _standard_cdf((0.5 - values) / scales)
        lower = _standard_cdf((-0.5 - values) / scales)
        return lower_bound(upper - lower, LIKELIHOOD_BOUND)

    def forward(
        self, y: Tensor, scales: Tensor, means: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(y_hat, likelihoods)``: ``y + U(-0.5, 0.5)`` in training, quantised ``y`` otherwise.

        With ``rounded_in_training`` training still prices ``y + U(-0.5, 0.5)`` but returns the
        decoder's value ``round(y - means) + means``. It moves one for one with the means, as the
        decoded latent does, and passes ``y``'s gradient straight through the rounding.
        """
        if not self.training:
            y_hat = self.quantize(y, means)
            return y_hat, self.likelihood(y_hat, scales, means)
        y_noisy = uniform_noise(y)
        likelihoods = self.likelihood(y_noisy, scales, means)
        if not self.rounded_in_training:
            return y_noisy, likelihoods
        if means is None:
            return self.quantize(y, straight_through=True), likelihoods
        return means + round_straight_through(y - means.detach()), likelihoods

    def symbols(self, y: Tensor, means: Tensor | None = None) -> np.ndarray:
        """The integers that are coded, ``round(y - means)`` (int32 where all fit, else int64)."""
        return round_to_symbols(y if means is None else y - means)

    def compress(self, y: Tensor, scales: Tensor, means: Tensor | None = None) -> bytes:
        """Range-code ``round(y - means)`` with per-element tables chosen from ``scales``."""
        if y.shape != scales.shape:
            raise ValueError(f"latent {tuple(y.shape)} and scales {tuple(scales.shape)} differ")
        return encode_indexed(self.symbols(y, means), scale_indexes(scales), self.tables())

    def decompress(self, data: bytes, scales: Tensor, means: Tensor | None = None) -> Tensor:
        """``y_hat`` (float32, the shape and device of ``scales``) from ``compress``'s bytes."""
        values = decode_indexed(data, scale_indexes(scales), self.tables(), narrow=True)
        y_hat = torch.from_numpy(values).to(device=scales.device, dtype=torch.float32)
        return y_hat if means is None else y_hat + means.to(torch.float32)
