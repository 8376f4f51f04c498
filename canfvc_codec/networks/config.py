"""Model configurations: ``tiny`` (tests), ``lite`` (default) and ``full``.

``lite`` and ``full`` follow the paper's supplement §5: N filters and C hyper channels in the
autoencoding and hyperprior transforms, M latent channels (192 for full inter-frame coding,
128 otherwise). Both use SPyNet for flow (the paper's full model uses PWC-Net).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from canfvc_codec.errors import ModelError


@dataclass(frozen=True)
class CoderConfig:
    """Sizes of one ANF coder: transform filters N, latent channels M, hyper-latent channels C."""

    filters: int
    latent: int
    hyper: int
    kernel_size: int = 5


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
    anchor_lambdas: tuple[float, ...] = field(default=(256.0, 512.0, 1024.0, 2048.0))

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
