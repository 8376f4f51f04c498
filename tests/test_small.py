"""The compact networks of the ``small`` model: shapes, how they start, stripes and the budget."""

from __future__ import annotations

import copy

import pytest
import torch

from canfvc_codec.networks import References, VideoModel, get_config, to_reference
from canfvc_codec.networks.complexity import model_report
from canfvc_codec.networks.config import CoderConfig, ModelConfig
from canfvc_codec.networks.motion import MotionHyperpriorCoder
from canfvc_codec.nn import stripes
from canfvc_codec.nn.anf import COMPACT, AdditiveStep
from canfvc_codec.nn.block_motion import PRECISION, BlockMotion
from canfvc_codec.nn.compact import CompactAnalysis, CompactSynthesis
from canfvc_codec.nn.dq import QualityEnhancement
from canfvc_codec.nn.layers import backward_warp
from canfvc_codec.nn.unet import UNet
from canfvc_codec.rates import Rates
from canfvc_codec.weights import random_model

F64 = torch.float64
ULPS = 1e-12
# The compute budget of the small model, per 1920x1088 frame (GMAC) and in parameters.
BUDGET_GMACS = {"p_decode": 200, "first_p_decode": 200, "intra_decode": 120, "p_encode": 350}
BUDGET_PARAMETERS = 6_000_000


def test_compact_transforms_change_the_size_by_16_and_synthesis_starts_silent():
    analysis = CompactAnalysis(6, 16, 12)
    synthesis = CompactSynthesis(12, 16, 3)
    x = torch.rand(2, 6, 64, 96)
    latent = analysis(x)
    assert latent.shape == (2, 12, 4, 6)
    out = synthesis(latent)
    assert out.shape == (2, 3, 64, 96)
    assert torch.count_nonzero(out) == 0  # a fresh synthesis adds nothing to the condition
    out.sum().backward()
    assert synthesis[-2].weight.grad is not None and synthesis[-2].weight.grad.abs().sum() > 0


def test_a_step_with_difference_sees_x_minus_condition_and_still_inverts():
    torch.manual_seed(0)
    step = AdditiveStep(3, 3, 16, 8, 3, COMPACT, difference=True)
    for layer in step.synthesis.modules():  # give the synthesis a non-zero output
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.normal_(layer.weight, std=0.05)
    x, cond = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert step.analysis[1].in_channels == 3 * 3 * 16  # x, cond and x - cond, folded by 4
    with torch.no_grad():
        y, z = step.encode(x, None, cond)
        assert not torch.allclose(y, x)
        x_back, z_back = step.decode(y, z, cond)
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-5)
    assert z_back.abs().max() < 1e-5
    with pytest.raises(ValueError):
        AdditiveStep(2, 3, 16, 8, 3, COMPACT, difference=True)


def test_a_fresh_small_model_behaves_like_a_classical_coder():
    """Extrapolation repeats the last motion, MC warps the reference, DQ passes pictures on."""
    model = VideoModel(get_config("tiny-small"))
    generator = torch.Generator().manual_seed(1)
    frames = [torch.rand(1, 3, 64, 64, generator=generator) for _ in range(3)]
    flows = [3 * torch.randn(1, 2, 64, 64, generator=generator) for _ in range(2)]
    with torch.no_grad():
        torch.testing.assert_close(model.extrapolation(frames, flows), flows[-1])
        torch.testing.assert_close(
            model.mc(frames[0], flows[0]), backward_warp(frames[0], flows[0])
        )
        torch.testing.assert_close(model.inter.enhance(frames[1]), frames[1])
        # An inter coder that sends nothing reconstructs the condition.
        x_hat = model.inter(frames[2], 1024.0, frames[1], frames[1]).x_hat
    torch.testing.assert_close(x_hat, frames[1])


def test_block_motion_carries_a_smooth_flow_through_the_latent():
    block = BlockMotion()
    flow = torch.tensor([2.25, -1.5]).view(1, 2, 1, 1).expand(1, 2, 48, 64)
    cells = block.analyse(flow)
    assert cells.shape == (1, 2, 3, 4)
    torch.testing.assert_close(cells, flow[:, :, :3, :4] * PRECISION)  # quarter pixels
    torch.testing.assert_close(block.synthesise(torch.cat([cells, cells], dim=1)), flow)


