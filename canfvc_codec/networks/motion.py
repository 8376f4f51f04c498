"""The plain hyperprior motion coder, used for the first P-frame of a GOP.

There is no decoded flow yet to extrapolate a condition from, so the first flow of a GOP is coded
without one. It is an :class:`AnfCoder` with a single step and no condition, which is exactly a
mean-scale hyperprior autoencoder (f̂ = g_s(ẑ)), with 3x3 kernels like the conditional motion coder.
"""

from __future__ import annotations

from canfvc_codec.networks.anf_coder import AnfCoder
from canfvc_codec.networks.config import CoderConfig
from canfvc_codec.nn.gain import ANCHOR_LAMBDAS

FLOW = 2
HYPERPRIOR_STEPS = 1


class MotionHyperpriorCoder(AnfCoder):
    def __init__(self, config: CoderConfig, anchors: tuple[float, ...] = ANCHOR_LAMBDAS) -> None:
        super().__init__(FLOW, config, HYPERPRIOR_STEPS, anchors=anchors)
