"""Frame types: the intra period, and the encoder's rate-distortion choice of I over P."""

from __future__ import annotations

import io

import pytest
import torch

from canfvc_codec.bitstream import CvcReader
from canfvc_codec.codec import (
    INTER,
    INTRA,
    EncodeOptions,
    Encoder,
    IntraSchedule,
    decode_video,
    encode_video,
    rd_cost,
)
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer
from canfvc_codec.weights import load_model
from tests.conftest import real_rgb_frames, real_yuv_frames

CPU = torch.device("cpu")


def _types(schedule: IntraSchedule, frames: int, chosen_intra: tuple[int, ...] = ()) -> str:
    types = ""
    for index in range(frames):
        frame_type = INTRA if schedule.intra_due() or index in chosen_intra else INTER
        schedule.coded(frame_type)
        types += frame_type
    return types


def test_schedule_is_an_intra_period_restarted_by_every_i_frame() -> None:
    assert _types(IntraSchedule(3), 7) == "IPPIPPI"
    assert _types(IntraSchedule(3), 7, chosen_intra=(2,)) == "IPIPPIP"
    assert _types(IntraSchedule(0), 5) == "IPPPP"
    assert _types(IntraSchedule(0), 5, chosen_intra=(3,)) == "IPPIP"
    assert _types(IntraSchedule(1), 3) == "III"


def test_rd_cost_is_bits_per_pixel_plus_lambda_mse() -> None:
    x = torch.zeros(1, 3, 4, 5)
    x_hat = torch.full_like(x, 0.1)
    assert rd_cost(40.0, x, x_hat, 100.0) == pytest.approx(40 / 20 + 100 * 0.01)


def _write_clip(path, count: int) -> None:
    info = VideoInfo(64, 64, 25, 1, 8, "bt709", False, count)
    with open_writer(str(path), info) as writer:
        for y, u, v in real_yuv_frames("bikes.mp4", 0, count, 64, 64):
            writer.write(Frame(y, u, v))


def test_chosen_i_frames_restart_the_period_and_decode_bit_exactly(tmp_path, monkeypatch):
    """Whatever the encoder chooses, the decoder follows the frame types in the stream."""

    def prefer_intra_at_frame_2(self, coded, x) -> float:
        wanted = INTRA if self.index == 2 else INTER
        return 0.0 if coded.frame_type == wanted else 1.0

    monkeypatch.setattr(Encoder, "_cost", prefer_intra_at_frame_2)
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 6)
    options = EncodeOptions(gop=3, model="random-tiny", device="cpu")
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


def _encode_frames(model, frames: torch.Tensor, lmbda: float, adaptive: bool):
    encoder = Encoder(model, lmbda, 0, 128, 128, CPU, adaptive_intra=adaptive)
    types, cost = "", 0.0
    for frame in frames:
        frame_type, streams, recon = encoder.encode(frame)
        types += frame_type
        cost += rd_cost(8 * sum(map(len, streams)), frame.double(), recon, lmbda)
    return types, cost


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
    adaptive_types, adaptive_cost = _encode_frames(model, cut, lmbda, adaptive=True)
    fixed_types, fixed_cost = _encode_frames(model, cut, lmbda, adaptive=False)
    assert fixed_types == "IPP"
    assert adaptive_types == "IIP"
    assert adaptive_cost < fixed_cost
