"""The differential-modulation experiment's model: one quantiser swapped, same network around it."""

from __future__ import annotations

import math

import pytest
import torch

from canfvc_codec.lab.differential_modulation import GroupAutoencoder, coded_bpp, rate_distortion
from canfvc_codec.quant import BinaryEntropyModel, make_quantizer

LMBDA = 256.0


def _frames(seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((1, 4, 3, 16, 16), generator=generator)


@pytest.mark.parametrize("kind", ["round", "dm1", "dm2"])
def test_model_shapes_and_rate(kind):
    torch.manual_seed(0)
    model = GroupAutoencoder(make_quantizer(kind))
    frames = _frames(1)
    out = rate_distortion(model, frames, LMBDA)
    assert out["reconstruction"].shape == frames.shape
    assert out["bpp"] > 0
    out["loss"].backward()
    first_conv = model.encoder[0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    if model.quantizer.binary:
        assert isinstance(model.entropy, BinaryEntropyModel)
        assert torch.all(out["quantised"].abs() == 1)


def test_coded_rate_matches_estimate_for_binary_latents():
    torch.manual_seed(0)
    model = GroupAutoencoder(make_quantizer("dm1"))
    frames = _frames(2)
    with torch.no_grad():
        estimated = rate_distortion(model.eval(), frames, LMBDA)["bpp"].item()
    coded = coded_bpp(model, frames)
    pixels = frames.shape[1] * frames.shape[-2] * frames.shape[-1]
    # The range coder adds at most a couple of 32-bit words to the estimate.
    assert coded is not None and math.isclose(coded, estimated, abs_tol=64 / pixels + 0.01)
    assert coded_bpp(GroupAutoencoder(make_quantizer("round")), frames) is None
