"""Binary, differentially modulated intra latents in training (``--quantizer dm1|dm2``)."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch

from canfvc_codec.errors import UsageError
from canfvc_codec.networks import VideoModel, get_config
from canfvc_codec.quant.coder_adapter import CLIP_FRAMES, BinaryLatentAdapter
from canfvc_codec.train import phases
from tests.conftest import real_rgb_frames

SIZE = 64
LAMBDA = 1024.0
STEPS = 6


def _clip_batch() -> torch.Tensor:
    """Two real clips of CLIP_FRAMES frames (the second one mirrored): (2, T, 3, 64, 64)."""
    frames = real_rgb_frames("bikes.mp4", 0, CLIP_FRAMES, SIZE, SIZE)
    return torch.stack([frames, frames.flip(-1)])


def _model_and_adapter(kind: str) -> tuple[VideoModel, BinaryLatentAdapter]:
    torch.manual_seed(0)
    model = VideoModel(get_config("tiny")).train()
    phases.set_trainable(model, phases.get_phase("intra").parts)
    return model, BinaryLatentAdapter(kind, model.intra.latent_channels)


def _clip_loss(model: VideoModel, adapter: BinaryLatentAdapter, batch: torch.Tensor) -> float:
    """Mean loss over the clip; the binary quantiser is deterministic, so this is comparable."""
    with torch.no_grad():
        coding = adapter(model.intra, batch, LAMBDA)
    losses = [out.loss(batch[:, t], LAMBDA)["loss"] for t, out in enumerate(coding.frames)]
    return float(np.mean(losses))


@pytest.mark.parametrize("kind", ["dm1", "dm2"])
def test_binary_intra_training_lowers_the_loss_on_a_fixed_batch(kind: str) -> None:
    model, adapter = _model_and_adapter(kind)
    batch = _clip_batch()
    phase = phases.get_phase("intra")
    assert phases.clip_frames(phase, adapter) == CLIP_FRAMES
    params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    optimizer = torch.optim.Adam(params + list(adapter.parameters()), lr=1e-3)
    rng = np.random.default_rng(0)
    before = _clip_loss(model, adapter, batch)
    for _ in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        result = phases.run_step(
            model, phase, batch, LAMBDA, rng, contextlib.nullcontext, intra_latent=adapter
        )
        assert math.isfinite(result.loss) and result.bpp > 0
        optimizer.step()
    # The entropy model learned from the bits (its table is trained with the coder).
    assert adapter.entropy.logits.detach().abs().max() > 0
    after = _clip_loss(model, adapter, batch)
    assert math.isfinite(after) and after < 0.9 * before


@pytest.mark.parametrize("kind", ["dm1", "dm2"])
def test_binary_latents_are_signs_priced_by_the_binary_model_only(kind: str) -> None:
    model, adapter = _model_and_adapter(kind)
    batch = _clip_batch()
    with torch.no_grad():
        coding = adapter(model.intra, batch, LAMBDA)
        likelihoods = adapter.entropy(coding.bits)
    latent = model.intra.latent_channels
    assert coding.bits.shape == (2, CLIP_FRAMES, latent, SIZE // 16, SIZE // 16)
    assert set(coding.bits.unique().tolist()) == {-1.0, 1.0}
    assert len(coding.frames) == CLIP_FRAMES
    for t, out in enumerate(coding.frames):
        assert set(out.likelihoods) == {"intra.latent"}  # no hyperprior rate
        expected = -torch.log2(likelihoods[:, t]).flatten(1).sum(dim=1) / SIZE**2
        assert torch.allclose(out.bpp(), expected)


@pytest.mark.parametrize("kind", ["dm1", "dm2"])
def test_modulation_state_runs_along_the_clip(kind: str) -> None:
    model, adapter = _model_and_adapter(kind)
    batch = _clip_batch()
    split = CLIP_FRAMES // 2
    with torch.no_grad():
        whole = adapter(model.intra, batch, LAMBDA).bits
        first = adapter(model.intra, batch[:, :split], LAMBDA)
        carried = adapter(model.intra, batch[:, split:], LAMBDA, first.state).bits
        restarted = adapter(model.intra, batch[:, split:], LAMBDA).bits
    assert torch.equal(torch.cat([first.bits, carried], dim=1), whole)
    assert not torch.equal(restarted, whole[:, split:])  # the state matters


def test_only_modulated_quantizers_have_an_adapter() -> None:
    for kind in ("round", "binary", "dm3"):
        with pytest.raises(UsageError):
            BinaryLatentAdapter(kind, 8)
