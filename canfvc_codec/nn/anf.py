"""The building blocks of (conditional) augmented normalizing flows: transforms and additive steps.

An additive autoencoding step (CANF-VC Eq. 7-8) maps ``(x, z)`` to ``(x - g_s(z'), z')`` with
``z' = z + g_a(cat[x, condition])``. It is invertible for any ``g_a`` and ``g_s``: decoding adds
``g_s(z')`` back and subtracts ``g_a`` again. Only the analysis transform sees the condition
(the paper's Fig. A1a), so decoding needs nothing the decoder lacks.
"""

from __future__ import annotations

import torch
from torch import nn

from canfvc_codec.nn.block_motion import BlockMotion
from canfvc_codec.nn.compact import CompactAnalysis, CompactSynthesis
from canfvc_codec.nn.layers import GDN, Conv2d, conv, deconv

# Each transform changes the resolution by 2 four times: latents live at 1/16 of the frame.
TRANSFORM_STAGES = 4
# The hyper transforms halve twice more: hyper-latents at 1/64.
HYPER_KERNEL = 5
HYPER_FIRST_KERNEL = 3
# The hyper-synthesis widens to 3/2 of its filters before predicting mean and scale (Minnen et al.).
HYPER_WIDEN_NUM, HYPER_WIDEN_DEN = 3, 2
FUSION_SLOPE = 0.01


class AnalysisTransform(nn.Sequential):
    """Four stride-2 convolutions with GDN in between: (in, H, W) -> (out, H/16, W/16)."""

    def __init__(
        self, in_channels: int, filters: int, out_channels: int, kernel_size: int = 5
    ) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(TRANSFORM_STAGES - 1):
            layers += [conv(channels, filters, kernel_size), GDN(filters)]
            channels = filters
        layers.append(conv(channels, out_channels, kernel_size))
        super().__init__(*layers)


class SynthesisTransform(nn.Sequential):
    """The mirror of :class:`AnalysisTransform` with inverse GDN: (in, h, w) -> (out, 16h, 16w)."""

    def __init__(
        self, in_channels: int, filters: int, out_channels: int, kernel_size: int = 5
    ) -> None:
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(TRANSFORM_STAGES - 1):
            layers += [deconv(channels, filters, kernel_size), GDN(filters, inverse=True)]
            channels = filters
        layers.append(deconv(channels, out_channels, kernel_size))
        super().__init__(*layers)


# The transform families a coder can be built from (``CoderConfig.transform``).
PAPER, COMPACT = "paper", "compact"
TRANSFORMS = (PAPER, COMPACT)


def analysis_transform(
    transform: str, in_channels: int, filters: int, out_channels: int, kernel_size: int
) -> nn.Module:
    """An analysis transform (to 1/16 of the input's size) of the family ``transform``."""
    if transform == COMPACT:
        return CompactAnalysis(in_channels, filters, out_channels)
    if transform == PAPER:
        return AnalysisTransform(in_channels, filters, out_channels, kernel_size)
    raise ValueError(f"unknown transform {transform!r} (known: {', '.join(TRANSFORMS)})")


def synthesis_transform(
    transform: str, in_channels: int, filters: int, out_channels: int, kernel_size: int
) -> nn.Module:
    """The synthesis transform (to 16 times the input's size) of the family ``transform``."""
    if transform == COMPACT:
        return CompactSynthesis(in_channels, filters, out_channels)
    if transform == PAPER:
        return SynthesisTransform(in_channels, filters, out_channels, kernel_size)
    raise ValueError(f"unknown transform {transform!r} (known: {', '.join(TRANSFORMS)})")


class AdditiveStep(nn.Module):
    """One additive autoencoding step of ANF/CANF (see the module docstring).

    With ``difference`` the analysis of a conditional step also sees ``x - cond``, the residual a
    classical coder would send, so that a fresh coder starts from it instead of discovering it.
    With ``block_motion`` (motion coders) the step also carries the block motion of that residual
    (:mod:`canfvc_codec.nn.block_motion`) beside its learned transforms.
    """

    def __init__(
        self,
        channels: int,
        cond_channels: int,
        filters: int,
        latent: int,
        kernel_size: int,
        transform: str = PAPER,
        difference: bool = False,
        block_motion: bool = False,
    ) -> None:
        super().__init__()
        if difference and cond_channels != channels:
            raise ValueError("x - cond needs a condition shaped like the coded signal")
        self.difference = difference
        in_channels = channels + cond_channels + (channels if difference else 0)
        self.analysis = analysis_transform(transform, in_channels, filters, latent, kernel_size)
        self.synthesis = synthesis_transform(transform, latent, filters, channels, kernel_size)
        self.block_motion = BlockMotion() if block_motion else None

    def _analyse(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            update = self.analysis(x)
        else:
            parts = [x, cond, x - cond] if self.difference else [x, cond]
            update = self.analysis(torch.cat(parts, dim=1))
        if self.block_motion is not None:
            residual = x if cond is None else x - cond
            update = BlockMotion.into_latent(update, self.block_motion.analyse(residual))
        return update

    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        """g_s(z): the learned synthesis, plus the block motion the latent carries, if any."""
        x = self.synthesis(z)
        if self.block_motion is not None:
            x = x + self.block_motion.synthesise(z)
        return x

    def encode(
        self, x: torch.Tensor, z: torch.Tensor | None, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``z += g_a(x | cond)``, then ``x -= g_s(z)``; ``z=None`` is the zero augmented noise."""
        update = self._analyse(x, cond)
        z = update if z is None else z + update
        return x - self.synthesise(z), z

    def decode(
        self, x: torch.Tensor, z: torch.Tensor, cond: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact inverse of :meth:`encode`: ``x += g_s(z)``, then ``z -= g_a(x | cond)``."""
        x = x + self.synthesise(z)
        return x, z - self._analyse(x, cond)


class HyperAnalysis(nn.Sequential):
    """conv3 s1, conv5 s2, conv5 s2 with ReLU: (latent, h, w) -> (hyper, h/4, w/4).
    ``kernel_size`` replaces the 5x5 kernels (the compact model's hyper transforms use 3x3)."""

    def __init__(
        self, latent: int, filters: int, hyper: int, kernel_size: int = HYPER_KERNEL
    ) -> None:
        super().__init__(
            conv(latent, filters, HYPER_FIRST_KERNEL, 1),
            nn.ReLU(inplace=True),
            conv(filters, filters, kernel_size),
            nn.ReLU(inplace=True),
            conv(filters, hyper, kernel_size),
        )


class HyperSynthesis(nn.Sequential):
    """The mirror of :class:`HyperAnalysis`; its output feeds the mean and scale predictions."""

    def __init__(
        self, hyper: int, filters: int, out_channels: int, kernel_size: int = HYPER_KERNEL
    ) -> None:
        wide = filters * HYPER_WIDEN_NUM // HYPER_WIDEN_DEN
        super().__init__(
            deconv(hyper, filters, kernel_size),
            nn.ReLU(inplace=True),
            deconv(filters, wide, kernel_size),
            nn.ReLU(inplace=True),
            conv(wide, out_channels, HYPER_FIRST_KERNEL, 1),
        )


class PriorFusion(nn.Sequential):
    """1x1 convolutions that fuse hyperprior and temporal-prior features into (mean, scale)."""

    def __init__(self, in_channels: int, latent: int) -> None:
        hidden = 2 * latent
        super().__init__(
            Conv2d(in_channels, hidden, 1),
            nn.LeakyReLU(FUSION_SLOPE, inplace=True),
            Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(FUSION_SLOPE, inplace=True),
            Conv2d(hidden, 2 * latent, 1),
        )
