"""Neural-network building blocks of the CANF-VC system (no entropy coding here)."""

from canfvc_codec.nn.anf import (
    AdditiveStep,
    AnalysisTransform,
    HyperAnalysis,
    HyperSynthesis,
    PriorFusion,
    SynthesisTransform,
)
from canfvc_codec.nn.dq import QualityEnhancement
from canfvc_codec.nn.extrapolation import FlowExtrapolation
from canfvc_codec.nn.gain import LambdaGain
from canfvc_codec.nn.layers import GDN, backward_warp, conv, deconv
from canfvc_codec.nn.mc import MotionCompensation
from canfvc_codec.nn.spynet import SpyNet
from canfvc_codec.nn.unet import UNet

__all__ = [
    "GDN",
    "AdditiveStep",
    "AnalysisTransform",
    "FlowExtrapolation",
    "HyperAnalysis",
    "HyperSynthesis",
    "LambdaGain",
    "MotionCompensation",
    "PriorFusion",
    "QualityEnhancement",
    "SpyNet",
    "SynthesisTransform",
    "UNet",
    "backward_warp",
    "conv",
    "deconv",
]
