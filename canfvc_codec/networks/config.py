"""Model configurations: ``tiny`` and ``tiny-small`` (tests), ``small``, ``lite`` and ``full``.

``lite`` and ``full`` follow the paper's supplement §5: N filters and C hyper channels in the
autoencoding and hyperprior transforms, M latent channels (192 for full inter-frame coding,
128 otherwise). Both use SPyNet for flow (the paper's full model uses PWC-Net).

``small`` keeps every part of the system with networks sized for a compute budget (per 1080p
frame: P-frame decode <= 200 GMAC, I-frame decode <= 120 GMAC, under 6 M parameters): compact
transforms that fold the frame by 4 before any 3x3 convolution (:mod:`canfvc_codec.nn.compact`),
conditional analyses that see ``x - condition``, flow extrapolation and motion compensation at a
quarter of the resolution, quality enhancement at half, motion coders that carry block motion
beside their learned transforms, and residual outputs that start at zero so that a fresh model
already behaves like a classical coder (send block motion, copy the motion, warp the reference,
pass the decoded picture through).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from canfvc_codec.defaults import ANCHOR_LAMBDAS
from canfvc_codec.errors import ModelError
from canfvc_codec.nn.anf import COMPACT, HYPER_KERNEL, PAPER


@dataclass(frozen=True)
class CoderConfig:
    """Sizes of one ANF coder: transform filters N, latent channels M, hyper-latent channels C."""

    filters: int
    latent: int
    hyper: int
    kernel_size: int = 5
    transform: str = PAPER  # or COMPACT (canfvc_codec.nn.anf.TRANSFORMS)
    difference: bool = False  # conditional analyses also see x - condition
    hyper_kernel_size: int = HYPER_KERNEL  # of the hyper transforms' stride-2 layers
    # Motion coders: the coded latent carries each 16x16 block's mean motion
    # (canfvc_codec.nn.block_motion). Model files from before the option load without it.
    block_motion: bool = False


@dataclass(frozen=True)
class ModelConfig:
    name: str
    intra: CoderConfig
    inter: CoderConfig
    motion: CoderConfig
    spynet_levels: int = 5
    spynet_channels: tuple[int, ...] = (32, 64, 32, 16)
    extrapolation_channels: tuple[int, int, int] = (64, 128, 256)
    mc_channels: tuple[int, int, int] = (64, 128, 256)
    dq_channels: int = 64
    dq_blocks: int = 6
    # Resolution divisors (space-to-depth) of the U-Nets of flow extrapolation and motion
    # compensation, and of the quality enhancement.
    unet_scale: int = 1
    dq_scale: int = 1
    # The residual outputs of flow extrapolation, motion compensation and quality enhancement
    # start at zero: f_c = f̂_{t-1}, x_c = warp(x̂_{t-1}, f̂_t) and x̂ unchanged at first.
    zero_residuals: bool = False
    anchor_lambdas: tuple[float, ...] = ANCHOR_LAMBDAS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Inverse of :meth:`to_dict` (as stored in a model file); lists become tuples."""
        try:
            values = dict(data)
            for coder in ("intra", "inter", "motion"):
                values[coder] = CoderConfig(**values[coder])
            for f in fields(cls):
                if isinstance(values.get(f.name), list):
                    values[f.name] = tuple(values[f.name])
            return cls(**values)
        except (KeyError, TypeError) as exc:
            raise ModelError(f"invalid model configuration: {exc}") from None


MOTION_KERNEL = 3  # motion coders use 3x3 kernels (the design's choice for smooth flow fields)
SMALL_UNET_SCALE = 4  # flow extrapolation and motion compensation at a quarter of the resolution
SMALL_DQ_SCALE = 2  # quality enhancement at half

CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        name="tiny",
        intra=CoderConfig(8, 8, 8),
        inter=CoderConfig(8, 8, 8),
        motion=CoderConfig(8, 8, 8, MOTION_KERNEL),
        spynet_channels=(8, 8),
        extrapolation_channels=(8, 8, 8),
        mc_channels=(8, 8, 8),
        dq_channels=8,
        dq_blocks=1,
    ),
    "tiny-small": ModelConfig(
        name="tiny-small",
        intra=CoderConfig(8, 8, 8, 3, COMPACT, True, 3),
        inter=CoderConfig(8, 8, 8, 3, COMPACT, True, 3),
        motion=CoderConfig(8, 8, 8, 3, COMPACT, True, 3, block_motion=True),
        spynet_channels=(8, 8),
        extrapolation_channels=(8, 8, 8),
        mc_channels=(8, 8, 8),
        dq_channels=8,
        dq_blocks=1,
        unet_scale=SMALL_UNET_SCALE,
        dq_scale=SMALL_DQ_SCALE,
        zero_residuals=True,
    ),
    "small": ModelConfig(
        name="small",
        intra=CoderConfig(64, 128, 64, 3, COMPACT, True, 3),
        inter=CoderConfig(64, 128, 64, 3, COMPACT, True, 3),
        motion=CoderConfig(48, 64, 48, 3, COMPACT, True, 3, block_motion=True),
        spynet_channels=(16, 32, 16, 8),
        extrapolation_channels=(32, 48, 64),
        mc_channels=(32, 48, 64),
        dq_channels=32,
        dq_blocks=2,
        unet_scale=SMALL_UNET_SCALE,
        dq_scale=SMALL_DQ_SCALE,
        zero_residuals=True,
    ),
    "lite": ModelConfig(
        name="lite",
        intra=CoderConfig(72, 128, 128),
        inter=CoderConfig(72, 128, 128),
        motion=CoderConfig(72, 128, 128, MOTION_KERNEL),
    ),
    "full": ModelConfig(
        name="full",
        intra=CoderConfig(128, 192, 128),
        inter=CoderConfig(128, 192, 128),
        motion=CoderConfig(128, 128, 128, MOTION_KERNEL),
    ),
}


def get_config(name: str) -> ModelConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        known = ", ".join(CONFIGS)
        raise ModelError(f"unknown model configuration {name!r} (known: {known})") from None
