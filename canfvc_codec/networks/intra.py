"""ANFIC, the intra-frame coder: two additive autoencoding steps, a mean-scale hyperprior and DQ."""

from __future__ import annotations

from canfvc_codec.networks.anf_coder import AnfCoder
from canfvc_codec.networks.config import CoderConfig
from canfvc_codec.nn.dq import QualityEnhancement
from canfvc_codec.nn.gain import ANCHOR_LAMBDAS

RGB = 3
INTRA_STEPS = 2


class IntraCoder(AnfCoder):
    """Unconditional ANF on RGB frames; decoding starts from a zero frame."""

    def __init__(
        self,
        config: CoderConfig,
        dq_channels: int,
        dq_blocks: int,
        anchors: tuple[float, ...] = ANCHOR_LAMBDAS,
    ) -> None:
        super().__init__(
            RGB,
            config,
            INTRA_STEPS,
            enhance=QualityEnhancement(dq_channels, dq_blocks),
            anchors=anchors,
        )
