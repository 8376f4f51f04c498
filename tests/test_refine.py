"""Encoder-side latent refinement: the encoder optimises what it codes; the decoder is unchanged."""

from __future__ import annotations

import io

import pytest
import torch

from canfvc_codec.bitstream import CvcReader
from canfvc_codec.codec import encode_video
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.refine import REFINE_STEP_SIZE, LatentRefiner, refine_latents
from canfvc_codec.errors import UsageError
from canfvc_codec.io import open_reader
from canfvc_codec.networks.anf_coder import Latents
from canfvc_codec.weights import load_model
from tests.test_codec import LAMBDA, MODEL, _decode, _write_clip

SIZE = 64
STEPS = 6


@pytest.fixture(scope="module")
def trained():
    """The shipped model: an untrained one's latents all round to zero, whatever the step."""
    model, _ = load_model("lite")
    return model.eval().requires_grad_(False)


def test_relaxed_decode_is_what_compress_codes(trained, rgb_frames) -> None:
    x = rgb_frames(start=40, count=1, width=SIZE, height=SIZE).double()
    model = trained.double()
    try:
        latents = model.intra.latents(x, LAMBDA)
        streams, x_hat = model.intra.compress(x, LAMBDA)
        bits, relaxed = model.intra.relaxed_decode(latents, LAMBDA)
        coded_bits = 8 * sum(len(stream) for stream in streams)
    finally:
        model.float()
    assert torch.allclose(relaxed, x_hat, atol=1e-9)
    # The estimate prices the exact density; the range coder its 64 tables and whole bytes.
    assert abs(float(bits) - coded_bits) < 0.1 * coded_bits + 64


def test_refinement_lowers_the_cost_and_keeps_the_best(trained, rgb_frames) -> None:
    model = trained
    x = rgb_frames(start=50, count=1, width=SIZE, height=SIZE)
    latents, costs = refine_latents(model.intra, x, LAMBDA, STEPS)
    assert len(costs) == STEPS + 1
    assert min(costs[1:]) < costs[0]  # gradient steps find cheaper latents than the analysis
    bits, x_hat = model.intra.relaxed_decode(latents, LAMBDA)
    kept = float(bits.sum()) / SIZE**2 + LAMBDA * float(torch.mean((x_hat - x) ** 2))
    assert kept == pytest.approx(min(costs), rel=1e-5)
    with pytest.raises(UsageError, match="--refine"):
        LatentRefiner(model, -1)


def test_the_step_size_falls_to_zero_over_the_steps(trained, rgb_frames, monkeypatch) -> None:
    """A constant step size undoes its gains after a few steps (docs/encoder.md)."""
    sizes: list[float] = []
    adam_step = torch.optim.Adam.step

    def recorded_step(self, *args, **kwargs):
        sizes.append(self.param_groups[0]["lr"])
        return adam_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recorded_step)
    x = rgb_frames(start=50, count=1, width=SIZE, height=SIZE)
    refine_latents(trained.intra, x, LAMBDA, STEPS)
    assert len(sizes) == STEPS
    assert sizes[0] == pytest.approx(REFINE_STEP_SIZE)
    assert sizes[-1] == pytest.approx(REFINE_STEP_SIZE / STEPS)
    assert all(later < earlier for earlier, later in zip(sizes, sizes[1:], strict=False))


def test_without_steps_the_latents_are_the_float32_analysis(trained, rgb_frames) -> None:
    x = rgb_frames(start=60, count=1, width=SIZE, height=SIZE)
    latents = LatentRefiner(trained, 0).frame("intra", x.double(), LAMBDA)
    analysis = trained.intra.latents(x, LAMBDA)
    assert latents.latent.dtype == torch.float32
    assert torch.equal(latents.latent, analysis.latent)
    assert torch.equal(latents.hyper, analysis.hyper)


def test_inter_steps_refine_only_the_p_frame_coders(trained, rgb_frames) -> None:
    x = rgb_frames(start=50, count=1, width=SIZE, height=SIZE)
    flow = torch.full((1, 2, SIZE, SIZE), 0.7)
    analysis = trained.motion_first.latents(flow, LAMBDA)
    intra_only = LatentRefiner(trained, STEPS, inter_steps=0)
    assert intra_only.steps == {"intra": STEPS, "motion_first": 0, "motion": 0, "inter": 0}
    motion = intra_only.motion("motion_first", flow, LAMBDA, x, x)
    assert torch.equal(motion.latent, analysis.latent)
    refined, _ = refine_latents(trained.intra, x, LAMBDA, STEPS)
    assert torch.equal(intra_only.frame("intra", x, LAMBDA).latent, refined.latent)
    assert set(LatentRefiner(trained, 2).steps.values()) == {2}
    assert LatentRefiner(trained, 0, inter_steps=3).steps["inter"] == 3
    with pytest.raises(UsageError, match="--refine-inter"):
        LatentRefiner(trained, 2, inter_steps=-1)


def test_motion_refinement_scores_the_prediction(trained, rgb_frames) -> None:
    model = trained
    reference, x = rgb_frames(start=30, count=2, width=SIZE, height=SIZE).split(1)
    flow = torch.full((1, 2, SIZE, SIZE), 0.7)
    refiner = LatentRefiner(model, STEPS)
    latents = refiner.motion("motion_first", flow, LAMBDA, reference, x)
    assert isinstance(latents, Latents) and latents.latent.dtype == torch.float32

    def cost(chosen: Latents) -> float:
        bits, flow_hat = model.motion_first.relaxed_decode(chosen, LAMBDA)
        error = model.mc(reference, flow_hat) - x
        return float(bits.sum()) / SIZE**2 + LAMBDA * float(torch.mean(error**2))

    assert cost(latents) < cost(model.motion_first.latents(flow, LAMBDA))


def test_refined_streams_decode_with_the_plain_decoder(tmp_path) -> None:
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 96, 64, 3, start=120)
    encoded = {}
    for steps, inter_steps in ((0, None), (3, None), (3, 0)):
        options = EncodeOptions(
            lmbda=LAMBDA,
            gop=0,
            adaptive_intra=False,
            refine=steps,
            refine_inter=inter_steps,
            model="lite",
        )
        sink = io.BytesIO()
        with open_reader(str(clip)) as reader:
            encode_video(reader, sink, options, progress=False)
        encoded[steps, inter_steps] = sink.getvalue()
    plain, refined, intra_only = (
        [r.streams for r in CvcReader(io.BytesIO(data))] for data in encoded.values()
    )
    assert len(refined) == 3 and any(a != b for a, b in zip(plain, refined, strict=True))
    # Only the I-frame refined: its streams are the fully refined ones, the P-frames' are not.
    assert intra_only[0] == refined[0] != plain[0]
    assert intra_only[1:] != refined[1:]
    for data in (encoded[3, None], encoded[3, 0]):
        decoded = _decode(tmp_path, data)  # every frame's CRC is checked against the encoder's
        assert decoded["frames"] == 3
    with open_reader(str(clip)) as reader, pytest.raises(UsageError, match="--refine"):
        encode_video(reader, io.BytesIO(), EncodeOptions(refine=-2, model=MODEL), progress=False)
    with open_reader(str(clip)) as reader, pytest.raises(UsageError, match="--refine-inter"):
        options = EncodeOptions(refine_inter=-1, model=MODEL)
        encode_video(reader, io.BytesIO(), options, progress=False)
