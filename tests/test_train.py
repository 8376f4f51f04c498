"""Training pipeline: data rules, a step that learns, exact resume, and export then load."""

from __future__ import annotations

import contextlib
import copy
import json

import numpy as np
import pytest
import torch

from canfvc_codec.datasets import ClipRange
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.entropy.coder import TabledModel
from canfvc_codec.entropy.factorized import FILTERS
from canfvc_codec.errors import InputError
from canfvc_codec.networks import References, VideoModel, get_config, to_reference
from canfvc_codec.rates import Rates, auto_intra_lambda, auto_motion_lambda
from canfvc_codec.train import command, losses, phases
from canfvc_codec.train.card import export_model, model_card
from canfvc_codec.train.data import (
    TrainingData,
    VideoSource,
    check_training_range,
    decode_training_range,
    scene_cuts,
)
from canfvc_codec.train.trainer import Trainer, TrainOptions, longest_sequence
from tests.conftest import real_rgb_frames

CROP = 64
FRAMES = 8


def _real_video(start: int = 0) -> VideoSource:
    frames = real_rgb_frames("bikes.mp4", start, FRAMES, 128, 128)
    array = (frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    return VideoSource("bikes.mp4", array, scene_cuts(array))


def _still() -> np.ndarray:
    """A detailed 256x256 picture standing for a still photograph: a frame of another clip, so
    that the tests need no scikit-image (whose photographs training uses when it is present)."""
    frame = real_rgb_frames("bigbuckbunny.mp4", 50, 1, 256, 256)[0]
    return (frame.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def _data(seed: int = 0, still_fraction: float = 0.25) -> TrainingData:
    return TrainingData([_real_video()], [_still()], CROP, seed=seed, still_fraction=still_fraction)


@pytest.mark.parametrize(
    "r",
    [
        ClipRange("bikes.mp4", 180, 10),  # runs into the development frames 186..249
        ClipRange("bigbuckbunny.mp4", 100, 1),  # the first development frame of bigbuckbunny
        ClipRange("carphone_pristine.mp4", 0, 5),  # reserved clip
    ],
)
def test_development_and_reserved_frames_are_refused(r: ClipRange) -> None:
    with pytest.raises(InputError):
        check_training_range(r)
    with pytest.raises(InputError):
        decode_training_range(r)


def test_sequences_shape_range_and_reproducibility() -> None:
    data = _data(seed=3)
    first = data.sequences(3, 5)
    assert first.shape == (3, 5, 3, CROP, CROP)
    assert first.min() >= 0 and first.max() <= 1
    state = data.state_dict()
    second = data.sequences(3, 5)
    data.load_state_dict(state)
    assert torch.equal(data.sequences(3, 5), second)
    assert torch.equal(_data(seed=3).sequences(3, 5), first)


def _best_shift_error(a: torch.Tensor, b: torch.Tensor, reach: int = 10) -> float:
    """Smallest mean difference between the centre of ``b`` and ``a`` shifted by whole pixels."""
    centre = b[:, reach:-reach, reach:-reach]
    size = centre.shape[-1]
    return min(
        float(
            (a[:, reach + y : reach + y + size, reach + x : reach + x + size] - centre).abs().mean()
        )
        for y in range(-reach, reach + 1)
        for x in range(-reach, reach + 1)
    )


def test_stills_move_like_a_camera() -> None:
    clip = _data(seed=1, still_fraction=1.0).sequences(4, 7)
    moved = 0
    for sequence in clip:
        for a, b in zip(sequence[:-1], sequence[1:], strict=True):
            raw = float((a - b).abs().mean())
            # Each frame is its predecessor moved a little: nearly explained by a small shift.
            assert _best_shift_error(a, b) < max(0.5 * raw, 0.02)
            moved += raw > 1e-3
    assert moved >= clip.shape[0] * (clip.shape[1] - 1) // 2


def test_scene_cuts_are_found_and_avoided() -> None:
    a = real_rgb_frames("bikes.mp4", 0, 4, 64, 64)
    b = real_rgb_frames("bigbuckbunny.mp4", 0, 4, 64, 64)
    frames = (torch.cat([a, b]).permute(0, 2, 3, 1) * 255).to(torch.uint8).numpy()
    cuts = scene_cuts(frames)
    assert cuts.tolist() == [False, False, False, False, True, False, False, False]
    starts = VideoSource("x", frames, cuts).window_starts(3)
    assert starts.tolist() == [0, 1, 4, 5]


def test_lambda_is_log_uniform_over_the_rate_range() -> None:
    rng = np.random.default_rng(0)
    values = np.array([losses.sample_lambda(rng) for _ in range(2000)])
    assert values.min() >= losses.LAMBDA_MIN and values.max() <= losses.LAMBDA_MAX
    # Log-uniform: the geometric mean sits at the middle of the log range (724 for 256..2048).
    assert abs(np.exp(np.log(values).mean()) - np.sqrt(256 * 2048)) < 40


def test_schedule_covers_the_plan_in_order() -> None:
    assert abs(sum(p.share for p in phases.SCHEDULE) - 1.0) < 1e-9
    seen = [phases.phase_at(f).name for f in np.linspace(0, 0.999, 400)]
    assert list(dict.fromkeys(seen)) == [p.name for p in phases.SCHEDULE]
    assert phases.phase_at(1.5).name == phases.SCHEDULE[-1].name


def _eval_loss(model: VideoModel, batch: torch.Tensor, phase: phases.Phase, lmbda: float) -> float:
    """The phase's loss with rounding instead of noise: deterministic, so comparable."""
    model.eval()
    with torch.no_grad():
        if phase.kind == "intra":
            out, x = model(batch[:, 0], lmbda), batch[:, 0]
        else:
            refs = phases._estimated_refs(model, batch[:, :3], conditional=True)
            out, x = model(batch[:, 3], lmbda, refs), batch[:, 3]
    model.train()
    return float(out.loss(x, lmbda)["loss"])


def test_the_command_offers_every_phase() -> None:
    # The command lists the names itself so that its help needs no torch import.
    assert command.PHASE_NAMES == tuple(phases.PHASES)


@pytest.mark.parametrize("name", ["intra", "ip_joint"])
def test_training_steps_lower_the_loss_on_a_fixed_batch(name: str) -> None:
    torch.manual_seed(0)
    model = VideoModel(get_config("tiny")).train()
    phase = phases.get_phase(name)
    phases.set_trainable(model, phase.parts)
    batch = _data(seed=0).sequences(2, phase.frames)
    lmbda = 1024.0
    params = [p for n, p in model.named_parameters() if not n.endswith("quantiles")]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    rng = np.random.default_rng(0)
    before = _eval_loss(model, batch, phase, lmbda)
    for _ in range(8):
        optimizer.zero_grad(set_to_none=True)
        phases.run_step(model, phase, batch, lmbda, rng, contextlib.nullcontext)
        optimizer.step()
    after = _eval_loss(model, batch, phase, lmbda)
    assert after < 0.9 * before


def _ipppp_pass(model: VideoModel, batch: torch.Tensor, lmbda: float) -> list:
    """The frame outputs of an IPPPP pass over ``batch``, with rounding."""
    model.eval()
    with torch.no_grad():
        out = model(batch[:, 0], lmbda)
        refs = References([to_reference(out.x_hat)])
        outputs = [out]
        for t in range(1, batch.shape[1]):
            out = model(batch[:, t], lmbda, refs)
            refs = refs.push(to_reference(out.x_hat), out.flow_hat)
            outputs.append(out)
    model.train()
    return outputs


def _hyper_bits(model: VideoModel, batch: torch.Tensor, lmbda: float) -> float:
    """Bits of every hyper-latent of an IPPPP pass over ``batch``."""
    return sum(
        float(-torch.log2(lik).sum())
        for out in _ipppp_pass(model, batch, lmbda)
        for key, lik in out.likelihoods.items()
        if key.endswith(".hyper")
    )


def _coded_bits(model: VideoModel, batch: torch.Tensor, lmbda: float) -> float:
    """Bits of every latent of an IPPPP pass over ``batch``."""
    return sum(float(out.bits().sum()) for out in _ipppp_pass(model, batch, lmbda))


def _bits_by_coder(model: VideoModel, batch: torch.Tensor, lmbda: float) -> dict[str, float]:
    """Bits of an IPPPP pass over ``batch`` per coder ("intra", "motion", "inter")."""
    bits: dict[str, float] = {}
    for out in _ipppp_pass(model, batch, lmbda):
        for key, lik in out.likelihoods.items():
            coder = key.split(".")[0]
            bits[coder] = bits.get(coder, 0.0) + float(-torch.log2(lik).sum())
    return bits


def _fit(model: VideoModel, phase, batch: torch.Tensor, lmbda: float, optimizer, steps: int):
    """``steps`` optimiser steps of ``phase`` on the one ``batch``."""
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        phases.run_step(
            model, phase, batch, lmbda, np.random.default_rng(0), contextlib.nullcontext
        )
        optimizer.step()


def test_factorised_priors_train_in_every_phase() -> None:
    model = VideoModel(get_config("tiny"))
    density = {id(p) for p in phases.prior_density_parameters(model)}
    layers = len(FILTERS) + 1  # a matrix and a bias per layer, a factor between layers
    assert len(density) == len(model.coders()) * (3 * layers - 1)
    for phase in phases.PHASES.values():
        phases.set_trainable(model, phase.parts)
        scope = phases.entropy_scope(phase.parts)
        for name, param in model.named_parameters():
            if id(param) in density or name.endswith(phases.QUANTILES):
                fitted = scope is None or name.split(".")[0] in scope
                assert param.requires_grad == fitted, (phase.name, name)
            else:
                assert param.requires_grad == _trained_by(phase, name), (phase.name, name)


def _trained_by(phase: phases.Phase, name: str) -> bool:
    """Whether ``phase`` trains parameter ``name`` (factorised priors aside)."""
    coder, part = name.split(".")[:2]
    if part in phases.ENTROPY_PARTS and (
        phases.ENTROPY in phase.parts or phases.entropy_of(coder) in phase.parts
    ):
        return True
    return coder in phase.parts


def _distortion_gradient(model: VideoModel, batch: torch.Tensor, rounded: bool) -> float:
    """Size of the gradient that a P-frame's distortion alone gives the inter coder's
    hyper-synthesis (which predicts its latents' means)."""
    model.zero_grad(set_to_none=True)
    with phases.rounded_reconstructions(model, rounded):
        out = model(batch[:, 1], 1024.0, References([to_reference(batch[:, 0])]))
    losses.mse(out.x_hat, batch[:, 1]).backward()
    grads = [p.grad for p in model.inter.hyper_synthesis.parameters() if p.grad is not None]
    return float(sum(g.abs().sum() for g in grads))


def test_rounded_reconstructions_let_the_distortion_reach_the_means() -> None:
    torch.manual_seed(0)
    model = VideoModel(get_config("tiny")).train()
    batch = _data(seed=0).sequences(1, 2)
    # With noise the decoded latent ignores the means; rounded around them, it follows them.
    assert _distortion_gradient(model, batch, rounded=False) == 0.0
    assert _distortion_gradient(model, batch, rounded=True) > 0.0
    for name in ("entropy", "motion_entropy"):
        assert phases.get_phase(name).rounded, name


def test_motion_entropy_phase_lowers_the_motion_rate_and_changes_nothing_else() -> None:
    torch.manual_seed(0)
    model = VideoModel(get_config("tiny")).train()
    phase = phases.get_phase("motion_entropy")
    phases.set_trainable(model, phase.parts)
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert {name.split(".")[0] for name in trained} == set(phases.MOTION_CODERS)
    batch = _data(seed=0).sequences(2, phase.frames)
    lmbda = 1024.0
    fixed = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.Adam(trained.values(), lr=1e-3)
    before = _bits_by_coder(model, batch, lmbda)
    _fit(model, phase, batch, lmbda, optimizer, steps=20)
    after = _bits_by_coder(model, batch, lmbda)
    assert after["motion"] < 0.97 * before["motion"], (before, after)
    assert after["intra"] == before["intra"]
    assert not any(
        module.rounded_in_training for module in model.modules() if isinstance(module, TabledModel)
    )
    for name, param in model.named_parameters():
        if name in fixed:
            assert torch.equal(param, fixed[name]), name


def test_priors_phase_lowers_the_hyper_rate_and_changes_nothing_else() -> None:
    torch.manual_seed(0)
    model = VideoModel(get_config("tiny")).train()
    phase = phases.get_phase("priors")
    phases.set_trainable(model, phase.parts)
    batch = _data(seed=0).sequences(2, phase.frames)
    lmbda = 1024.0
    fixed = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.Adam(phases.prior_density_parameters(model), lr=1e-2)
    before = _hyper_bits(model, batch, lmbda)
    _fit(model, phase, batch, lmbda, optimizer, steps=30)
    after = _hyper_bits(model, batch, lmbda)
    assert after < 0.7 * before, (before, after)
    for name, param in model.named_parameters():
        if name in fixed:
            assert torch.equal(param, fixed[name]), name


def test_entropy_phase_lowers_the_rate_and_leaves_the_transforms() -> None:
    torch.manual_seed(0)
    model = VideoModel(get_config("tiny")).train()
    phase = phases.get_phase("entropy")
    phases.set_trainable(model, phase.parts)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert len(trained) > len(phases.prior_density_parameters(model))
    batch = _data(seed=0).sequences(2, phase.frames)
    lmbda = 1024.0
    fixed = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.Adam(trained, lr=1e-3)
    before = _coded_bits(model, batch, lmbda)
    _fit(model, phase, batch, lmbda, optimizer, steps=20)
    assert _coded_bits(model, batch, lmbda) < 0.97 * before
    for name, param in model.named_parameters():
        if name in fixed:
            assert torch.equal(param, fixed[name]), name
        else:
            assert name.split(".")[1] in (*phases.ENTROPY_PARTS, "hyper_prior"), name


def _options(tmp_path, **overrides) -> TrainOptions:
    values = dict(
        config="tiny",
        device="cpu",
        crop=CROP,
        batch=2,
        ckpt=tmp_path / "ckpt",
        resume=True,
        progress=False,
        use_stills=False,
    )
    values.update(overrides)
    return TrainOptions(**values)


# Weights of a resumed run after a step may differ from the uninterrupted run's in the last bits
# (measured: 3e-8; the two trainers' backward passes round differently), while a resume that
# lost the optimisers' moments moves them by 4e-4 in one step.
RESUMED_WEIGHTS_ATOL = 1e-6


def _optimizer_states(trainer: Trainer) -> list[dict]:
    return [copy.deepcopy(o.state_dict()) for o in (trainer.optimizer, trainer.aux_optimizer)]


def _assert_same_moments(saved: dict, restored: dict) -> None:
    """The per-parameter state (step count, moments) of two Adam state dicts, exactly."""
    assert saved["state"] and restored["state"].keys() == saved["state"].keys()
    for index, state in saved["state"].items():
        for key, value in state.items():
            assert torch.equal(restored["state"][index][key], value), (index, key)


def test_checkpoint_resumes_to_the_same_state(tmp_path) -> None:
    # Three steps of a 10-step plan: flow, then intra twice, which leaves Adam moments; the run
    # goes on with intra once more, then switches to ip_motion.
    first = Trainer(_options(tmp_path, steps=3, plan_steps=10), data=_data(seed=5))
    first.run()
    saved_phase = first.active.name
    saved_optimizers = _optimizer_states(first)
    expected = []
    for _ in range(2):
        result = first.step()
        weights = {name: t.clone() for name, t in first.model.state_dict().items()}
        expected.append((first.active.name, result, weights))

    # Resuming also restores the random generators, which the steps above moved on.
    resumed = Trainer(_options(tmp_path), data=_data(seed=99))  # sampler state comes from disk
    assert resumed.progress.step == 3 and resumed.progress.plan_steps == 10
    assert resumed.active is not None and resumed.active.name == saved_phase
    for saved, restored in zip(saved_optimizers, _optimizer_states(resumed), strict=True):
        _assert_same_moments(saved, restored)
    for phase, result, weights in expected:
        got = resumed.step()
        assert resumed.active.name == phase
        assert got.loss == result.loss and got.lmbda == result.lmbda
        # A step's loss is that of the weights before it; the weights after it depend on the
        # optimisers' moments too.
        for name, tensor in resumed.model.state_dict().items():
            assert torch.allclose(tensor, weights[name], rtol=0, atol=RESUMED_WEIGHTS_ATOL), name
    assert [phase for phase, _, _ in expected] == ["intra", "ip_motion"]
    folder = tmp_path / "ckpt"
    assert (folder / "log.csv").is_file() and (folder / "curves.png").is_file()


def test_export_then_load_decodes_the_same(tmp_path) -> None:
    from canfvc_codec.weights import load_model

    trainer = Trainer(_options(tmp_path, phase="intra", steps=2), data=_data(seed=2))
    trainer.run()
    path = tmp_path / "canfvc-tiny.pt"
    export_model(trainer, path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["steps"] == 2 and card["config"] == "tiny" and not card["untrained"]

    loaded, model_id = load_model(str(path))
    assert model_id.hex() == card["model_id"]
    assert card["lineage"] == []
    for name, tensor in trainer.model.state_dict().items():
        if tensor.is_floating_point():
            assert torch.allclose(loaded.state_dict()[name], tensor.half().float()), name
    # Encode I, P, P with the loaded file; a second load decodes exactly what the encoder kept.
    from canfvc_codec.codec import Decoder
    from canfvc_codec.encoder.gop import Encoder

    frames = real_rgb_frames("bikes.mp4", 40, 3, 64, 64)
    cpu = torch.device("cpu")
    encoder = Encoder(loaded, Rates.uniform(1024.0), IntraSchedule(32), 64, 64, cpu)
    coded = [encoder.encode(frame) for frame in frames]
    assert [kind for kind, _, _ in coded] == ["I", "P", "P"]
    decoder = Decoder(load_model(str(path))[0], Rates.uniform(1024.0), 64, 64, cpu)
    for kind, streams, recon in coded:
        assert torch.equal(decoder.decode(kind, streams), recon)


def test_snapshot_moves_a_run_in_small_files(tmp_path) -> None:
    snapshot = tmp_path / "snapshot"
    first = Trainer(_options(tmp_path, steps=2, plan_steps=4, snapshot=snapshot), data=_data())
    first.run()
    files = sorted(p.name for p in snapshot.iterdir())
    assert files == ["curves.png", "log.csv", "snapshot.pt", "weights-00.pt"]

    moved = Trainer(_options(tmp_path, ckpt=snapshot), data=_data(seed=7))
    assert moved.progress.step == 2 and moved.active.name == first.active.name
    for name, tensor in first.model.state_dict().items():
        if tensor.is_floating_point():
            assert torch.equal(moved.model.state_dict()[name], tensor.half().float()), name
    assert moved.data.state_dict() == first.data.state_dict()


TRAIN_WITHOUT_RANGE_CODER = """
import contextlib, importlib.abc, sys

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "constriction":
            raise ImportError(name)

sys.meta_path.insert(0, Absent())
import numpy as np
import torch
import canfvc_codec.train.__main__
from canfvc_codec.entropy.coder import RangeCoderMissing
from canfvc_codec.networks import References, VideoModel, get_config, to_reference
from canfvc_codec.lab.binary_intra import binary_intra_step
from canfvc_codec.quant.coder_adapter import BinaryLatentAdapter
from canfvc_codec.train import phases
from canfvc_codec.train.trainer import Trainer

torch.set_num_threads(1)
torch.manual_seed(0)
model = VideoModel(get_config("tiny"))
batch = torch.rand(1, 4, 3, 64, 64)
rng = np.random.default_rng(0)
phases.run_step(model, phases.get_phase("intra"), batch, 512.0, rng, contextlib.nullcontext)
adapter = BinaryLatentAdapter("dm2", model.intra.latent_channels)
binary_intra_step(model, adapter, batch, 512.0, contextlib.nullcontext)
assert "constriction" not in sys.modules
model.update()
model.eval()
try:
    model.compress_intra(batch[:, 0], 512.0)
except RangeCoderMissing as err:
    print("refused:", err)
"""


def test_training_imports_without_the_range_coder() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", TRAIN_WITHOUT_RANGE_CODER], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused: range coding needs the constriction package")


def test_stills_come_with_their_exact_flow() -> None:
    from canfvc_codec.nn.layers import backward_warp

    frames, flows, known = _data(seed=4).flow_pairs(6, still_fraction=1.0)
    assert known.all() and flows.shape == (6, 2, CROP, CROP)
    warped = backward_warp(frames[:, 0], flows)
    inner = (..., slice(6, -6), slice(6, -6))  # away from the borders the warp cannot fill
    error = losses.mse(warped[inner], frames[:, 1][inner])
    assert error < 0.25 * losses.mse(frames[:, 0][inner], frames[:, 1][inner])
    assert losses.psnr(error) > 28


def test_a_forced_phase_does_not_move_the_schedule(tmp_path) -> None:
    trainer = Trainer(_options(tmp_path, phase="flow", steps=2, plan_steps=4), data=_data())
    trainer.run()
    assert trainer.progress.step == 2 and trainer.progress.phase_steps == {"flow": 2}
    resumed = Trainer(_options(tmp_path, steps=1), data=_data())
    resumed.run()
    assert resumed.progress.phase_steps == {"flow": 3}  # the schedule starts at its beginning


def test_a_run_from_exported_weights_carries_their_training(tmp_path) -> None:
    first = Trainer(_options(tmp_path / "a", phase="intra", steps=2), data=_data(seed=2))
    first.run()
    parent = tmp_path / "canfvc-tiny.pt"
    parent_id = export_model(first, parent)
    second = Trainer(
        _options(tmp_path / "b", phase="priors", steps=1, init_weights=parent), data=_data()
    )
    second.run()
    child = tmp_path / "child" / "canfvc-tiny.pt"
    export_model(second, child)
    card = json.loads(child.with_suffix(".json").read_text())
    assert card["steps"] == 1
    assert [p["name"] for p in card["phases"] if p["steps"]] == ["priors"]
    (origin,) = card["lineage"]
    assert origin["model_id"] == parent_id and origin["steps"] == 2
    assert origin["phase_steps"] == {"intra": 2}


def test_a_resumed_run_keeps_its_motion_search(tmp_path) -> None:
    first = Trainer(_options(tmp_path, phase="flow", steps=1, motion_search="spynet"), data=_data())
    assert first.flow_estimator is None  # SPyNet: the model's own network
    first.run()
    resumed = Trainer(_options(tmp_path), data=_data())
    assert resumed.motion_search == "spynet" and resumed.flow_estimator is None
    switched = Trainer(_options(tmp_path, motion_search="dis"), data=_data())
    assert switched.motion_search == "dis" and callable(switched.flow_estimator)
    new = Trainer(_options(tmp_path / "other"), data=_data())
    assert new.motion_search == "dis"  # canfvc_codec.encoder.motion's default


def _lambdas_of_one_step(
    name: str,
    method: str,
    lambda_at: int,
    lmbda: float,
    monkeypatch: pytest.MonkeyPatch,
    data: TrainingData | None = None,
) -> tuple[VideoModel, list[float]]:
    """(model, the λ each call of the model's ``method`` got) over one step of phase ``name`` at
    ``lmbda`` on ``data`` (default: :func:`_data`); λ is the method's positional argument
    ``lambda_at`` after the input."""
    torch.manual_seed(0)
    model = VideoModel(get_config("tiny")).train()
    phase = phases.get_phase(name)
    phases.set_trainable(model, phase.parts)
    batch = (data or _data(seed=0)).sequences(1, phase.frames)
    coded_at: list[float] = []
    original = getattr(model, method)

    def recording(x, *args, **kwargs):
        coded_at.append(float(args[lambda_at]))
        return original(x, *args, **kwargs)

    monkeypatch.setattr(model, method, recording)
    phases.run_step(model, phase, batch, lmbda, np.random.default_rng(0), contextlib.nullcontext)
    return model, coded_at


@pytest.mark.parametrize("name", ["ip_motion", "ip_joint", "ipppp"])
def test_p_frames_train_their_motion_at_the_encoders_motion_lambda(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lmbda = 2048.0
    model, coded_at = _lambdas_of_one_step(name, "forward_motion", 1, lmbda, monkeypatch)
    expected = auto_motion_lambda(lmbda, model.config.anchor_lambdas)
    assert coded_at and expected < lmbda
    assert coded_at == [expected] * len(coded_at)


@pytest.mark.parametrize("name", ["ipppp", "finetune"])
def test_sequences_code_their_i_frame_at_the_encoders_intra_lambda(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lmbda = 512.0
    model, coded_at = _lambdas_of_one_step(name, "forward", 0, lmbda, monkeypatch)
    expected = auto_intra_lambda(lmbda, model.config.anchor_lambdas)
    assert expected > lmbda and coded_at == [expected]


def test_a_learning_rate_factor_scales_every_phase_and_the_card_counts_its_steps(
    tmp_path,
) -> None:
    first = Trainer(_options(tmp_path, phase="intra", steps=2), data=_data(seed=2))
    first.run()
    intra = phases.get_phase("intra")
    assert [g["lr"] for g in first.optimizer.param_groups][0] == pytest.approx(intra.lr)
    settled = Trainer(_options(tmp_path, phase="intra", steps=3, lr_factor=0.1), data=_data())
    assert settled.progress.step == 2  # resumed, Adam's moments included
    settled.run()
    main, density = settled.optimizer.param_groups
    assert main["lr"] == pytest.approx(0.1 * intra.lr)
    assert density["lr"] == pytest.approx(0.1 * intra.lr * density["lr_scale"])
    assert settled.progress.phase_steps == {"intra": 5}
    assert settled.progress.factor_steps == {"intra": {"0.1": 3}}
    card = model_card(settled)
    (entry,) = [p for p in card["phases"] if p["name"] == "intra"]
    assert entry["steps"] == 5 and entry["steps_at_lr_factor"] == {"0.1": 3}
    assert all("steps_at_lr_factor" not in p for p in card["phases"] if p["name"] != "intra")


@pytest.mark.parametrize("diverged_mse", [0.1, float("inf")])
def test_a_diverging_run_goes_back_to_its_healthy_state_at_half_the_rate(
    tmp_path, monkeypatch: pytest.MonkeyPatch, diverged_mse: float
) -> None:
    """Log windows at 30 dB, then at 10 dB or with no PSNR at all: the run goes back to where it
    started (its only healthy state: no checkpoint fell due), halves the learning rate and says
    so in the card."""
    from canfvc_codec.train import divergence
    from canfvc_codec.train import trainer as trainer_module

    calls = []

    def fake_step(model, phase, batch, lmbda, *args, **kwargs) -> phases.StepResult:
        calls.append(lmbda)
        mse = 1e-3 if len(calls) <= healthy_steps else diverged_mse
        return phases.StepResult(1.0, 0.1, mse, lmbda)

    window = trainer_module.LOG_EVERY_STEPS
    healthy_steps = window * divergence.MIN_HISTORY + window
    steps = healthy_steps + window * divergence.CONSECUTIVE
    monkeypatch.setattr(phases, "run_step", fake_step)
    trainer = Trainer(
        _options(tmp_path, phase="intra", steps=steps, checkpoint_minutes=1e6), data=_data()
    )
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    assert len(calls) == steps
    assert trainer.progress.recoveries == [
        {"diverged_at": steps, "back_to": 0, "lr_factor": divergence.RECOVERY_LR_FACTOR}
    ]
    assert trainer.progress.step == 0 and trainer.progress.seconds > 0
    intra = phases.get_phase("intra")
    lr = trainer.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(intra.lr * divergence.RECOVERY_LR_FACTOR)
    # The auxiliary optimiser had moved the quantiles; going back restored them too.
    assert all(torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())
    assert model_card(trainer)["recoveries"] == trainer.progress.recoveries


def test_chains_start_from_i_frames_of_any_quality_up_to_the_encoders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The chain phase codes its I-frame at a λ drawn between the lowest trained λ and the
    encoder's intra λ, so that its P-frames also learn to restore a poor reference; a run of the
    phase needs sequences of its own length."""
    lmbda = 512.0
    chain = phases.get_phase("chain")
    assert chain.frames == phases.CHAIN_FRAMES > phases.get_phase("finetune").frames
    assert longest_sequence("chain") == chain.frames and longest_sequence(None) < chain.frames
    frames = real_rgb_frames("bikes.mp4", 0, chain.frames, 128, 128)
    array = (frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    long_clip = TrainingData([VideoSource("bikes.mp4", array, scene_cuts(array))], [], CROP)
    model, coded_at = _lambdas_of_one_step(
        "chain", "forward", 0, lmbda, monkeypatch, data=long_clip
    )
    anchors = model.config.anchor_lambdas
    high = auto_intra_lambda(lmbda, anchors)
    (first,) = coded_at
    drawn = [
        phases.degraded_intra_lambda(model, lmbda, np.random.default_rng(s)) for s in range(64)
    ]
    assert all(anchors[0] <= value <= high for value in [first, *drawn])
    assert min(drawn) < 1.2 * anchors[0] and max(drawn) > 0.8 * high  # the whole range
