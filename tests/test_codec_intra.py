"""Frame types: the intra period, and the encoder's rate-distortion choice of I over P."""

from __future__ import annotations

import io
import itertools

import pytest
import torch

from canfvc_codec.bitstream import INTER, INTRA, CvcReader
from canfvc_codec.codec import decode_video, encode_video
from canfvc_codec.encoder.gop import Encoder, EncoderTools, frame_cost
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.refine import LatentRefiner
from canfvc_codec.encoder.schedule import FRAME_CHOICE, RUN_CHOICE, IntraSchedule
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer
from canfvc_codec.rates import Rates
from canfvc_codec.weights import load_model
from tests.conftest import real_rgb_frames, real_yuv_frames

CPU = torch.device("cpu")


TRIAL = "trial I"


def _types(
    schedule: IntraSchedule, frames: int, chosen_intra: tuple[int, ...] = (), trial: bool = False
) -> tuple[str, int]:
    """The types ``schedule.choose`` gives, with a cost that prefers I at ``chosen_intra`` and P
    elsewhere; and how many intra codings it ran (trial codings with ``trial``, not counted)."""
    types, intra_runs = "", 0
    for index in range(frames):

        def code_intra() -> str:
            nonlocal intra_runs
            intra_runs += 1
            return INTRA

        def cost(frame_type: str, index=index) -> float:
            return float((frame_type != INTER) != (index in chosen_intra))

        trial_intra = (lambda: TRIAL) if trial else None
        frame_type, coded = schedule.choose(code_intra, lambda: INTER, cost, trial_intra)
        assert coded == frame_type  # a trial coding is never what is kept
        types += frame_type
    return types, intra_runs


def test_schedule_is_an_intra_period_restarted_by_every_i_frame() -> None:
    assert _types(IntraSchedule(3), 7) == ("IPPIPPI", 3)
    assert _types(IntraSchedule(0), 5) == ("IPPPP", 1)
    assert _types(IntraSchedule(1), 3) == ("III", 3)
    # Fixed types ignore the cost: the preference for I at frame 2 changes nothing.
    assert _types(IntraSchedule(3), 7, chosen_intra=(2,)) == ("IPPIPPI", 3)
    # Adaptive: every P-frame is also coded as I, and a chosen I restarts the period.
    assert _types(IntraSchedule(3, adaptive=True), 7, chosen_intra=(2,)) == ("IPIPPIP", 7)
    assert _types(IntraSchedule(0, adaptive=True), 5, chosen_intra=(3,)) == ("IPPIP", 5)
    # With a trial coding to price the candidates, the intra coder runs only for the I-frames.
    schedule = IntraSchedule(3, adaptive=True)
    assert _types(schedule, 7, chosen_intra=(2,), trial=True) == ("IPIPPIP", 3)


def _drifting_run(choice: str, intra_cost: float, drift: float, frames: int) -> tuple[str, int]:
    """The types ``choice`` gives where an I-frame costs ``intra_cost`` and the k-th P-frame after
    it ``k * drift`` (quality drifting down a run of P-frames); and how many trial I-frames it
    coded (the candidates priced, kept or not)."""
    schedule = IntraSchedule(0, adaptive=True, choice=choice)
    types, age, trials = "", 0, 0

    def trial_intra() -> str:
        nonlocal trials
        trials += 1
        return INTRA

    for _ in range(frames):
        frame_type, _ = schedule.choose(
            lambda: INTRA,
            lambda: INTER,
            lambda coded, age=age: intra_cost if coded == INTRA else (age + 1) * drift,
            trial_intra,
        )
        age = 0 if frame_type == INTRA else age + 1
        types += frame_type
    return types, trials


def test_run_choice_ends_each_run_at_the_lowest_cost_per_frame() -> None:
    for intra_cost, drift in ((4.0, 1.0), (9.0, 1.0), (3.0, 0.1), (1.0, 2.0)):
        types, _ = _drifting_run(RUN_CHOICE, intra_cost, drift, 60)
        runs = [len("I" + run) for run in types[1:].split("I")][:-1]  # the complete runs
        # The run length whose mean cost per frame, (I + sum of its P-frames) / n, is lowest.
        best = min(range(1, 60), key=lambda n: (intra_cost + drift * n * (n - 1) / 2) / n)
        assert runs and set(runs) == {best}, (intra_cost, drift, types)


def test_frame_choice_keeps_p_frames_until_one_costs_more_than_intra() -> None:
    types, trials = _drifting_run(FRAME_CHOICE, 4.0, 1.0, 12)
    assert types == "IPPPPIPPPPIP"  # I where the fifth P-frame (5) would cost more than I (4)
    assert trials == 11  # every P-frame's candidate I-frame is priced
    types, trials = _drifting_run(RUN_CHOICE, 4.0, 1.0, 12)
    assert types == "IPPIPPIPPIPP"  # mean cost per frame 7/3 instead of 14/5
    # Only the 8 P-frames kept were priced against a candidate I-frame: where the run's mean
    # decides (frames 3, 6, 9), none is coded.
    assert trials == 8


