"""Binary, differentially modulated intra latents in training (``python -m
canfvc_codec.lab.binary_intra --quantizer dm1|dm2``)."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch

from canfvc_codec.errors import UsageError
from canfvc_codec.lab.binary_intra import BinaryIntraTrainer, binary_intra_step, main
from canfvc_codec.networks import VideoModel, get_config
from canfvc_codec.quant.coder_adapter import CLIP_FRAMES, BinaryLatentAdapter
from canfvc_codec.train import phases
from canfvc_codec.train.trainer import Trainer
from tests.conftest import real_rgb_frames
from tests.test_train import _data, _options

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
    params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    optimizer = torch.optim.Adam(params + list(adapter.parameters()), lr=1e-3)
    before = _clip_loss(model, adapter, batch)
    for _ in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        result = binary_intra_step(model, adapter, batch, LAMBDA, contextlib.nullcontext)
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


def test_binary_intra_latents_train_and_resume(tmp_path) -> None:
    options = dict(phase="intra", plan_steps=8)
    first = BinaryIntraTrainer(_options(tmp_path, steps=2, **options), "dm2", data=_data(seed=1))
    assert first._sequence_frames(phases.get_phase("intra")) == CLIP_FRAMES
    first.run()
    assert first.progress.phase_steps == {"intra": 2}
    logits = first.intra_latent.entropy.logits.detach().clone()
    assert logits.abs().max() > 0  # the binary entropy model trains with the coder

    resumed = BinaryIntraTrainer(_options(tmp_path, **options), "dm2", data=_data(seed=1))
    assert torch.equal(resumed.intra_latent.entropy.logits, logits)
    result = resumed.step()
    assert np.isfinite(result.loss) and 0 < result.bpp
    # The product trainer and another quantiser refuse the checkpoint.
    with pytest.raises(UsageError, match="trained with --quantizer dm2, not round"):
        Trainer(_options(tmp_path, phase="intra"), data=_data(seed=1))
    with pytest.raises(UsageError, match="trained with --quantizer dm2, not dm1"):
        BinaryIntraTrainer(_options(tmp_path, phase="intra"), "dm1", data=_data(seed=1))


def test_binary_quantizer_refuses_export_and_other_phases(tmp_path, capsys) -> None:
    args = ["--config", "tiny", "--device", "cpu", "--ckpt", str(tmp_path / "ckpt")]
    args += ["--quantizer", "dm1", "--steps", "0"]
    for fixed in (["--export", str(tmp_path / "model.pt")], ["--phase", "ipppp"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *fixed])
        assert exit_info.value.code == UsageError.exit_code
        assert "No such option" in capsys.readouterr().err
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "ckpt").exists()
    with pytest.raises(UsageError, match="training experiments only"):
        BinaryIntraTrainer(_options(tmp_path, phase="intra", export=tmp_path / "m.pt"), "dm1")
    with pytest.raises(UsageError, match="needs --phase intra"):
        BinaryIntraTrainer(_options(tmp_path, phase="ipppp"), "dm1", data=_data())
    assert not (tmp_path / "ckpt").exists()


def test_the_product_trainer_has_no_quantizer_option(tmp_path, capsys) -> None:
    from canfvc_codec.train.__main__ import main as train_main

    with pytest.raises(SystemExit):
        train_main(["--config", "tiny", "--quantizer", "dm1", "--steps", "0"])
    assert "No such option '--quantizer'" in capsys.readouterr().err
