"""The trainable binary quantiser ``b = B(tanh(y))`` of differential modulation.

``B`` is a sign function whose gradient is passed through as 1 (a straight-through estimator), so
the only gradient of the quantiser is the one of ``tanh``: ``db/dy = 1 - tanh^2(y)`` (Eq. A.3 of the
differential-modulation supplement). The forward output is exactly +1 or -1, never 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _SignPassThrough(torch.autograd.Function):
    """Sign in the forward pass (0 maps to +1), identity in the backward pass."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        return grad_output


def sign_pass_through(x: Tensor) -> Tensor:
    """``B(x)``: +1 where ``x >= 0``, -1 elsewhere; its gradient is taken to be 1."""
    return _SignPassThrough.apply(x)


def binarize(y: Tensor) -> Tensor:
    """``b = B(tanh(y))``: exactly ±1 forward, gradient ``1 - tanh^2(y)`` backward."""
    return sign_pass_through(torch.tanh(y))


def bits_to_symbols(bits: Tensor) -> Tensor:
    """Map ±1 bits to the coder's symbols {0, 1} (int64): -1 -> 0, +1 -> 1."""
    return (bits > 0).to(torch.int64)


def symbols_to_bits(symbols: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Inverse of :func:`bits_to_symbols`: 0 -> -1, 1 -> +1."""
    return symbols.to(dtype) * 2 - 1
