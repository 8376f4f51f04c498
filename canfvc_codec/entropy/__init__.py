"""Probability models for latents and the range coder that turns their symbols into bytes."""

from canfvc_codec.entropy.factorized import FactorizedPrior
from canfvc_codec.entropy.gaussian import GaussianConditional
from canfvc_codec.entropy.scale_table import SCALE_TABLE, scale_to_index

__all__ = ["SCALE_TABLE", "FactorizedPrior", "GaussianConditional", "scale_to_index"]
