"""The GOP loop end to end: real frames -> .cvc -> frames, bit-identical to the encoder's recon."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from canfvc_codec.bitstream import CvcReader, CvcWriter, FrameRecord
from canfvc_codec.codec import Decoder, decode_video, encode_video, frame_crc
from canfvc_codec.defaults import DEFAULT_MODEL, INTRA_LAMBDA_FACTOR
from canfvc_codec.device import resolve_device, set_cpu_threads
from canfvc_codec.encoder.gop import Encoder
from canfvc_codec.encoder.options import EncodeOptions, check_options, warn_untrained_lambdas
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.errors import BitstreamError, UsageError
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer
from canfvc_codec.networks.video import pad_to_multiple
from canfvc_codec.rates import MOTION_LAMBDA_SHARE, Rates, auto_intra_lambda, auto_motion_lambda
from canfvc_codec.weights import random_model
from tests.conftest import real_rgb_frames, real_yuv_frames, rewritten_header

MODEL = "random-tiny"
LAMBDA = 700.0
# PSNR-RGB (dB) that a trained model beats on every 64x64 frame at λ 2048, and that random
# weights stay below.
TRAINED_HIGH_RATE_PSNR = 30.0
RANDOM_PSNR_AT_MOST = 15.0


def _write_clip(path: Path, width: int, height: int, count: int, start: int = 0) -> VideoInfo:
    info = VideoInfo(width, height, 25, 1, 8, "bt709", False, count)
    with open_writer(str(path), info) as writer:
        for y, u, v in real_yuv_frames("bikes.mp4", start, count, width, height):
            writer.write(Frame(y, u, v))
    return info


def _encode(
    tmp_path: Path,
    clip: Path,
    gop: int,
    lmbda: float = LAMBDA,
    motion_search: str = "dis",
    motion_lmbda: float | None = None,
    model: str = MODEL,
    intra_lmbda: float | None = None,
) -> tuple[bytes, dict]:
    # Frame types as the GOP puts them (tests/test_codec_intra.py covers the adaptive choice).
    options = EncodeOptions(
        lmbda=lmbda,
        motion_lmbda=motion_lmbda,
        intra_lmbda=intra_lmbda,
        gop=gop,
        adaptive_intra=False,
        motion_search=motion_search,
        model=model,
        device="cpu",
    )
    sink = io.BytesIO()
    with open_reader(str(clip)) as reader:
        with open_writer(str(tmp_path / "recon.yuv"), reader.info) as recon:
            summary = encode_video(reader, sink, options, recon=recon, progress=False)
    return sink.getvalue(), summary


def _decode(tmp_path: Path, data: bytes, **kwargs) -> dict:
    target = tmp_path / "decoded.yuv"
    return decode_video(
        io.BytesIO(data),
        lambda info: open_writer(str(target), info, overwrite=True),
        device="cpu",
        progress=False,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("width", "height", "count", "gop", "types", "motion_search", "model"),
    [
        (176, 144, 3, 0, "IPP", "dis", MODEL),  # I, first P, later P; never intra again
        (96, 74, 5, 4, "IPPPI", "spynet", MODEL),  # GOP 4, a size no multiple of 64 or 16
        (96, 74, 5, 4, "IPPPI", "dis", "random-tiny-small"),  # the compact networks
    ],
)
def test_decode_is_bit_identical_to_recon(
    tmp_path, width, height, count, gop, types, motion_search, model
):
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, width, height, count)
    data, summary = _encode(tmp_path, clip, gop, motion_search=motion_search, model=model)
    assert "".join(f["type"] for f in summary["per_frame"]) == types
    assert [r.frame_type for r in CvcReader(io.BytesIO(data))] == list(types)
    assert summary["frames"] == count and summary["bpp"] > 0
    # The clip runs at 25 frames per second: the bitrate is the stream's bits over its duration.
    assert summary["kbps"] == pytest.approx(len(data) * 8 / 1000 / (count / 25))
    assert summary["bpp"] == pytest.approx(len(data) * 8 / (width * height * count))
    decoded = _decode(tmp_path, data)
    assert decoded["frames"] == count and decoded["fps"] > 0 and summary["fps"] > 0
    recon = (tmp_path / "recon.yuv").read_bytes()
    assert len(recon) == count * width * height * 3 // 2
    assert (tmp_path / "decoded.yuv").read_bytes() == recon


@pytest.mark.parametrize(
    ("start", "frames", "written", "lead_in"),
    [
        (3, 2, [3, 4], 1),  # from the I-frame at 2: frame 2 decoded, not written
        (4, None, [4, 5], 0),  # an I-frame: nothing before it is decoded
        (1, 1, [1], 1),
        (0, 2, [0, 1], 0),
    ],
)
def test_decode_a_range_starts_at_the_last_i_frame(tmp_path, start, frames, written, lead_in):
    """Types I P I P I P: a range decodes from the I-frame at or before its start, its frames
    equal the whole decode's, and nothing past it is written."""
    width, height, count = 64, 64, 6
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, width, height, count)
    data, summary = _encode(tmp_path, clip, gop=2)
    assert "".join(f["type"] for f in summary["per_frame"]) == "IPIPIP"
    frame_bytes = width * height * 3 // 2
    recon = (tmp_path / "recon.yuv").read_bytes()
    decoded = _decode(tmp_path, data, start=start, frames=frames)
    assert decoded["frames"] == len(written) and decoded["lead_in_frames"] == lead_in
    expected = b"".join(recon[k * frame_bytes : (k + 1) * frame_bytes] for k in written)
    assert (tmp_path / "decoded.yuv").read_bytes() == expected


