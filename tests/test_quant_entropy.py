"""Binary entropy model: likelihoods for training, range-coded round trip, rate estimates."""

from __future__ import annotations

import math

import pytest
import torch

from canfvc_codec.errors import BitstreamError
from canfvc_codec.quant import BinaryEntropyModel, DifferentialModulator


def _random_bits(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # Channel-dependent bias so that the bits are far from uniform.
    bias = torch.linspace(0.1, 0.9, shape[2]).view(1, 1, -1, 1, 1)
    return torch.where(torch.rand(shape, generator=generator) < bias, 1.0, -1.0)


def _model(channels: int, context: int, seed: int) -> BinaryEntropyModel:
    model = BinaryEntropyModel(channels, context)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.logits.copy_(torch.randn(model.logits.shape, generator=generator) * 2)
    model.update()
    return model


@pytest.mark.parametrize("context", [0, 1, 2])
def test_round_trip_and_rate(context):
    bits = _random_bits((2, 5, 6, 7, 9), seed=context)
    model = _model(6, context, seed=10 + context)
    data = model.compress(bits)
    decoded = model.decompress(data, tuple(bits.shape))
    assert torch.equal(decoded, bits)
    estimated = model.estimated_bits(bits)
    from_likelihoods = float(-torch.log2(model(bits)).sum().detach())
    # The integer table is within 2^-16 of the float probabilities.
    assert math.isclose(estimated, from_likelihoods, rel_tol=1e-3)
    # Real bits: the estimate plus at most a few 32-bit words of coder overhead.
    overhead = len(data) * 8 - estimated
    assert -1 <= overhead <= 64 + 0.01 * estimated


def test_context_model_learns_modulation_patterns():
    """A still latent under 1st-order modulation alternates +1/-1: a full bit per symbol without
    context, almost free with the previous bit as context."""
    c = torch.full((1, 32, 2, 4, 4), 0.0)
    # c = 0.5 repeats +1 +1 -1 +1: two previous bits leave only (+1, +1) ambiguous, which costs
    # a bit on a quarter of the symbols of that channel.
    c[:, :, 1] = 0.5
    bits, _ = DifferentialModulator(1)(c)
    rates = {}
    for context in (0, 2):
        model = BinaryEntropyModel(2, context)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.2)
        for _ in range(150):
            optimizer.zero_grad()
            loss = -torch.log2(model(bits)).mean()
            loss.backward()
            optimizer.step()
        model.update()
        rates[context] = len(model.compress(bits)) * 8 / bits.numel()
    assert rates[0] > 0.9
    assert rates[2] < 0.2 + 0.125


def test_likelihood_gradient_reaches_bits_and_table():
    model = _model(3, 2, seed=1)
    bits = _random_bits((1, 4, 3, 2, 2), seed=2).requires_grad_()
    (-torch.log2(model(bits)).sum()).backward()
    assert bits.grad is not None and bits.grad.abs().sum() > 0
    assert model.logits.grad is not None and model.logits.grad.abs().sum() > 0


def test_coding_needs_the_integer_table():
    model = BinaryEntropyModel(2)
    with pytest.raises(RuntimeError, match="update"):
        model.compress(torch.ones(1, 2, 2, 2, 2))


def test_decompress_rejects_bad_streams():
    model = _model(2, 1, seed=3)
    with pytest.raises(BitstreamError):
        model.decompress(b"\x00\x01\x02", (1, 2, 2, 2, 2))
    with pytest.raises(BitstreamError, match="channels"):
        model.decompress(b"", (1, 2, 5, 2, 2))


def test_rejects_wrong_shapes():
    model = BinaryEntropyModel(4)
    with pytest.raises(ValueError):
        model(torch.ones(1, 3, 2, 2, 2))
