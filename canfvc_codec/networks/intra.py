"""ANFIC, the intra-frame coder: two additive autoencoding steps, a mean-scale hyperprior and DQ."""

from __future__ import annotations

from torch import nn

from canfvc_codec.networks.anf_coder import AnfCoder
from canfvc_codec.networks.config import CoderConfig
from canfvc_codec.nn.gain import ANCHOR_LAMBDAS

RGB = 3
INTRA_STEPS = 2


class IntraCoder(AnfCoder):
    """Unconditional ANF on RGB frames; decoding starts from a zero frame and ends with the
    quality enhancement ``enhance``."""

    def __init__(
        self,
        config: CoderConfig,
        enhance: nn.Module,
        anchors: tuple[float, ...] = ANCHOR_LAMBDAS,
    ) -> None:
        super().__init__(RGB, config, INTRA_STEPS, enhance=enhance, anchors=anchors)