def test_an_unknown_intra_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="intra choice 'gop'"):
        IntraSchedule(0, adaptive=True, choice="gop")


def test_frame_cost_is_bits_per_pixel_plus_lambda_mse_over_the_picture() -> None:
    x = torch.zeros(1, 3, 64, 64)
    x_hat = torch.full_like(x, 0.1)
    x_hat[..., 4:, :] = 1.0  # padding: not part of the 4x5 picture
    level = round(0.1 * 255) / 255  # the decoder keeps 8-bit levels
    expected = 40 / 20 + 100 * level**2
    assert frame_cost(40.0, x, x_hat, 100.0, (4, 5)) == pytest.approx(expected)


def _write_clip(path, count: int) -> None:
    info = VideoInfo(64, 64, 25, 1, 8, "bt709", False, count)
    with open_writer(str(path), info) as writer:
        for y, u, v in real_yuv_frames("bikes.mp4", 0, count, 64, 64):
            writer.write(Frame(y, u, v))


def test_chosen_i_frames_restart_the_period_and_decode_bit_exactly(tmp_path, monkeypatch):
    """Whatever the encoder chooses, the decoder follows the frame types in the stream."""

    calls = itertools.count()
    choose = IntraSchedule.choose

    def prefer_intra_at_frame_2(self, code_intra, code_inter, cost, trial_intra=None):
        index = next(calls)
        intra = []
        # encode_video codes in float64 and prices candidate I-frames on its float32 copy.
        assert trial_intra is not None
        assert self.adaptive and self.choice == FRAME_CHOICE  # as the options below ask

        def recorded(code):
            def run():
                intra.append(code())
                return intra[-1]

            return run

        def preference(coded) -> float:
            return float(any(coded is i for i in intra) != (index == 2))

        trial = None if trial_intra is None else recorded(trial_intra)
        return choose(self, recorded(code_intra), code_inter, preference, trial)

    monkeypatch.setattr(IntraSchedule, "choose", prefer_intra_at_frame_2)
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 6)
    options = EncodeOptions(gop=3, intra_choice=FRAME_CHOICE, model="random-tiny", device="cpu")
    sink = io.BytesIO()
    with open_reader(str(clip)) as reader, open_writer(str(tmp_path / "r.yuv"), reader.info) as rec:
        summary = encode_video(reader, sink, options, recon=rec, progress=False)
    types = "".join(f["type"] for f in summary["per_frame"])
    assert types == "IPIPPI" and summary["i_frames"] == 3
    assert "".join(r.frame_type for r in CvcReader(io.BytesIO(sink.getvalue()))) == types
    decode_video(
        io.BytesIO(sink.getvalue()),
        lambda info: open_writer(str(tmp_path / "d.yuv"), info),
        device="cpu",
        progress=False,
    )
    assert (tmp_path / "d.yuv").read_bytes() == (tmp_path / "r.yuv").read_bytes()


def _encode_frames(model, frames: torch.Tensor, lmbda: float, adaptive: bool, trial=None):
    schedule = IntraSchedule(0, adaptive=adaptive)
    tools = EncoderTools(trial_model=trial)
    encoder = Encoder(model, Rates.uniform(lmbda), schedule, 128, 128, CPU, tools=tools)
    types, cost, streams = "", 0.0, []
    for frame in frames:
        frame_type, coded, recon = encoder.encode(frame)
        types += frame_type
        streams.append(coded)
        cost += frame_cost(8 * sum(map(len, coded)), frame.double(), recon, lmbda, (128, 128))
    return types, cost, streams


def test_trained_model_codes_a_scene_cut_as_intra_and_the_scene_as_inter():
    """The shipped model, a cut from bikes to bigbuckbunny: the encoder keeps P-frames within a
    scene and codes the cut as an I-frame, and the stream costs less than with P at the cut."""
    model, _ = load_model("lite")
    cut = torch.cat(
        [
            real_rgb_frames("bikes.mp4", 100, 1, 128, 128),
            real_rgb_frames("bigbuckbunny.mp4", 40, 2, 128, 128),
        ]
    )
    lmbda = 256.0
    trial = LatentRefiner(model, 0).model  # float32, as encode_video prices candidate I-frames
    adaptive_types, adaptive_cost, adaptive_streams = _encode_frames(model, cut, lmbda, True)
    fixed_types, fixed_cost, _ = _encode_frames(model, cut, lmbda, adaptive=False)
    assert fixed_types == "IPP"
    assert adaptive_types == "IIP"
    assert adaptive_cost < fixed_cost
    # Priced in float32, the choice is the same, and the kept frames are coded in float64.
    trial_types, trial_cost, trial_streams = _encode_frames(model, cut, lmbda, True, trial)
    assert trial_types == "IIP" and trial_streams == adaptive_streams
    assert trial_cost == adaptive_cost