@pytest.mark.parametrize("frame_count", [2, 0])  # 0: written to a pipe, length unknown
def test_decode_refuses_a_start_past_the_end(tmp_path, frame_count):
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 64, 64, 2)
    data, _ = _encode(tmp_path, clip, gop=0)
    if not frame_count:
        data = rewritten_header(data, frame_count=0)
    with pytest.raises(UsageError, match="--start 2 is past the end \\(2 frames\\)"):
        _decode(tmp_path, data, start=2)
    assert not (tmp_path / "decoded.yuv").exists()


def test_auto_motion_lambda_is_a_share_of_lambda_within_the_trained_range():
    anchors = (256.0, 512.0, 1024.0, 2048.0)
    assert auto_motion_lambda(2048.0, anchors) == 2048.0 * MOTION_LAMBDA_SHARE
    assert auto_motion_lambda(512.0, anchors) == 256.0  # not below the lowest anchor
    assert auto_motion_lambda(100.0, anchors) == 100.0  # nor above λ
    assert auto_motion_lambda(2048.0, anchors, share=1.0) == 2048.0


@pytest.mark.parametrize(
    ("lmbda", "motion_lmbda", "warned"),
    [
        (1024.0, None, []),
        (256.0, 2048.0, []),
        (
            5000.0,
            None,
            [
                "--lambda 5000 is outside the model's trained range 256..2048: "
                "its latents are quantised as at 2048"
            ],
        ),
        (
            100.0,
            None,
            [
                "--lambda 100 is outside the model's trained range 256..2048: "
                "its latents are quantised as at 256"
            ],
        ),
        (1024.0, 64.0, ["--motion-lambda 64 is outside"]),
    ],
)
def test_a_lambda_outside_the_trained_range_is_warned_about(capsys, lmbda, motion_lmbda, warned):
    """The gains clamp λ to the anchors, so a λ past them is said to code as the nearest one;
    the automatic motion λ, which the user did not set, is not warned about."""
    options = EncodeOptions(lmbda=lmbda, motion_lmbda=motion_lmbda)
    warn_untrained_lambdas(options, (256.0, 512.0, 1024.0, 2048.0))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(warned)
    for line, expected in zip(lines, warned, strict=True):
        assert line.startswith("canfvc: warning: " + expected)


def test_set_cpu_threads_sets_torchs_threads_and_0_keeps_them():
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    try:
        set_cpu_threads(other)
        assert torch.get_num_threads() == other
        set_cpu_threads(0)
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(before)


