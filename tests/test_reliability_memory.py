"""Bounded memory: striped computation gives the same results; encoding does not accumulate."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from canfvc_codec import memory
from canfvc_codec.codec import Decoder, encode_video
from canfvc_codec.encoder.gop import Encoder
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.errors import InputError
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer
from canfvc_codec.lab.memory import SamplingReader, growth_figures, traced_decode_peak
from canfvc_codec.networks.config import get_config
from canfvc_codec.nn import stripes
from canfvc_codec.nn.dq import QualityEnhancement
from canfvc_codec.nn.layers import Conv2d, ConvTranspose2d
from canfvc_codec.nn.unet import UNet
from canfvc_codec.rates import Rates
from canfvc_codec.weights import random_model
from tests.conftest import real_rgb_frames, real_yuv_frames

RATES = Rates.uniform(700.0)

F64 = torch.float64
# Stripes and per-call unfolding change only how many values one library call computes:
# results agree to the last few bits, far below what an 8-bit reference could notice.
ULPS = 1e-13


@pytest.fixture
def small_budgets(monkeypatch):
    """Budgets small enough that 64x64 frames are cut into many stripes."""
    monkeypatch.setattr(stripes, "UNFOLD_BUDGET_BYTES", 4096)
    monkeypatch.setattr(stripes, "STRIPE_PIXELS", 16 * 64)


@pytest.mark.parametrize(
    "layer, library",
    [
        (Conv2d(5, 7, 5, 2, 2), False),
        (Conv2d(5, 7, 3, 1, 1), False),  # shifted products
        (Conv2d(5, 7, 3, 1, 1), True),  # PyTorch's kernel, unfolding in stripes
        (ConvTranspose2d(5, 7, 5, 2, 2, 1), False),
        (ConvTranspose2d(5, 7, 3, 2, 1, 1), False),
    ],
    ids=["conv5s2", "conv3", "conv3-library", "deconv5s2", "deconv3s2"],
)
@pytest.mark.parametrize("size", [(16, 12), (15, 9), (4, 4)])
def test_striped_convolutions_match_whole_ones(small_budgets, layer, size, library):
    layer = layer.double()
    x = torch.randn(2, 5, *size, dtype=F64, generator=torch.Generator().manual_seed(3))
    striped = stripes.compute_in_stripes(copy.deepcopy(layer))
    stripes.use_library_convolutions(striped, library)
    with torch.no_grad():
        whole, parts = layer(x), striped(x)
    assert parts.shape == whole.shape
    torch.testing.assert_close(parts, whole, rtol=0, atol=ULPS)


@pytest.mark.parametrize(
    "kernel, padding, bias",
    [(3, 1, True), (5, 2, False), (1, 0, True), (3, 0, True), ((3, 5), (1, 2), True)],
)
@pytest.mark.parametrize("size", [(16, 12), (7, 9), (3, 5)])
def test_shifted_products_match_pytorchs_convolution(monkeypatch, kernel, padding, bias, size):
    monkeypatch.setattr(stripes, "SHIFTED_PRODUCT_ROWS", 3)  # several stripes, a short last one
    conv = nn.Conv2d(4, 6, kernel, padding=padding, bias=bias).double()
    x = torch.randn(2, 4, *size, dtype=F64, generator=torch.Generator().manual_seed(5))
    assert stripes.uses_shifted_products(conv, x)
    with torch.no_grad():
        expected = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=conv.padding)
        result = stripes.shifted_products_conv2d(conv, x)
    assert result.shape == expected.shape and result.is_contiguous()
    torch.testing.assert_close(result, expected, rtol=0, atol=ULPS)


def test_which_convolutions_use_shifted_products():
    conv = nn.Conv2d(4, 4, 3, padding=1).double()
    x = torch.rand(1, 4, 8, 8, dtype=F64)
    assert stripes.uses_shifted_products(conv, x)
    assert not stripes.uses_shifted_products(conv, x.float())  # oneDNN's kernels are fast
    assert not stripes.uses_shifted_products(conv, x.to(memory_format=torch.channels_last))
    assert not stripes.uses_shifted_products(nn.Conv2d(4, 4, 3, 2, 1).double(), x)
    assert not stripes.uses_shifted_products(nn.Conv2d(4, 4, 3, 1, 1, groups=2).double(), x)
    reflect = nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect").double()
    assert not stripes.uses_shifted_products(reflect, x)
    setattr(conv, stripes.LIBRARY_CONVOLUTIONS, True)
    assert not stripes.uses_shifted_products(conv, x)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
@pytest.mark.parametrize("dtype, striped", [(torch.float32, False), (F64, True)])
def test_only_convolutions_that_unfold_are_striped(small_budgets, monkeypatch, dtype, striped):
    """oneDNN's float32 convolutions build no unfolded buffer: striping them only costs time."""
    made = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(
        torch.nn.functional, "conv2d", lambda *a, **k: made.append(1) or conv2d(*a, **k)
    )
    layer = stripes.compute_in_stripes(Conv2d(5, 7, 5, 2, 2).to(dtype))
    with torch.no_grad():
        layer(torch.rand(1, 5, 32, 16, dtype=dtype))
    assert (len(made) > 1) == striped


