"""Building blocks: GDN, warping, additive steps, λ gains, flow and refinement networks."""

from __future__ import annotations

import math

import pytest
import torch

from canfvc_codec.nn import (
    GDN,
    AdditiveStep,
    FlowExtrapolation,
    LambdaGain,
    MotionCompensation,
    QualityEnhancement,
    SpyNet,
    backward_warp,
    conv,
    deconv,
)

GDN_GAMMA = 0.1  # GDN's initial gamma diagonal


def test_conv_and_deconv_halve_and_double():
    x = torch.rand(1, 3, 32, 48)
    down = conv(3, 5)(x)
    assert down.shape == (1, 5, 16, 24)
    assert deconv(5, 3)(down).shape == x.shape


def test_gdn_and_inverse_gdn_at_initialisation():
    x = torch.randn(2, 4, 5, 5)
    # beta = 1, gamma = 0.1 I: each channel is normalised by its own energy only.
    expected = x / torch.sqrt(1 + GDN_GAMMA * x * x)
    torch.testing.assert_close(GDN(4)(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(GDN(4, inverse=True)(x), x * torch.sqrt(1 + GDN_GAMMA * x * x))


def test_gdn_parameters_stay_positive_after_bad_updates():
    gdn = GDN(3)
    with torch.no_grad():
        gdn.beta.fill_(-5.0)
        gdn.gamma.fill_(-5.0)
    out = gdn(torch.randn(1, 3, 4, 4))
    assert torch.isfinite(out).all()


def test_backward_warp_zero_flow_is_identity(rgb_frames):
    frame = rgb_frames(count=1, width=64, height=48)
    flow = torch.zeros(1, 2, 48, 64)
    torch.testing.assert_close(backward_warp(frame, flow), frame)


def test_backward_warp_integer_shift_and_border(rgb_frames):
    frame = rgb_frames(count=1, width=64, height=48)
    flow = torch.zeros(1, 2, 48, 64)
    flow[:, 0] = 2.0  # sample two pixels to the right
    warped = backward_warp(frame, flow)
    torch.testing.assert_close(warped[..., :-2], frame[..., 2:], rtol=1e-5, atol=1e-5)
    # Beyond the border the last column is repeated.
    torch.testing.assert_close(warped[..., -1], frame[..., -1], rtol=1e-5, atol=1e-5)


def test_backward_warp_keeps_float64():
    frame = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    assert backward_warp(frame, torch.zeros(1, 2, 8, 8, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("cond_channels", [0, 3])
def test_additive_step_decode_inverts_encode(cond_channels):
    torch.manual_seed(1)
    step = AdditiveStep(3, cond_channels, 8, 6, 5)
    x = torch.rand(1, 3, 32, 32)
    cond = torch.rand(1, 3, 32, 32) if cond_channels else None
    z0 = torch.randn(1, 6, 2, 2)
    y, z = step.encode(x, z0, cond)
    assert not torch.allclose(y, x)
    x_back, z_back = step.decode(y, z, cond)
    torch.testing.assert_close(x_back, x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(z_back, z0, rtol=1e-5, atol=1e-5)


def test_additive_step_condition_enters_the_analysis():
    torch.manual_seed(2)
    step = AdditiveStep(3, 3, 8, 6, 5)
    x = torch.rand(1, 3, 32, 32)
    _, z_a = step.encode(x, None, torch.zeros(1, 3, 32, 32))
    _, z_b = step.encode(x, None, torch.ones(1, 3, 32, 32))
    assert not torch.allclose(z_a, z_b)


def test_lambda_gain_interpolates_exponentially_between_anchors():
    unit = LambdaGain(4, anchors=(256.0, 512.0, 1024.0, 2048.0))
    with torch.no_grad():
        unit.log_gain.copy_(torch.randn(4, 4))
    like = torch.zeros(1)
    at_512, _ = unit.gains(512.0, 1, like)
    at_1024, _ = unit.gains(1024.0, 1, like)
    between, _ = unit.gains(math.sqrt(512.0 * 1024.0), 1, like)  # halfway in log-λ
    torch.testing.assert_close(at_512.flatten(), unit.log_gain[1].exp().detach())
    torch.testing.assert_close(between, torch.sqrt(at_512 * at_1024))
    # Beyond the anchors λ is clamped.
    torch.testing.assert_close(unit.gains(100.0, 1, like)[0], unit.gains(256.0, 1, like)[0])
    torch.testing.assert_close(unit.gains(9000.0, 1, like)[0], unit.gains(2048.0, 1, like)[0])


def test_lambda_gain_per_sample_and_initial_order():
    unit = LambdaGain(3)
    gain, inverse = unit.gains(torch.tensor([256.0, 2048.0]), 2, torch.zeros(1))
    assert gain.shape == (2, 3, 1, 1)
    # Untrained gains already quantise more finely at a higher λ, and invert each other.
    assert (gain[1] > gain[0]).all()
    torch.testing.assert_close(gain * inverse, torch.ones_like(gain))


def test_spynet_shape_and_gradient(rgb_frames):
    frames = rgb_frames(count=2, width=64, height=64)
    net = SpyNet(5, (8, 8))
    flow = net(frames[:1], frames[1:])
    assert flow.shape == (1, 2, 64, 64)
    flow.abs().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_flow_extrapolation_uses_frames_and_flows():
    torch.manual_seed(3)
    net = FlowExtrapolation((8, 8, 8))
    frames = [torch.rand(1, 3, 32, 32) for _ in range(3)]
    flows = [torch.randn(1, 2, 32, 32) for _ in range(2)]
    f_c = net(frames, flows)
    assert f_c.shape == (1, 2, 32, 32)
    assert not torch.allclose(f_c, net([torch.rand(1, 3, 32, 32), *frames[1:]], flows))
    assert not torch.allclose(f_c, net(frames, [torch.randn(1, 2, 32, 32), flows[1]]))
    with pytest.raises(ValueError):
        net(frames[:2], flows)


def test_motion_compensation_is_warp_plus_refinement(rgb_frames):
    reference = rgb_frames(count=1, width=32, height=32)
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 1] = 1.0
    mc = MotionCompensation((8, 8, 8))
    with torch.no_grad():
        mc.refine.out.weight.zero_()
        mc.refine.out.bias.zero_()
    torch.testing.assert_close(mc(reference, flow), backward_warp(reference, flow))


def test_quality_enhancement_is_residual():
    net = QualityEnhancement(8, 2)
    with torch.no_grad():
        net.body[-1].weight.zero_()
        net.body[-1].bias.zero_()
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(net(x), x)