@pytest.mark.parametrize("block_motion", [True, False])
def test_a_fresh_motion_coder_with_block_motion_sends_block_motion(block_motion):
    """With every learned transform silent, the coder sends each block's mean flow on its own;
    without the path it sends nothing."""
    torch.manual_seed(0)
    config = CoderConfig(8, 8, 8, 3, COMPACT, True, 3, block_motion=block_motion)
    coder = MotionHyperpriorCoder(config).eval()
    for layer in coder.steps[0].analysis.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.zeros_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    flow = torch.tensor([5.3, -2.6]).view(1, 2, 1, 1).expand(1, 2, 64, 64).contiguous()
    with torch.no_grad():
        coder.update()
        decoded = coder(flow, 1024.0).x_hat
    error = (decoded - flow).abs().max()
    gain = coder.gain.gains(1024.0, 1, flow)[0].min()
    if block_motion:  # within half a quantisation step of 1 / (gain * PRECISION) pixels
        assert error <= 0.5 / (gain * PRECISION) + 1e-4
    else:
        assert error > 2


def test_model_files_from_before_block_motion_load_without_it():
    stored = get_config("small").to_dict()
    del stored["motion"]["block_motion"]
    assert ModelConfig.from_dict(stored).motion.block_motion is False
    assert get_config("small").motion.block_motion is True


@pytest.mark.parametrize("scale", [2, 4])
def test_scaled_networks_keep_the_size_and_stripe_exactly(monkeypatch, scale):
    monkeypatch.setattr(stripes, "UNFOLD_BUDGET_BYTES", 4096)
    monkeypatch.setattr(stripes, "STRIPE_PIXELS", 4 * 64)  # many stripes at every scale
    torch.manual_seed(scale)
    unet = UNet(8, 2, (8, 8, 8), scale=scale).double().eval()
    enhance = QualityEnhancement(8, 1, scale=scale).double().eval()
    generator = torch.Generator().manual_seed(5)
    features = torch.rand(1, 8, 256, 64, dtype=F64, generator=generator)
    frame = torch.rand(1, 3, 256, 64, dtype=F64, generator=generator)
    striped_unet = stripes.compute_in_stripes(copy.deepcopy(unet))
    striped_enhance = stripes.compute_in_stripes(copy.deepcopy(enhance))
    layout = stripes.StripeLayout.scaled(stripes.UNET_HALO, scale)
    assert layout.align == stripes.STRIPE_ALIGN * scale and layout.halo > stripes.UNET_HALO
    with torch.no_grad():
        assert unet(features).shape == (1, 2, 256, 64)
        torch.testing.assert_close(striped_unet(features), unet(features), rtol=0, atol=ULPS)
        torch.testing.assert_close(striped_enhance(frame), enhance(frame), rtol=0, atol=ULPS)


def test_the_small_model_fits_its_compute_budget():
    report = model_report("small")
    for key, limit in BUDGET_GMACS.items():
        assert 0 < report["gmacs"][key] <= limit, key
    assert report["parameters_total"] <= BUDGET_PARAMETERS
    lite = model_report("lite")
    assert report["macs"]["p_decode"] * 10 < lite["macs"]["p_decode"]


def test_small_codes_and_decodes_in_lock_step(rgb_frames):
    model, _ = random_model("tiny-small")
    model = model.double()
    frames = rgb_frames(count=3, width=64, height=64).double()
    streams, x_hat = model.compress_intra(frames[0:1], 512.0)
    torch.testing.assert_close(model.decompress_intra(streams, (64, 64), 512.0), x_hat)
    refs = References([to_reference(x_hat)])
    for t in (1, 2):
        flow = torch.zeros(1, 2, 64, 64, dtype=F64)
        streams, x_hat, flow_hat = model.compress_inter(
            frames[t : t + 1], refs, Rates.uniform(512.0), flow
        )
        decoded, decoded_flow = model.decompress_inter(streams, refs, Rates.uniform(512.0))
        assert torch.equal(decoded, x_hat) and torch.equal(decoded_flow, flow_hat)
        refs = refs.push(to_reference(x_hat), flow_hat)