def test_the_library_conv_path_really_changes_float64_results():
    """The determinism harness decodes under ``library-conv``: it must compute other floats
    (else it tests nothing), within rounding."""
    model, _ = random_model("tiny")
    model = model.double().eval().compute_in_stripes()
    features = torch.rand(1, 8, 32, 32, dtype=F64, generator=torch.Generator().manual_seed(6))
    library = copy.deepcopy(model).use_library_convolutions()
    with torch.no_grad():
        shifted = model.mc.refine(features)
        unfolded = library.mc.refine(features)
    assert not torch.equal(shifted, unfolded)
    torch.testing.assert_close(shifted, unfolded, rtol=0, atol=ULPS)


def test_full_resolution_networks_in_stripes(small_budgets):
    model, _ = random_model("tiny")
    model = model.double().eval()
    striped = copy.deepcopy(model).compute_in_stripes()
    networks = [m for m in striped.modules() if isinstance(m, (UNet, QualityEnhancement))]
    assert len(networks) == 4 and all(m.striped for m in networks)  # U-Nets, enhancements
    generator = torch.Generator().manual_seed(4)
    features = torch.rand(1, 8, 64, 48, dtype=F64, generator=generator)
    frame = torch.rand(1, 3, 64, 48, dtype=F64, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(
            striped.mc.refine(features), model.mc.refine(features), rtol=0, atol=ULPS
        )
        torch.testing.assert_close(
            striped.inter.enhance(frame), model.inter.enhance(frame), rtol=0, atol=ULPS
        )


def test_a_striped_decoder_decodes_an_unstriped_encoders_stream(monkeypatch):
    """Stripes are one more numerical path: harmless to a stream in float64."""
    frames = real_rgb_frames(count=3, width=64, height=64)
    model, _ = random_model("tiny")
    device = torch.device("cpu")
    encoder = Encoder(copy.deepcopy(model), RATES, IntraSchedule(0), 64, 64, device)
    coded = [encoder.encode(frame) for frame in frames]
    monkeypatch.setattr(stripes, "UNFOLD_BUDGET_BYTES", 4096)
    monkeypatch.setattr(stripes, "STRIPE_PIXELS", 16 * 64)
    decoder = Decoder(copy.deepcopy(model), RATES, 64, 64, device)
    for frame_type, streams, recon in coded:
        assert torch.equal(decoder.decode(frame_type, streams), recon)


def test_decode_memory_is_checked_before_decoding(monkeypatch):
    lite = get_config("lite")
    monkeypatch.setattr(memory, "physical_memory", lambda: 8 << 30)
    memory.check_memory(lite, 1920, 1080, F64)
    with pytest.raises(InputError, match="16384x16384 needs about .* GiB to decode"):
        memory.check_memory(lite, 16384, 16384, F64)
    with pytest.raises(InputError, match="16384x16384 needs at least about .* GiB to encode"):
        memory.check_memory(lite, 16384, 16384, F64, task="encode")
    small = memory.decode_memory_estimate(72, 64, 480, 272, 8)
    large = memory.decode_memory_estimate(72, 64, 1920, 1080, 8)
    # Above the measured 480x272 decode (1075 MiB, bench/results/memory.json); the bar for 1080p
    # is 4 GB.
    assert 1075 << 20 < small < large < 4 << 30


def test_encode_memory_is_checked_before_the_first_frame(tmp_path, monkeypatch):
    """A Y4M header may claim 16384x16384: the encoder refuses it before reading a frame."""
    monkeypatch.setattr(memory, "physical_memory", lambda: 8 << 30)
    source = tmp_path / "huge.y4m"
    source.write_bytes(b"YUV4MPEG2 W16384 H16384 F25:1 C420jpeg\nFRAME\n" + bytes(64))
    output = tmp_path / "huge.cvc"
    options = EncodeOptions(model="random-tiny", device="cpu")
    with pytest.raises(InputError, match="16384x16384 needs at least about .* GiB to encode"):
        with open_reader(str(source)) as reader, output.open("wb") as sink:
            encode_video(reader, sink, options, progress=False)


GROWTH_FRAMES = 40
GROWTH_GOP = 8
GROWTH_EVERY = 4


def test_encoding_keeps_no_tensors_from_frame_to_frame(tmp_path):
    """After the first GOP, the tensors alive between frames are the same in number and size
    at every sample: nothing accumulates with the length of the input. (Resident memory is
    measured over 300 frames by ``python -m canfvc_codec.lab.memory``.)"""
    info = VideoInfo(64, 64, 25, 1, 8, "bt709", False, GROWTH_FRAMES)
    clip = tmp_path / "long.y4m"
    with open_writer(str(clip), info) as writer:
        for y, u, v in real_yuv_frames("bikes.mp4", 0, GROWTH_FRAMES, 64, 64):
            writer.write(Frame(y, u, v))
    options = EncodeOptions(gop=GROWTH_GOP, adaptive_intra=False, model="random-tiny", device="cpu")
    with open_reader(str(clip)) as reader, (tmp_path / "long.cvc").open("wb") as sink:
        sampling = SamplingReader(reader, GROWTH_EVERY, tensors=True)
        encode_video(sampling, sink, options, progress=False)
    print("live tensors (frame, count, MiB):", sampling.tensor_samples)
    steady = [(count, mib) for frame, count, mib in sampling.tensor_samples if frame >= GROWTH_GOP]
    assert len(steady) >= 7
    assert max(count for count, _ in steady) == min(count for count, _ in steady)
    assert max(mib for _, mib in steady) - min(mib for _, mib in steady) < 0.01


def test_growth_figures_see_a_leak():
    leaking = [(frame, 300.0 + 0.5 * frame) for frame in range(0, 100, 10)]
    assert growth_figures(leaking, gop=20)["slope_mib_per_100_frames"] == pytest.approx(50.0)
    flat = [(frame, 300.0 + (frame % 20 == 0)) for frame in range(0, 100, 10)]
    assert abs(growth_figures(flat, gop=20)["slope_mib_per_100_frames"]) < 2.0


def test_traced_decode_peak_counts_the_decoders_tensors():
    traced = traced_decode_peak("random-tiny", 128, 64)
    frame_mib = 3 * 128 * 64 * 8 / 2**20  # one float64 RGB frame
    # At least the three references and a U-Net input (13 channels); far below a gigabyte.
    assert 3 * frame_mib + 13 / 3 * frame_mib < traced["tensors_peak_mib"] < 256
    assert traced["weights_mib"] > 0
