"""Differential modulation: binary outputs, the gradients of Eq. A.5/A.7, the noise transfer
function (1 - z^-1)^order, state carried across groups, and the quantiser factory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canfvc_codec.errors import UsageError
from canfvc_codec.quant import (
    QUANTIZER_KINDS,
    DifferentialModulator,
    binarize,
    make_quantizer,
)
from canfvc_codec.quant.modulation import noise_transfer_coefficients

# Inputs kept inside the stable range of each loop (see modulation.py).
STABLE_AMPLITUDE = {0: 0.9, 1: 0.9, 2: 0.5}


def _inputs(order: int, shape: tuple[int, ...], seed: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    unit = torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1
    return unit * STABLE_AMPLITUDE[order]


@pytest.mark.parametrize("order", [0, 1, 2])
def test_outputs_are_exactly_plus_minus_one(order):
    c = _inputs(order, (3, 12, 4, 5, 5), seed=order)
    c[0, 0] = 0.0  # sign(0) must still give a bit
    bits, _ = DifferentialModulator(order)(c)
    assert bits.shape == c.shape
    assert torch.all((bits == 1) | (bits == -1))
    assert set(bits.unique().tolist()) == {-1.0, 1.0}


def test_binarize_gradient_is_tanh_derivative():
    y = torch.linspace(-3, 3, 25, dtype=torch.float64, requires_grad=True)
    binarize(y).sum().backward()
    torch.testing.assert_close(y.grad, 1 - torch.tanh(y.detach()) ** 2)


def _jacobian(order: int, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Autograd Jacobian d b[m] / d c[j] of a 1-D sequence, and the modulated y."""
    modulator = DifferentialModulator(order, frame_dim=0)
    jac = torch.autograd.functional.jacobian(lambda x: modulator.run(x).bits, c)
    return jac, modulator.run(c).modulated


def test_first_order_gradient_matches_eq_a7():
    """d b[m] / d c[m-k] = (1 - tanh^2 y[m]) * prod_{i=1..k} tanh^2 y[m-i], 0 for k < 0."""
    length = 16
    c = _inputs(1, (length,), seed=7)
    jac, y = _jacobian(1, c)
    t2 = torch.tanh(y) ** 2
    expected = torch.zeros(length, length, dtype=torch.float64)
    for m in range(length):
        for k in range(m + 1):
            expected[m, m - k] = (1 - t2[m]) * torch.prod(t2[m - k : m])
    torch.testing.assert_close(jac, expected, rtol=1e-12, atol=1e-15)
    # The chain really reaches back: a past input still moves the present bit's gradient.
    assert jac[length - 1, length - 4] != 0


def test_second_order_gradient_follows_eq_b1():
    """Differentiating Eq. B.1: g[i] = dy[i]/dc[j] obeys g[i] = 2 t[i-1] g[i-1] - t[i-2] g[i-2]
    with t = tanh^2(y), and d b[m]/d c[j] = (1 - tanh^2 y[m]) g[m]."""
    length = 16
    c = _inputs(2, (length,), seed=11)
    jac, y = _jacobian(2, c)
    t2 = torch.tanh(y) ** 2
    expected = torch.zeros(length, length, dtype=torch.float64)
    for j in range(length):
        g = torch.zeros(length, dtype=torch.float64)
        g[j] = 1.0
        for i in range(j + 1, length):
            g[i] = 2 * t2[i - 1] * g[i - 1] - (t2[i - 2] * g[i - 2] if i - 2 >= j else 0.0)
        expected[:, j] = (1 - t2) * g
    torch.testing.assert_close(jac, expected, rtol=1e-10, atol=1e-13)
    # It is not the 1st-order product of Eq. A.7: the orders do not share gradients exactly.
    first_order_form = (1 - t2[5]) * torch.prod(t2[3:5])
    assert not torch.isclose(jac[5, 3], first_order_form)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_error_is_shaped_exactly_by_the_ntf(order):
    """b - c = sum_k ntf[k] e[i-k] with e = b - y (Eq. A.1 / B.3), sample by sample."""
    c = _inputs(order, (64, 2), seed=3)
    trace = DifferentialModulator(order, frame_dim=0).run(c)
    e = trace.bits - trace.modulated
    shaped = torch.zeros_like(e)
    for k, tap in enumerate(noise_transfer_coefficients(order)):
        shaped[k:] += tap * e[: len(e) - k]
    torch.testing.assert_close(trace.bits - c, shaped, rtol=0, atol=1e-12)


