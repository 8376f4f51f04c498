"""The coders and the video model on real frames with the tiny configuration and random weights."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from canfvc_codec.encoder.gop import Encoder, EncoderTools
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.networks import CONFIGS, References, VideoModel, get_config, to_reference
from canfvc_codec.networks.complexity import (
    FLOPS_PER_MAC,
    PROBE_LAMBDA,
    PROBE_SEED,
    PROBE_SIZE,
    frame_macs,
    model_report,
    parameter_counts,
)
from canfvc_codec.numerics import DECODER_DTYPE, NUMERIC_PATHS, Numerics
from canfvc_codec.rates import Rates
from canfvc_codec.weights import random_model

LAMBDA = 1024.0
RATES = Rates.uniform(LAMBDA)
# Spread (RMS) of the gained latents in the rate tests: several bits per symbol, like a real coder.
SPREAD = 6.0
RATE_TOLERANCE = 0.02
PAPER_LITE_PARAMS = 15e6
SILENT_SEED, SILENT_STD = 7, 0.05


@pytest.fixture(scope="module", params=["tiny", "tiny-small"])
def model(request) -> VideoModel:
    """Both families of networks: the paper's transforms and the compact ones. The compact
    networks' residual outputs start at zero; here they get random weights, as training gives
    them, so that every input can show in the output."""
    model = random_model(request.param)[0]
    generator = torch.Generator().manual_seed(SILENT_SEED)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() > 1 and not weight.any():
                weight.copy_(SILENT_STD * torch.randn(weight.shape, generator=generator))
    return model


def _smooth_flow(height: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = 3.0 * torch.randn(1, 2, height // 16, width // 16, generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def _coder_inputs(name: str, frames: torch.Tensor):
    """(coder input, condition, temporal-prior input) for each coder on real frames."""
    _, _, height, width = frames.shape
    flow = _smooth_flow(height, width, seed=0)
    if name == "intra":
        return frames[1:2], None, None
    if name == "motion_first":
        return flow, None, None
    if name == "motion":
        return flow, flow + _smooth_flow(height, width, seed=1) / 4, frames[0:1]
    return frames[1:2], frames[0:1], frames[0:1]  # inter


CODERS = ("intra", "motion_first", "motion", "inter")


@pytest.mark.parametrize("name", CODERS)
def test_coder_compress_decompress_round_trip(model, rgb_frames, name):
    coder = model.coders()[name]
    x, cond, prior = _coder_inputs(name, rgb_frames(count=2, width=128, height=64))
    streams, x_hat = coder.compress(x, LAMBDA, cond, prior)
    assert len(streams) == 2 and all(isinstance(s, bytes) for s in streams)
    decoded = coder.decompress(streams, (64, 128), LAMBDA, cond, prior)
    assert torch.equal(decoded, x_hat)
    # The training forward in eval mode rounds exactly like the coder.
    with torch.no_grad():
        forward = coder(x, LAMBDA, cond, prior)
    torch.testing.assert_close(forward.x_hat, x_hat, rtol=1e-4, atol=1e-4)


def _calibrate(coder, x, cond) -> None:
    """Give the random coder a prior that fits its latents: N(0, SPREAD) on latents of RMS SPREAD.

    Untrained hyper-synthesis outputs are unrelated to the latents, which would make most symbols
    escapes; a trained model predicts scales that fit, which this imitates.
    """
    with torch.no_grad():
        _, z2 = coder.analyse(x, cond)
        rms = float(z2.pow(2).mean().sqrt())
        coder.gain.log_gain.add_(math.log(SPREAD / rms))
        last = (coder.fusion if coder.fusion is not None else coder.hyper_synthesis)[-1]
        latent = coder.latent_channels
        last.weight.zero_()
        last.bias[:latent] = 0.0
        last.bias[latent:] = rms


@pytest.mark.parametrize("name", CODERS)
def test_estimated_bits_match_real_bits(model, rgb_frames, name):
    coder = copy.deepcopy(model.coders()[name])
    x, cond, prior = _coder_inputs(name, rgb_frames(count=2, width=256, height=128))
    _calibrate(coder, x, cond)
    with torch.no_grad():
        estimated = float(coder(x, LAMBDA, cond, prior).bits())
    streams, _ = coder.compress(x, LAMBDA, cond, prior)
    real = 8 * sum(len(s) for s in streams)
    assert estimated > 2000, "the test needs latents that carry information"
    assert abs(real - estimated) / estimated < RATE_TOLERANCE, (real, estimated)


def test_rate_grows_with_lambda(model, rgb_frames):
    coder = copy.deepcopy(model.intra)
    x, _, _ = _coder_inputs("intra", rgb_frames(count=2, width=128, height=64))
    _calibrate(coder, x, None)
    sizes = [sum(map(len, coder.compress(x, lmbda)[0])) for lmbda in (256.0, 700.0, 2048.0)]
    assert sizes[0] < sizes[1] < sizes[2]


@pytest.mark.parametrize("name", ["motion", "inter"])
def test_conditional_decoding_depends_on_condition_and_prior(model, rgb_frames, name):
    coder = model.coders()[name]
    x, cond, prior = _coder_inputs(name, rgb_frames(count=2, width=128, height=64))
    streams, x_hat = coder.compress(x, LAMBDA, cond, prior)
    other_cond = coder.decompress(streams, (64, 128), LAMBDA, cond + 0.25, prior)
    other_prior = coder.decompress(streams, (64, 128), LAMBDA, cond, prior.flip(-1))
    assert not torch.allclose(other_cond, x_hat)
    assert not torch.allclose(other_prior, x_hat)


def test_coders_reject_missing_or_extra_conditions(model):
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError):
        model.inter.compress(x, LAMBDA)
    with pytest.raises(ValueError):
        model.intra.compress(x, LAMBDA, x)
    with pytest.raises(ValueError):
        model.intra.compress(torch.rand(1, 3, 48, 64), LAMBDA)


def test_references_keep_three_frames_and_two_flows():
    frames = [torch.full((1, 3, 4, 4), float(k)) for k in range(5)]
    flows = [torch.full((1, 2, 4, 4), float(k)) for k in range(5)]
    refs = References([frames[0]])
    assert refs.first_p
    refs = refs.push(frames[1], flows[1])
    padded_frames, padded_flows = refs.padded()
    assert [int(f[0, 0, 0, 0]) for f in padded_frames] == [0, 0, 1]
    assert [int(f[0, 0, 0, 0]) for f in padded_flows] == [1, 1]
    for k in (2, 3, 4):
        refs = refs.push(frames[k], flows[k])
    assert [int(f[0, 0, 0, 0]) for f in refs.frames] == [2, 3, 4]
    assert [int(f[0, 0, 0, 0]) for f in refs.flows] == [3, 4]


def _encode_sequence(model, frames):
    """Code I, first P and two later P-frames; return per frame (streams, x̂, f̂, refs used)."""
    coded = []
    streams, x_hat = model.compress_intra(frames[0:1], LAMBDA)
    coded.append((streams, x_hat, None, None))
    refs = References([to_reference(x_hat)])
    for k in range(1, frames.shape[0]):
        streams, x_hat, flow_hat = model.compress_inter(frames[k : k + 1], refs, RATES)
        coded.append((streams, x_hat, flow_hat, refs))
        refs = refs.push(to_reference(x_hat), flow_hat)
    return coded


def test_video_model_decoder_matches_encoder(model, rgb_frames):
    frames = rgb_frames(count=4, width=64, height=64)
    coded = _encode_sequence(model, frames)
    assert torch.equal(model.decompress_intra(coded[0][0], (64, 64), LAMBDA), coded[0][1])
    refs = References([to_reference(coded[0][1])])
    for streams, x_hat, flow_hat, _ in coded[1:]:
        assert len(streams) == 4
        decoded, decoded_flow = model.decompress_inter(streams, refs, RATES)
        assert torch.equal(decoded, x_hat) and torch.equal(decoded_flow, flow_hat)
        refs = refs.push(to_reference(decoded), decoded_flow)


def test_extrapolation_and_motion_compensation_are_on_the_decoding_path(model, rgb_frames):
    frames = rgb_frames(count=4, width=64, height=64)
    streams, x_hat, flow_hat, refs = _encode_sequence(model, frames)[3]
    assert not refs.first_p and len(refs.frames) == 3
    # The oldest frame reaches the decoder only through flow extrapolation.
    older = References([refs.frames[0].flip(-1), *refs.frames[1:]], refs.flows)
    assert not torch.equal(model.decompress_inter(streams, older, RATES)[1], flow_hat)
    older_flow = References(refs.frames, [refs.flows[0] + 1.0, refs.flows[1]])
    assert not torch.equal(model.decompress_inter(streams, older_flow, RATES)[1], flow_hat)
    # Motion compensation's refinement shapes x_c, hence the decoded frame.
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.mc.refine.out.bias.add_(0.1)
    decoded, decoded_flow = changed.decompress_inter(streams, refs, RATES)
    assert torch.equal(decoded_flow, flow_hat)
    assert not torch.allclose(decoded, x_hat)


def test_training_forward_gives_eq12_terms_and_gradients(rgb_frames):
    model = VideoModel(get_config("tiny")).train()
    frames = rgb_frames(count=3, width=64, height=64)
    refs = References([frames[0:1]], [torch.zeros(1, 2, 64, 64)])  # a later P-frame
    lmbda = torch.tensor([512.0])
    out = model(frames[1:2], lmbda, refs)
    assert set(out.likelihoods) == {"motion.hyper", "motion.latent", "inter.hyper", "inter.latent"}
    terms = out.loss(frames[1:2], lmbda)
    assert all(torch.isfinite(v) for v in terms.values())
    expected = terms["bpp"] + 512.0 * (0.01 * terms["condition_mse"] + terms["mse"])
    torch.testing.assert_close(terms["loss"], expected)
    (terms["loss"] + model.aux_loss()).backward()
    for name in ("spynet", "extrapolation", "mc", "motion", "inter"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    intra = model(frames[0:1], 512.0)
    assert set(intra.likelihoods) == {"intra.hyper", "intra.latent"}


def test_parameter_counts_of_lite_and_full():
    lite = parameter_counts(VideoModel(get_config("lite")))
    full = parameter_counts(VideoModel(get_config("full")))
    lite_p = sum(lite.values()) - lite["intra"]
    # The paper's CANF-VC Lite has about 15M parameters (P-frame networks).
    assert abs(lite_p - PAPER_LITE_PARAMS) / PAPER_LITE_PARAMS < 0.1
    assert sum(full.values()) > sum(lite.values())


def test_model_report_tiny_counts_every_network_and_frame_type():
    report = model_report("tiny")
    model = VideoModel(get_config("tiny"))
    assert report["parameters_total"] == sum(p.numel() for p in model.parameters())
    assert set(report["parameters"]) == set(dict(model.named_children()))
    macs = report["macs"]
    assert macs["p_encode"] > macs["p_decode"] > macs["intra_decode"] > 0
    assert macs["p_encode"] > macs["first_p_encode"]  # extrapolation + temporal prior


def test_configs_round_trip_through_dicts():
    for config in CONFIGS.values():
        assert type(config).from_dict(config.to_dict()) == config


def test_the_p_frame_macs_are_those_of_the_encoders_own_path():
    """``canfvc info --model`` counts the frames the encoder codes: the MACs of
    :class:`Encoder` coding an I-frame, a first and a later P-frame (its motion search left out,
    as the report leaves it out) equal :func:`frame_macs`' at the probe size."""
    model = random_model("tiny")[0]
    expected = frame_macs(copy.deepcopy(model), PROBE_SIZE)
    height, width = PROBE_SIZE
    generator = torch.Generator().manual_seed(PROBE_SEED)
    frames = torch.rand(3, 3, height, width, generator=generator, dtype=torch.float64)
    encoder = Encoder(
        copy.deepcopy(model),
        Rates.uniform(PROBE_LAMBDA),
        IntraSchedule(0),
        width,
        height,
        torch.device("cpu"),
        # PyTorch's convolutions, which the counter sees, instead of the shifted products.
        Numerics(DECODER_DTYPE, NUMERIC_PATHS["library-conv"]),
        tools=EncoderTools(motion_search=lambda x, reference: torch.zeros_like(x[:, :2])),
    )
    counted = {}
    for key, frame in zip(("intra_encode", "first_p_encode", "p_encode"), frames, strict=True):
        with FlopCounterMode(display=False) as counter:
            encoder.encode(frame)
        counted[key] = counter.get_total_flops() // FLOPS_PER_MAC
    assert counted == {key: expected[key] for key in counted}