def test_motion_lambda_is_in_the_header_and_codes_the_motion(tmp_path):
    """The motion coders run at the header's motion λ: another value changes the motion
    streams of the P-frames, and each stream decodes bit-exactly."""
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 64, 64, 3)
    coded = {}
    for motion_lmbda in (300.0, 1800.0):
        folder = tmp_path / f"motion_{motion_lmbda:g}"
        folder.mkdir()
        data, summary = _encode(folder, clip, gop=0, motion_lmbda=motion_lmbda)
        reader = CvcReader(io.BytesIO(data))
        assert reader.header.rates.motion == motion_lmbda == summary["motion_lambda"]
        assert reader.header.rates.lmbda == LAMBDA
        coded[motion_lmbda] = list(reader)
        _decode(folder, data)
        assert (folder / "decoded.yuv").read_bytes() == (folder / "recon.yuv").read_bytes()
    low, high = coded[300.0], coded[1800.0]
    assert low[0].streams == high[0].streams  # the I-frame has no motion
    assert low[1].streams[:2] != high[1].streams[:2]


def test_auto_intra_lambda_is_a_multiple_of_lambda_within_the_trained_range():
    anchors = (256.0, 512.0, 1024.0, 2048.0)
    assert INTRA_LAMBDA_FACTOR > 1  # I-frames above the P-frames' quality
    assert auto_intra_lambda(256.0, anchors) == 256.0 * INTRA_LAMBDA_FACTOR
    assert auto_intra_lambda(2048.0, anchors) == 2048.0  # not above the highest anchor
    assert auto_intra_lambda(5000.0, anchors) == 5000.0  # nor below λ
    assert auto_intra_lambda(256.0, anchors, factor=1.0) == 256.0


def test_intra_lambda_is_in_the_header_and_codes_the_i_frames(tmp_path):
    """The I-frames run at the header's intra λ, by default auto_intra_lambda's: another value
    changes the I-frame's streams, and each stream decodes bit-exactly."""
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 64, 64, 2)
    coded = {}
    for intra_lmbda in (None, LAMBDA, 1800.0):
        folder = tmp_path / f"intra_{intra_lmbda}"
        folder.mkdir()
        data, summary = _encode(folder, clip, gop=0, intra_lmbda=intra_lmbda)
        reader = CvcReader(io.BytesIO(data))
        expected = intra_lmbda or auto_intra_lambda(LAMBDA, (256.0, 512.0, 1024.0, 2048.0))
        assert reader.header.rates.intra == expected == summary["intra_lambda"]
        assert reader.header.rates.lmbda == LAMBDA
        coded[intra_lmbda] = list(reader)
        _decode(folder, data)
        assert (folder / "decoded.yuv").read_bytes() == (folder / "recon.yuv").read_bytes()
    low, high = coded[LAMBDA], coded[1800.0]
    assert low[0].streams != high[0].streams


def test_intra_lambda_is_refused_for_hevc_i_frames():
    with pytest.raises(UsageError, match="HEVC I-frames take their QP from --lambda"):
        check_options(EncodeOptions(intra_coder="hevc", intra_lmbda=2048.0))
    with pytest.raises(UsageError, match="--intra-lambda must be a positive number"):
        check_options(EncodeOptions(intra_lmbda=-1.0))


def test_recon_is_close_to_the_input_at_high_rate_only_for_trained_models(tmp_path):
    """The published default model at its highest rate reconstructs an I and a P-frame well, and
    better than at its lowest; random weights code a valid video of meaningless pictures."""
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 64, 64, 2)
    psnrs = {}
    for model, lmbda in ((DEFAULT_MODEL, 256.0), (DEFAULT_MODEL, 2048.0), (MODEL, 2048.0)):
        folder = tmp_path / f"{model}_{lmbda:g}"
        folder.mkdir()
        _, summary = _encode(folder, clip, gop=0, lmbda=lmbda, model=model)
        psnrs[model, lmbda] = [f["psnr"] for f in summary["per_frame"]]
    # canfvc-small fa940407b5ae1f10 gives 35.9 and 34.6 dB at 2048 (33.3 and 31.9 at 256).
    high, low = psnrs[DEFAULT_MODEL, 2048.0], psnrs[DEFAULT_MODEL, 256.0]
    assert all(psnr > TRAINED_HIGH_RATE_PSNR for psnr in high), high
    assert all(h > lo for h, lo in zip(high, low, strict=True)), (high, low)
    # Random tiny weights give about 6 dB: far from the input, but finite.
    assert all(0 < psnr < RANDOM_PSNR_AT_MOST for psnr in psnrs[MODEL, 2048.0])


