"""PSNR, as every report of canfvc computes it (encoder summary, evaluation, training, demo)."""

from __future__ import annotations

import math

# The PSNR reported for an exact reconstruction, instead of infinity.
PSNR_CAP_DB = 100.0


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error on samples in [0, peak], capped at :data:`PSNR_CAP_DB`."""
    if mse < 0 or peak <= 0:
        raise ValueError(f"invalid mse {mse} or peak {peak}")
    if mse == 0:
        return PSNR_CAP_DB
    return min(10.0 * math.log10(peak * peak / mse), PSNR_CAP_DB)
