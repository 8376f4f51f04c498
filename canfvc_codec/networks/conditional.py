"""The conditional CANF coder: one class for frames (x_t | x_c) and flows (f_t | f_c).

Two additive steps whose analysis transforms see the condition; decoding starts from the
condition; the latent's mean and scale fuse the hyperprior with a temporal prior, an analysis
transform of ``prior_input`` (x_c for frames, warp(x̂_{t-1}, f_c) for flows; supplement §6).
"""

from __future__ import annotations

from torch import nn

from canfvc_codec.networks.anf_coder import AnfCoder
from canfvc_codec.networks.config import CoderConfig
from canfvc_codec.nn.gain import ANCHOR_LAMBDAS

CANF_STEPS = 2
RGB = 3


class ConditionalCoder(AnfCoder):
    def __init__(
        self,
        channels: int,
        config: CoderConfig,
        prior_channels: int = RGB,
        enhance: nn.Module | None = None,
        anchors: tuple[float, ...] = ANCHOR_LAMBDAS,
    ) -> None:
        super().__init__(
            channels,
            config,
            CANF_STEPS,
            cond_channels=channels,
            prior_channels=prior_channels,
            enhance=enhance,
            anchors=anchors,
        )