def test_engine_handles_odd_sizes_and_stays_in_lock_step():
    model, _ = random_model("tiny")
    frames = real_rgb_frames(count=3, width=100, height=75)
    device = torch.device("cpu")
    encoder = Encoder(model, Rates.uniform(LAMBDA), IntraSchedule(2), 100, 75, device)
    decoder = Decoder(model, Rates.uniform(LAMBDA), 100, 75, device)
    for k in range(3):
        frame_type, streams, recon = encoder.encode(frames[k])
        assert frame_type == "IPI"[k]
        assert recon.shape == (3, 75, 100)
        # References and outputs are on 8-bit levels.
        assert torch.equal(recon, torch.round(recon * 255) / 255)
        assert torch.equal(decoder.decode(frame_type, streams), recon)


def test_crc_mismatch_names_the_frame(tmp_path):
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 64, 64, 2)
    data, _ = _encode(tmp_path, clip, gop=0)
    reader = CvcReader(io.BytesIO(data))
    records = list(reader)
    damaged = io.BytesIO()
    writer = CvcWriter(damaged, reader.header)
    writer.write_frame(records[0])
    writer.write_frame(FrameRecord("P", records[1].streams, records[1].recon_crc ^ 1))
    writer.close()
    with pytest.raises(BitstreamError, match="frame 1"):
        _decode(tmp_path, damaged.getvalue())
    assert not (tmp_path / "decoded.yuv").exists()


def test_decoder_refuses_a_p_frame_without_references():
    model, _ = random_model("tiny")
    decoder = Decoder(model, Rates.uniform(LAMBDA), 64, 64, torch.device("cpu"))
    with pytest.raises(ValueError, match="before any I-frame"):
        decoder.decode("P", [b"", b"", b"", b""])
    with pytest.raises(ValueError, match="frame type"):
        decoder.decode("B", [b"", b""])


def test_bad_options_are_usage_errors(tmp_path):
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 64, 64, 1)
    for options in (
        EncodeOptions(lmbda=-1.0, model=MODEL),
        EncodeOptions(gop=-2, model=MODEL),
        EncodeOptions(model=MODEL, device="tpu"),
        EncodeOptions(model=MODEL, motion_search="block-matching"),
        EncodeOptions(model=MODEL, motion_lmbda=0.0),
        EncodeOptions(model=MODEL, motion_lmbda=float("inf")),
    ):
        with open_reader(str(clip)) as reader, pytest.raises(UsageError):
            encode_video(reader, io.BytesIO(), options, progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error():
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(UsageError, match="cuda"):
        resolve_device("cuda")


def test_pad_replicates_and_reaches_a_multiple_of_64():
    x = torch.arange(2 * 3 * 70 * 65, dtype=torch.float32).reshape(2, 3, 70, 65)
    padded = pad_to_multiple(x)
    assert padded.shape == (2, 3, 128, 128)
    assert torch.equal(padded[..., :70, :65], x)
    assert torch.equal(padded[..., 100, :65], x[..., -1, :])
    assert torch.equal(padded[..., :70, 127], x[..., :, -1])
    assert pad_to_multiple(padded) is padded


def test_frame_crc_covers_every_plane():
    y = np.zeros((4, 4), np.uint8)
    u = np.zeros((2, 2), np.uint8)
    v = np.zeros((2, 2), np.uint8)
    base = frame_crc(Frame(y, u, v))
    v2 = v.copy()
    v2[1, 1] = 1
    assert frame_crc(Frame(y, u, v2)) != base
    assert frame_crc(Frame(y.copy(), u.copy(), v.copy())) == base
