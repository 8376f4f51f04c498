"""Latent quantisers: rounding, and binary quantisers with multi-frame differential modulation.

See ``docs/lab/experiments/differential-modulation.md`` for what the modulation does to rate and
distortion on a small model.
"""

from .binary import binarize, sign_pass_through
from .binary_entropy import BinaryEntropyModel
from .modulation import DifferentialModulator, ModulationTrace, ModulatorState
from .quantizers import (
    QUANTIZER_KINDS,
    LatentQuantizer,
    ModulatedBinaryQuantizer,
    RoundQuantizer,
    make_quantizer,
)

__all__ = [
    "QUANTIZER_KINDS",
    "BinaryEntropyModel",
    "DifferentialModulator",
    "LatentQuantizer",
    "ModulatedBinaryQuantizer",
    "ModulationTrace",
    "ModulatorState",
    "RoundQuantizer",
    "binarize",
    "make_quantizer",
    "sign_pass_through",
]
