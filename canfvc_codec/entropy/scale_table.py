"""The scale table of the Gaussian conditional and the one place where a float σ picks a table.

Decoding must depend on integers only. The encoder and the decoder both turn the hyper-decoder's
σ into a table index here; keeping that float → integer step in a single function means it can be
made bit-exact across platforms later (e.g. by fixing the boundaries as constants) without
touching anything else.

Nearest in the log domain means: σ belongs to level k when it lies between the geometric midpoints
of (s_{k-1}, s_k) and (s_k, s_{k+1}). Comparing σ itself with these 63 float64 boundaries needs no
logarithm per symbol; the only per-symbol operations are exact comparisons.
"""

from __future__ import annotations

import numpy as np
import torch

SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64

# float64, log-uniformly spaced: s_k = exp(linspace(ln 0.11, ln 256, 64)).
SCALE_TABLE: np.ndarray = np.exp(np.linspace(np.log(SCALE_MIN), np.log(SCALE_MAX), SCALE_LEVELS))
SCALE_TABLE.setflags(write=False)

# Level k is chosen when BOUNDARIES[k-1] <= σ < BOUNDARIES[k].
BOUNDARIES: np.ndarray = np.sqrt(SCALE_TABLE[:-1] * SCALE_TABLE[1:])
BOUNDARIES.setflags(write=False)


def _float32_boundaries() -> np.ndarray:
    """For each float64 boundary B, the smallest float32 >= B.

    For a float32 σ, ``σ >= B`` holds exactly when ``σ >= that float32``, so float32 comparisons
    give the same answer as the float64 ones. A NaN sentinel after the last boundary compares
    false, which keeps the lookup below inside the table.
    """
    rounded = BOUNDARIES.astype(np.float32)
    low = rounded.astype(np.float64) < BOUNDARIES
    rounded[low] = np.nextafter(rounded[low], np.float32(np.inf))
    return np.append(rounded, np.float32(np.nan))


# A float32's bit pattern, read as an unsigned integer, grows with the value for positive floats.
# Its top bits (sign, exponent, 4 mantissa bits) split the positive floats into buckets at most
# 1/16 wide relatively, narrower than the table's ratio between levels (about 1.13), so a bucket
# holds at most one boundary: the level is the bucket's first level plus one comparison.
_BUCKET_SHIFT = 19
_BOUNDARIES_F32 = _float32_boundaries()


def _bucket_levels() -> np.ndarray:
    keys = np.arange(1 << (32 - _BUCKET_SHIFT), dtype=np.uint32)
    with np.errstate(invalid="ignore"):  # the NaN patterns convert to NaN, as wanted
        lowest = (keys << _BUCKET_SHIFT).view(np.float32).astype(np.float64)
    negative = keys >= 1 << (31 - _BUCKET_SHIFT)
    # NaN buckets (exponent all ones) sort after every boundary.
    levels = np.searchsorted(BOUNDARIES, np.where(negative, 0.0, lowest), side="right")
    return levels.astype(np.uint8)


_BUCKET_LEVELS = _bucket_levels()


def scale_to_index_np(scales: np.ndarray) -> np.ndarray:
    """Table index (uint8, 0..63) of each σ in a numpy array; see :func:`scale_to_index`."""
    values = np.asarray(scales)
    if values.dtype == np.float32:
        levels = _BUCKET_LEVELS[values.view(np.uint32) >> _BUCKET_SHIFT]
        return levels + (values >= _BOUNDARIES_F32[levels])
    # Generic float64 path (same function): a σ on a boundary goes to the upper level.
    return np.searchsorted(BOUNDARIES, values.astype(np.float64), side="right").astype(np.uint8)


def scale_indexes(scales: torch.Tensor) -> np.ndarray:
    """:func:`scale_to_index` as a uint8 numpy array (what the coder consumes)."""
    values = scales.detach().cpu()
    if values.dtype in (torch.float16, torch.bfloat16):
        values = values.float()  # exact
    return scale_to_index_np(values.numpy())


def scale_to_index(scales: torch.Tensor) -> torch.Tensor:
    """Map each σ to the index of the nearest table scale in the log domain (exact float64 math).

    σ below ``SCALE_MIN`` (and any negative σ) maps to 0, above ``SCALE_MAX`` to 63; the result
    is a deterministic function of σ's bits for any value, NaN included. int64, same shape.
    """
    return torch.from_numpy(scale_indexes(scales).astype(np.int64))