# A long random input: many independent sequences, their periodograms averaged.
SPECTRUM_SEQUENCES, SPECTRUM_LENGTH = 128, 1024
# The band where the shaping is measured. The linear model b = y + e with a white e only holds
# where the shaped noise is small: a 1-bit 2nd-order loop runs with |y| well above 1, its error is
# not white, and the top of the band rises less steeply than (1 - z^-1)^2 (measured slope ~1.0
# over [pi/8, pi]; see docs/lab/experiments/differential-modulation.md).
LOW_BAND = (np.pi / 64, np.pi / 8)


def _spectra(order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frequencies, averaged power of b - c, and the measured transfer from e = b - y to b - c."""
    c = _inputs(order, (SPECTRUM_LENGTH, SPECTRUM_SEQUENCES), seed=100 + order)
    trace = DifferentialModulator(order, frame_dim=0).run(c)
    window = np.hanning(SPECTRUM_LENGTH)[:, None]  # keeps high-frequency power out of low bins
    error = np.fft.rfft((trace.bits - c).numpy() * window, axis=0)
    noise = np.fft.rfft((trace.bits - trace.modulated).numpy() * window, axis=0)
    power = np.mean(np.abs(error) ** 2, axis=1)
    transfer = np.mean(error * np.conj(noise), axis=1) / np.mean(np.abs(noise) ** 2, axis=1)
    omega = np.linspace(0, np.pi, len(power))
    return omega, power, transfer


@pytest.mark.parametrize("order", [0, 1, 2])
def test_noise_spectrum_follows_ntf_power(order):
    """Power of b - c over the low band goes as |1 - e^{-jw}|^(2 order): a straight line of slope
    ``order`` against log|1 - e^{-jw}|^2, with little scatter around it."""
    omega, power, _ = _spectra(order)
    band = (omega > LOW_BAND[0]) & (omega < LOW_BAND[1])
    x = np.log10(np.abs(1 - np.exp(-1j * omega[band])) ** 2)
    y = np.log10(power[band])
    slope, intercept = np.polyfit(x, y, 1)
    residual = np.sqrt(np.mean((y - (slope * x + intercept)) ** 2))
    assert abs(slope - order) < 0.15
    assert residual < 0.05


@pytest.mark.parametrize("order", [1, 2])
def test_measured_noise_transfer_function(order):
    """The transfer from the quantiser's error e = b - y to b - c, estimated by cross-spectra on
    the random input, is (1 - e^{-jw})^order at every frequency."""
    omega, _, transfer = _spectra(order)
    band = omega > LOW_BAND[0]
    expected = (1 - np.exp(-1j * omega[band])) ** order
    relative = np.abs(transfer[band] - expected) / np.abs(expected)
    assert relative.max() < 0.05


def test_state_carries_across_groups():
    modulator = DifferentialModulator(2)
    c = _inputs(2, (2, 10, 3, 4, 4), seed=5)
    whole, _ = modulator(c)
    first, state = modulator(c[:, :4])
    second, _ = modulator(c[:, 4:], state)
    assert torch.equal(torch.cat([first, second], 1), whole)
    restarted, _ = modulator(c[:, 4:])
    assert not torch.equal(restarted, whole[:, 4:])


def test_make_quantizer_kinds():
    latents = _inputs(2, (2, 6, 3, 4, 4), seed=9, dtype=torch.float32)
    for kind in QUANTIZER_KINDS:
        quantizer = make_quantizer(kind)
        assert quantizer.kind == kind
        quantizer.eval()
        values, _ = quantizer(latents * 3)
        assert values.shape == latents.shape
        if quantizer.binary:
            assert torch.all(values.abs() == 1)
        else:
            assert torch.equal(values, torch.round(latents * 3))
    round_quantizer = make_quantizer("round").train()
    noisy, state = round_quantizer(latents)
    assert state is None
    assert 0 < (noisy - latents).abs().max() <= 0.5


def test_make_quantizer_rejects_unknown_kind():
    with pytest.raises(UsageError, match="unknown quantizer"):
        make_quantizer("dm3")
    with pytest.raises(ValueError):
        DifferentialModulator(3)


def test_gradient_reaches_the_latents_through_every_binary_quantizer():
    for kind in ("binary", "dm1", "dm2"):
        latents = _inputs(2, (1, 5, 2, 3, 3), seed=1, dtype=torch.float32).requires_grad_()
        values, _ = make_quantizer(kind)(latents)
        values.sum().backward()
        assert latents.grad is not None and latents.grad.abs().sum() > 0
