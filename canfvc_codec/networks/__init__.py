"""The CANF-VC coders and the video model that ties them together."""

from canfvc_codec.networks.anf_coder import AnfCoder, CoderOutput
from canfvc_codec.networks.conditional import ConditionalCoder
from canfvc_codec.networks.config import CONFIGS, CoderConfig, ModelConfig, get_config
from canfvc_codec.networks.intra import IntraCoder
from canfvc_codec.networks.motion import MotionHyperpriorCoder
from canfvc_codec.networks.video import FrameOutput, References, VideoModel, to_reference

__all__ = [
    "CONFIGS",
    "AnfCoder",
    "CoderConfig",
    "CoderOutput",
    "ConditionalCoder",
    "FrameOutput",
    "IntraCoder",
    "ModelConfig",
    "MotionHyperpriorCoder",
    "References",
    "VideoModel",
    "get_config",
    "to_reference",
]
