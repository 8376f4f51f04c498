"""Small differentiable helpers shared by the entropy models."""

from __future__ import annotations

import torch


class _LowerBound(torch.autograd.Function):
    """``max(x, bound)`` whose gradient still flows where it would push ``x`` back above the bound.

    A plain clamp would stop the gradient for every value under the bound, so a scale or a
    likelihood that once fell below it could never recover during training.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


def lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """``x`` bounded below by ``bound``, keeping useful gradients (see :class:`_LowerBound`)."""
    return _LowerBound.apply(x, bound)


def uniform_noise(x: torch.Tensor) -> torch.Tensor:
    """``x + U(-0.5, 0.5)``: the training-time stand-in for rounding."""
    return x + torch.empty_like(x).uniform_(-0.5, 0.5)


def round_straight_through(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` in the forward pass, the identity in the backward pass: the relaxation with
    which the encoder optimises the values it will round (``canfvc_codec.encoder.refine``)."""
    return x + (torch.round(x) - x).detach()
