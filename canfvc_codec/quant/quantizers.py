"""Latent quantisers behind one interface, so that a coder can swap the one it trains with.

Every quantiser takes a group of latents shaped (N, T, C, H, W), T being the frame axis, and an
optional state carried over from the previous group; it returns the quantised latents, same shape,
and the state to continue with. ``binary`` tells the coder which entropy model goes with it:

- ``round``: integers, coded by the coder's own (Gaussian / factorised) model. Training adds
  uniform noise in [-0.5, 0.5) as the rest of canfvc does; evaluation rounds. No state.
- ``binary``: plain ``B(tanh(c))``, no modulation (order 0). ±1 values.
- ``dm1`` / ``dm2``: 1st / 2nd order differential modulation along T. ±1 values, coded by
  :class:`~canfvc_codec.quant.binary_entropy.BinaryEntropyModel`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UsageError
from .modulation import DifferentialModulator, ModulatorState

FRAME_DIM = 1
NOISE_HALF_WIDTH = 0.5


class LatentQuantizer(nn.Module):
    """Common interface: ``forward(latents, state=None) -> (quantised, state)``."""

    kind: str = ""
    binary: bool = False

    def forward(
        self, latents: Tensor, state: ModulatorState | None = None
    ) -> tuple[Tensor, ModulatorState | None]:
        raise NotImplementedError


class RoundQuantizer(LatentQuantizer):
    """Uniform noise when training, rounding otherwise; stateless."""

    kind = "round"
    binary = False

    def forward(
        self, latents: Tensor, state: ModulatorState | None = None
    ) -> tuple[Tensor, ModulatorState | None]:
        if self.training:
            noise = torch.empty_like(latents).uniform_(-NOISE_HALF_WIDTH, NOISE_HALF_WIDTH)
            return latents + noise, None
        return torch.round(latents), None


class ModulatedBinaryQuantizer(LatentQuantizer):
    """Binary quantiser with differential modulation of a given order along the frame axis.

    It behaves the same in training and evaluation: the forward pass is the real quantiser and
    the backward pass goes through ``tanh`` (straight-through sign).
    """

    binary = True

    def __init__(self, order: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.modulator = DifferentialModulator(order, frame_dim=FRAME_DIM)

    @property
    def order(self) -> int:
        return self.modulator.order

    def forward(
        self, latents: Tensor, state: ModulatorState | None = None
    ) -> tuple[Tensor, ModulatorState | None]:
        if latents.dim() != 5:
            raise ValueError(f"expected latents (N, T, C, H, W), got {tuple(latents.shape)}")
        return self.modulator(latents, state)


QUANTIZER_KINDS = ("round", "binary", "dm1", "dm2")
_MODULATION_ORDERS = {"binary": 0, "dm1": 1, "dm2": 2}


def make_quantizer(kind: str) -> LatentQuantizer:
    """The latent quantiser named ``kind`` (one of :data:`QUANTIZER_KINDS`)."""
    if kind == "round":
        return RoundQuantizer()
    if kind in _MODULATION_ORDERS:
        return ModulatedBinaryQuantizer(_MODULATION_ORDERS[kind], kind)
    raise UsageError(f"unknown quantizer {kind!r}; choose one of {', '.join(QUANTIZER_KINDS)}")
