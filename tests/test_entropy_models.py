"""The entropy models: training likelihoods, coding exactness and estimated versus real bits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from canfvc_codec.entropy import FactorizedPrior, GaussianConditional, scale_to_index
from canfvc_codec.entropy.scale_table import SCALE_LEVELS, SCALE_MIN, SCALE_TABLE

RATE_TOLERANCE = 0.01
RATE_SLACK_BITS = 64 * 8


def _latent(shape, seed=0, low=SCALE_MIN, high=40.0):
    gen = torch.Generator().manual_seed(seed)
    scales = torch.exp(torch.empty(shape).uniform_(math.log(low), math.log(high), generator=gen))
    means = torch.randn(shape, generator=gen) * 3
    y = means + torch.randn(shape, generator=gen) * scales
    return y, scales, means


def _estimated_bits(likelihoods: torch.Tensor) -> float:
    return float(-torch.log2(likelihoods.detach().double()).sum())


def test_gaussian_forward_training_adds_bounded_noise_and_keeps_gradients():
    model = GaussianConditional().train()
    y, scales, means = _latent((2, 4, 8, 8))
    y.requires_grad_(True)
    scales.requires_grad_(True)
    y_hat, likelihoods = model(y, scales, means)
    assert y_hat.shape == likelihoods.shape == y.shape
    assert float((y_hat - y).detach().abs().max()) <= 0.5
    assert float(likelihoods.detach().min()) > 0 and float(likelihoods.detach().max()) <= 1
    (-torch.log2(likelihoods).sum()).backward()
    assert y.grad is not None and scales.grad is not None
    assert torch.isfinite(scales.grad).all() and scales.grad.abs().sum() > 0


def test_gaussian_eval_forward_is_the_decoded_value():
    model = GaussianConditional().eval()
    y, scales, means = _latent((1, 8, 6, 10), seed=1)
    y_hat, _ = model(y, scales, means)
    torch.testing.assert_close(y_hat, torch.round(y - means) + means, rtol=0, atol=0)
    decoded = model.decompress(model.compress(y, scales, means), scales, means)
    torch.testing.assert_close(decoded, y_hat, rtol=0, atol=0)


def test_gaussian_rounded_training_prices_noise_and_hands_on_the_decoded_value():
    y, scales, means = _latent((2, 4, 8, 8), seed=2)
    means.requires_grad_(True)
    y.requires_grad_(True)
    torch.manual_seed(3)
    _, noisy_likelihoods = GaussianConditional().train()(y, scales, means)
    model = GaussianConditional().train()
    model.rounded_in_training = True
    torch.manual_seed(3)
    y_hat, likelihoods = model(y, scales, means)
    torch.testing.assert_close(likelihoods, noisy_likelihoods, rtol=0, atol=0)
    torch.testing.assert_close(y_hat, torch.round(y - means) + means, rtol=0, atol=0)
    # The decoded value moves one for one with the means; y's gradient passes straight through.
    y_hat.sum().backward()
    assert means.grad is not None and y.grad is not None
    torch.testing.assert_close(means.grad, torch.ones_like(means))
    torch.testing.assert_close(y.grad, torch.ones_like(y))


def test_factorized_rounded_training_hands_on_the_decoded_value():
    prior = FactorizedPrior(3).train()
    z = (torch.randn(2, 3, 4, 4) * 3).requires_grad_(True)
    torch.manual_seed(4)
    _, noisy_likelihoods = prior(z)
    prior.rounded_in_training = True
    torch.manual_seed(4)
    z_hat, likelihoods = prior(z)
    torch.testing.assert_close(likelihoods, noisy_likelihoods, rtol=0, atol=0)
    torch.testing.assert_close(z_hat, prior.quantize(z.detach()), rtol=0, atol=0)
    z_hat.sum().backward()
    assert z.grad is not None
    torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_gaussian_likelihoods_sum_to_one_over_the_integers():
    model = GaussianConditional()
    values = torch.arange(-2000, 2001, dtype=torch.float32).view(-1, 1)
    scales = torch.tensor([[0.2, 1.0, 7.5, 100.0]]).expand(values.shape[0], 4)
    total = model.likelihood(values.expand(-1, 4), scales).double().sum(0)
    torch.testing.assert_close(total, torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(0, 8, 4, 4), (1, 1, 1, 1), (1, 3, 5, 7), (2, 16, 4, 6)])
def test_gaussian_roundtrip_shapes_with_and_without_means(shape):
    model = GaussianConditional().eval()
    y, scales, means = _latent(shape, seed=sum(shape))
    for mu in (means, None):
        decoded = model.decompress(model.compress(y, scales, mu), scales, mu)
        torch.testing.assert_close(decoded, model.quantize(y, mu), rtol=0, atol=0)


def test_gaussian_outliers_and_every_scale_index_roundtrip():
    model = GaussianConditional().eval()
    scales = torch.tensor(SCALE_TABLE, dtype=torch.float32).repeat(4)
    assert torch.equal(scale_to_index(scales[:SCALE_LEVELS]), torch.arange(SCALE_LEVELS))
    y = torch.zeros_like(scales)
    y[::2] = torch.linspace(-5000, 5000, y[::2].numel())
    y[1::4], y[3::4] = 1e6, -1e6
    y = y.view(1, -1, 1, 1)
    decoded = model.decompress(model.compress(y, scales.view_as(y)), scales.view_as(y))
    torch.testing.assert_close(decoded, torch.round(y), rtol=0, atol=0)


def test_gaussian_real_bits_match_estimate():
    model = GaussianConditional().eval()
    y, scales, means = _latent((1, 64, 40, 48), seed=2, high=60.0)  # 122 880 symbols
    _, likelihoods = model(y, scales, means)
    estimated = _estimated_bits(likelihoods)
    real = 8 * len(model.compress(y, scales, means))
    assert abs(real - estimated) <= RATE_TOLERANCE * estimated + RATE_SLACK_BITS, (real, estimated)


def test_gaussian_tables_travel_in_the_state_dict():
    model = GaussianConditional()
    state = model.state_dict()
    assert {"table_freqs", "table_offsets", "table_mins"} <= set(state)
    # A decoder uses the stored integers, even ones that differ from what it would build itself.
    other = GaussianConditional()
    other.table_freqs.zero_()
    other.load_state_dict(state)
    y, scales, _ = _latent((1, 4, 4, 4), seed=3)
    torch.testing.assert_close(other.decompress(model.compress(y, scales), scales), torch.round(y))


def _fit_prior(channels: int, steps: int) -> tuple[FactorizedPrior, torch.Tensor]:
    """A prior fitted briefly to channels of different widths and offsets."""
    torch.manual_seed(0)
    prior = FactorizedPrior(channels)
    widths = torch.linspace(0.5, 8.0, channels).view(1, -1, 1, 1)
    offsets = torch.linspace(-3.0, 3.0, channels).view(1, -1, 1, 1)
    z = torch.randn(2, channels, 16, 16) * widths + offsets
    optimiser = torch.optim.Adam(prior.parameters(), lr=0.05)
    for _ in range(steps):
        optimiser.zero_grad()
        _, likelihoods = prior(z)
        loss = -torch.log2(likelihoods).mean() + prior.aux_loss()
        loss.backward()
        optimiser.step()
    return prior.eval(), z


@pytest.fixture(scope="module")
def trained_prior() -> tuple[FactorizedPrior, torch.Tensor]:
    return _fit_prior(channels=6, steps=20)


def test_factorized_training_lowers_rate_and_aux_loss(trained_prior):
    untrained = FactorizedPrior(6)
    prior, z = trained_prior
    _, before = untrained.eval()(z)
    _, after = prior(z)
    assert _estimated_bits(after) < _estimated_bits(before)
    assert float(prior.aux_loss().detach()) < float(untrained.aux_loss().detach())


def test_factorized_roundtrip_rate_and_state_dict(trained_prior):
    prior, z = trained_prior
    prior.update()
    z = torch.cat([z] * 16)  # 49 152 symbols
    z[0, 0, 0, :3] = torch.tensor([1e6, -1e6, 12345.0])
    z_hat, likelihoods = prior(z)
    data = prior.compress(z)
    torch.testing.assert_close(prior.decompress(data, tuple(z.shape)), z_hat, rtol=0, atol=0)

    fresh = FactorizedPrior(6)
    fresh.load_state_dict(prior.state_dict())  # tables are resized on load
    torch.testing.assert_close(fresh.decompress(data, tuple(z.shape)), z_hat, rtol=0, atol=0)

    # The three outliers cost ~30 bits each in the estimate; bulk bits must match.
    estimated = _estimated_bits(likelihoods)
    real = 8 * len(data)
    assert abs(real - estimated) <= RATE_TOLERANCE * estimated + RATE_SLACK_BITS, (real, estimated)


def test_factorized_needs_update_before_coding():
    prior = FactorizedPrior(2)
    with pytest.raises(RuntimeError):
        prior.compress(torch.zeros(1, 2, 2, 2))


def test_factorized_empty_and_single_symbol():
    prior, _ = _fit_prior(channels=3, steps=2)
    prior.update()
    for shape in [(0, 3, 2, 2), (1, 3, 1, 1)]:
        z = torch.randn(shape) * 2
        z_hat, _ = prior(z)
        decoded = prior.decompress(prior.compress(z), shape)
        torch.testing.assert_close(decoded, z_hat, rtol=0, atol=0)
    assert np.all(prior.tables().freqs >= 1)


def test_non_finite_latents_are_refused():
    model = GaussianConditional().eval()
    y = torch.tensor([[[[1.0, float("nan")]]]])
    with pytest.raises(ValueError):
        model.compress(y, torch.ones_like(y))
