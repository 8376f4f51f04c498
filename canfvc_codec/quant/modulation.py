"""Multi-frame differential modulation: a Delta-Sigma loop around the binary quantiser.

The latents ``c[i]`` of consecutive frames are modulated so that the binarisation error is pushed
to high temporal frequencies, where a decoder that looks at several frames can average it out:

- 1st order (Eq. A.1/A.2): ``y[i] = y[i-1] + c[i] - b[i-1]``,             ``b[i] = B(tanh(y[i]))``
- 2nd order (Eq. B.1):     ``y[i] = c[i] + 2(y[i-1] - b[i-1]) - (y[i-2] - b[i-2])``

Both are one loop written with the residuals ``r[i] = y[i] - b[i]``:
``y[i] = c[i] + sum_k a_k r[i-k]`` where ``1 - sum_k a_k z^-k = (1 - z^-1)^order``. Writing the
quantiser as ``b = y + e`` gives ``b = c + (1 - z^-1)^order e``: the noise transfer function.

The loop is stable (``y`` stays bounded) for inputs inside the binary range, ``|c| < 1`` for the
1st order and roughly ``|c| < 0.7`` for the 2nd; callers bound their latents accordingly.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import torch
from torch import Tensor, nn

from .binary import binarize

SUPPORTED_ORDERS = (0, 1, 2)

# The state carried from frame to frame: the last ``order`` residuals y - b, newest first.
ModulatorState = tuple[Tensor, ...]


def noise_transfer_coefficients(order: int) -> tuple[int, ...]:
    """Taps of ``(1 - z^-1)^order``, lowest delay first: (1, -1) for order 1, (1, -2, 1) for 2."""
    return tuple((-1) ** k * comb(order, k) for k in range(order + 1))


@dataclass
class ModulationTrace:
    """Everything one run of the loop produced, kept for analysis and tests."""

    bits: Tensor  # b, exactly ±1, same shape as the input
    modulated: Tensor  # y, the quantiser's input
    state: ModulatorState  # state after the last frame, to continue with the next group


class DifferentialModulator(nn.Module):
    """Differential modulation of order 0 (plain binarisation), 1 or 2 along a frame axis.

    The module has no parameters; the state is passed in and out explicitly so that a coder can
    carry it from one group of frames to the next, or restart it.
    """

    def __init__(self, order: int = 1, frame_dim: int = 1) -> None:
        super().__init__()
        if order not in SUPPORTED_ORDERS:
            raise ValueError(f"differential modulation order must be one of {SUPPORTED_ORDERS}")
        self.order = order
        self.frame_dim = frame_dim
        # y[i] = c[i] + sum_k feedback[k-1] * r[i-k]: the NTF taps without the leading 1, negated.
        self.feedback = tuple(-tap for tap in noise_transfer_coefficients(order)[1:])

    def initial_state(self, frame: Tensor) -> ModulatorState:
        """Zero residuals shaped like one frame of latents: the loop starts from rest."""
        return tuple(torch.zeros_like(frame) for _ in range(self.order))

    def step(self, c: Tensor, state: ModulatorState) -> tuple[Tensor, Tensor, ModulatorState]:
        """Modulate one frame: returns ``(b, y, new_state)``."""
        y = c
        for weight, residual in zip(self.feedback, state, strict=True):
            y = y + weight * residual
        b = binarize(y)
        new_state = ((y - b,) + state[:-1]) if self.order else ()
        return b, y, new_state

    def run(self, c: Tensor, state: ModulatorState | None = None) -> ModulationTrace:
        """Modulate every frame of ``c`` along ``frame_dim``, in order."""
        frames = c.unbind(self.frame_dim)
        if state is None:
            state = self.initial_state(frames[0])
        bits, modulated = [], []
        for frame in frames:
            b, y, state = self.step(frame, state)
            bits.append(b)
            modulated.append(y)
        return ModulationTrace(
            bits=torch.stack(bits, self.frame_dim),
            modulated=torch.stack(modulated, self.frame_dim),
            state=state,
        )

    def forward(
        self, c: Tensor, state: ModulatorState | None = None
    ) -> tuple[Tensor, ModulatorState]:
        """Bits for every frame of ``c`` and the state to continue with."""
        trace = self.run(c, state)
        return trace.bits, trace.state

    def extra_repr(self) -> str:
        return f"order={self.order}, frame_dim={self.frame_dim}"
