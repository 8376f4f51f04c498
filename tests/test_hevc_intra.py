"""I-frames coded by HEVC intra (``--intra-coder hevc``, CANF-VC*): the coder, the codec around it,
and what happens when ffmpeg, libx265 or a payload is missing or broken."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from canfvc_codec import demo, hevc
from canfvc_codec.bitstream import INTRA, CvcReader, CvcWriter, FrameRecord
from canfvc_codec.cli import main
from canfvc_codec.codec import decode_video, encode_video
from canfvc_codec.encoder.gop import Encoder, frame_cost
from canfvc_codec.encoder.options import EncodeOptions
from canfvc_codec.encoder.schedule import IntraSchedule
from canfvc_codec.errors import BitstreamError
from canfvc_codec.hevc import (
    MAX_QP,
    MIN_QP,
    QP_AT_REFERENCE_LAMBDA,
    QP_PER_OCTAVE,
    REFERENCE_LAMBDA,
    HevcIntra,
    qp_for_lambda,
)
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer
from canfvc_codec.io.color import yuv_to_rgb
from canfvc_codec.io.frame import frame_from_buffer
from canfvc_codec.lab.determinism import OTHER_PATHS, run_harness
from canfvc_codec.networks.video import pad_to_multiple
from canfvc_codec.rates import Rates
from canfvc_codec.weights import random_model
from tests.conftest import older_version, real_yuv_frames

MODEL = "random-tiny"
LAMBDA = 700.0
ANNEX_B_START = b"\x00\x00\x00\x01"
TEN_BIT_SHIFT = 2  # 8-bit samples as 10-bit ones
PRICING_LAMBDA = 50.0


def _info(width: int, height: int, count: int | None, bit_depth: int = 8) -> VideoInfo:
    return VideoInfo(width, height, 25, 1, bit_depth, "bt709", False, count)


def _frames(width: int, height: int, count: int, bit_depth: int = 8) -> list[Frame]:
    """Real frames of bikes; 10-bit ones are the 8-bit samples shifted up, with the two new low
    bits varying, so that they carry information an 8-bit path would lose."""
    frames = []
    for planes in real_yuv_frames("bikes.mp4", 100, count, width, height):
        if bit_depth == 10:
            low_bits = [np.arange(p.size).reshape(p.shape) % (1 << TEN_BIT_SHIFT) for p in planes]
            planes = tuple(
                ((p.astype(np.uint16) << TEN_BIT_SHIFT) + low).astype(np.uint16)
                for p, low in zip(planes, low_bits, strict=True)
            )
        frames.append(Frame(*planes))
    return frames


def _write_clip(path: Path, width: int, height: int, count: int, bit_depth: int = 8) -> None:
    with open_writer(str(path), _info(width, height, count, bit_depth)) as writer:
        for frame in _frames(width, height, count, bit_depth):
            writer.write(frame)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


# ---------------------------------------------------------------------------------------------
# λ -> QP


def test_the_qp_falls_with_lambda_by_the_fitted_slope_within_hevcs_range():
    assert qp_for_lambda(REFERENCE_LAMBDA) == round(QP_AT_REFERENCE_LAMBDA)
    lambdas = [REFERENCE_LAMBDA * 2.0**k for k in np.arange(-2, 1.25, 0.25)]
    qps = [qp_for_lambda(lmbda) for lmbda in lambdas]
    assert qps == sorted(qps, reverse=True) and len(set(qps)) > 2
    for lmbda in (256.0, 512.0, 1024.0):  # one octave lowers the QP by the slope, rounded
        assert abs(qp_for_lambda(lmbda) - qp_for_lambda(2 * lmbda) - QP_PER_OCTAVE) <= 1
    assert qp_for_lambda(1e-12) == MAX_QP and qp_for_lambda(1e30) == MIN_QP
    assert all(isinstance(qp, int) for qp in qps)


# ---------------------------------------------------------------------------------------------
# The coder


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_hevc_intra_codes_a_picture_and_decodes_it_at_the_source_depth(bit_depth):
    width, height = 96, 74  # no multiple of x265's 8-pixel blocks: a conformance window
    info = _info(width, height, 1, bit_depth)
    (frame,) = _frames(width, height, 1, bit_depth)
    sizes, errors = [], []
    for qp in (22, 37):
        coder = HevcIntra(info, qp)
        payload = coder.encode(frame)
        assert payload.startswith(ANNEX_B_START)
        decoded = coder.decode(payload)
        assert decoded.y.shape == (height, width) and decoded.u.shape == (height // 2, width // 2)
        assert decoded.y.dtype == frame.y.dtype
        # The decoder needs no QP: everything is in the payload.
        assert np.array_equal(HevcIntra(info).decode(payload).y, decoded.y)
        sizes.append(len(payload))
        errors.append(_mse(frame.y, decoded.y))
    peak = (1 << bit_depth) - 1
    assert 10 * math.log10(peak**2 / errors[0]) > 38  # QP 22: close to the source
    assert sizes[0] > sizes[1] and errors[0] < errors[1]  # coarser: fewer bytes, more error
    if bit_depth == 10:
        assert np.any(decoded.y % 4 != 0)  # 10-bit samples, not 8-bit ones shifted


def test_a_coder_without_a_qp_only_decodes():
    with pytest.raises(ValueError, match="only decodes"):
        HevcIntra(_info(64, 64, 1)).encode(_frames(64, 64, 1)[0])


# ---------------------------------------------------------------------------------------------
# The codec


def _encode(tmp_path: Path, clip: Path, **changes) -> tuple[bytes, dict]:
    options = EncodeOptions(
        **{
            "lmbda": LAMBDA,
            "gop": 0,
            "adaptive_intra": False,
            "model": MODEL,
            "device": "cpu",
            "intra_coder": "hevc",
            **changes,
        }
    )
    sink = io.BytesIO()
    with open_reader(str(clip)) as reader:
        with open_writer(str(tmp_path / "recon.yuv"), reader.info, overwrite=True) as recon:
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


def _planes(data: bytes, info: VideoInfo) -> list[Frame]:
    """The frames of a raw 4:2:0 file's bytes."""
    size = info.frame_bytes
    return [frame_from_buffer(data[k : k + size], info) for k in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("gop", "adaptive", "count", "bit_depth", "types"),
    [
        (0, False, 4, 8, "IPPP"),  # an HEVC reference for the first P and the ones after it
        (4, False, 6, 8, "IPPPIP"),  # a second HEVC I-frame restarts the references
        (4, False, 3, 10, "IPP"),  # 10-bit video
        (0, True, 4, 8, None),  # the adaptive choice: whatever it picks, it decodes the same
    ],
)
def test_decode_is_bit_identical_to_recon_with_hevc_i_frames(
    tmp_path, gop, adaptive, count, bit_depth, types
):
    width, height = 96, 74
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, width, height, count, bit_depth)
    data, summary = _encode(tmp_path, clip, gop=gop, adaptive_intra=adaptive)
    coded = "".join(f["type"] for f in summary["per_frame"])
    assert types is None or coded == types
    assert summary["intra_coder"] == "hevc" and summary["intra_qp"] == qp_for_lambda(LAMBDA)
    reader = CvcReader(io.BytesIO(data))
    assert reader.header.intra_coder == "hevc"
    records = list(reader)
    decoded = _decode(tmp_path, data)
    assert decoded["frames"] == count
    recon = (tmp_path / "recon.yuv").read_bytes()
    assert (tmp_path / "decoded.yuv").read_bytes() == recon
    # An HEVC I-frame's output is the HEVC decoder's picture of its payload, as it decoded.
    info = _info(width, height, count, bit_depth)
    coder = HevcIntra(info)
    for record, frame in zip(records, _planes(recon, info), strict=True):
        if record.frame_type == INTRA:
            (payload,) = record.streams
            picture = coder.decode(payload)
            assert all(
                np.array_equal(a, b)
                for a, b in zip(
                    (frame.y, frame.u, frame.v), (picture.y, picture.u, picture.v), strict=True
                )
            )
        else:
            assert len(record.streams) == 4


def test_decoding_a_range_starts_at_an_hevc_i_frame(tmp_path):
    width, height, count = 64, 64, 5
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, width, height, count)
    data, summary = _encode(tmp_path, clip, gop=2)
    assert "".join(f["type"] for f in summary["per_frame"]) == "IPIPI"
    frame_bytes = width * height * 3 // 2
    recon = (tmp_path / "recon.yuv").read_bytes()
    decoded = _decode(tmp_path, data, start=3, frames=2)
    assert decoded["lead_in_frames"] == 1  # the HEVC I-frame at 2
    assert (tmp_path / "decoded.yuv").read_bytes() == recon[3 * frame_bytes :]


def test_the_encoders_reference_is_the_decoded_hevc_picture_not_the_source():
    """The reference after an HEVC I-frame is the decoded picture converted to RGB on 8-bit
    levels, exactly: neither the source nor an encoder-side guess."""
    width, height = 64, 64
    info = _info(width, height, 1)
    (frame,) = _frames(width, height, 1)
    coder = HevcIntra(info, 40)  # coarse: the picture differs visibly from the source
    model, _ = random_model("tiny")
    encoder = Encoder(
        model,
        Rates.uniform(LAMBDA),
        IntraSchedule(0),
        width,
        height,
        torch.device("cpu"),
        hevc=coder,
    )
    frame_type, (payload,), reference = encoder.encode(yuv_to_rgb(frame, info), frame)
    assert frame_type == INTRA
    decoded = yuv_to_rgb(coder.decode(payload), info, dtype=torch.float64)
    expected = torch.round(decoded * 255) / 255
    assert torch.equal(reference.double(), expected)
    source = torch.round(yuv_to_rgb(frame, info).double() * 255) / 255
    assert not torch.equal(reference.double(), source)
    assert torch.equal(encoder.refs.frames[0][0, :, :height, :width].double(), expected)


def test_adaptive_intra_prices_hevc_i_frames_by_their_real_bits():
    """The same P-frame, priced against the same frame coded by HEVC intra at QP 0 (near
    lossless, many bits) and at QP 51 (few bits, coarse): the choice follows frame_cost of the
    payload's real size, which the test recomputes. At a low λ the untrained P-frame's cost is
    mostly its few bits, between those of the two I-frames."""
    width, height = 64, 64
    info = _info(width, height, 2)
    frames = _frames(width, height, 2)
    pictures = [yuv_to_rgb(frame, info) for frame in frames]
    model, _ = random_model("tiny")
    chosen = {}
    for qp in (0, 51):
        coder = HevcIntra(info, qp)
        encoder = Encoder(
            model,
            Rates.uniform(PRICING_LAMBDA),
            IntraSchedule(0, adaptive=True, choice="frame"),
            width,
            height,
            torch.device("cpu"),
            hevc=coder,
        )
        encoder.encode(pictures[0], frames[0])
        references = encoder.refs
        frame_type, streams, _ = encoder.encode(pictures[1], frames[1])
        # The candidates' costs, computed here the way the encoder must price them.
        x = pad_to_multiple(pictures[1].double()[None])
        payload = coder.encode(frames[1])
        intra_hat = pad_to_multiple(
            yuv_to_rgb(coder.decode(payload), info, dtype=torch.float64)[None]
        )
        intra_cost = frame_cost(8 * len(payload), x, intra_hat, PRICING_LAMBDA, (height, width))
        inter_streams, inter_hat, _ = encoder.model.compress_inter(x, references, encoder.rates)
        inter_bits = 8 * sum(len(s) for s in inter_streams)
        inter_cost = frame_cost(inter_bits, x, inter_hat, PRICING_LAMBDA, (height, width))
        assert frame_type == (INTRA if intra_cost < inter_cost else "P")
        if frame_type == INTRA:
            assert streams == [payload]
        chosen[qp] = frame_type
    assert chosen == {0: "P", 51: INTRA}  # the bits decide, not the coder's name


def test_streams_of_version_2_still_decode(tmp_path):
    """An ANFIC stream written before the intra coder was in the header decodes as before."""
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 64, 64, 2)
    data, _ = _encode(tmp_path, clip, intra_coder="anfic")
    old = older_version(data, 2)
    assert CvcReader(io.BytesIO(old)).version == 2
    _decode(tmp_path, old)
    assert (tmp_path / "decoded.yuv").read_bytes() == (tmp_path / "recon.yuv").read_bytes()


def test_the_determinism_harness_over_a_stream_with_hevc_i_frames(tmp_path):
    clip = tmp_path / "clip.y4m"
    _write_clip(clip, 64, 64, 6)
    results = run_harness(
        clip, tmp_path / "work", model=MODEL, gop=3, paths=OTHER_PATHS, intra_coder="hevc"
    )
    assert results["intra_coder"] == "hevc"
    runs = [run for run in results["runs"] if "path" in run]
    assert [run["path"] for run in runs] == list(OTHER_PATHS)
    for run in runs:
        assert run["failure"] is None and run["decoded"] == run["frames"] == 6, run
        assert run["crc_mismatches"] == 0 and run["identical_fraction"] == 1.0, run


# ---------------------------------------------------------------------------------------------
# Missing tools and damaged payloads: one line, a non-zero status, no output


def _run(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if "untrained model" not in line]
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("canfvc: "), err
    return exit_info.value.code, lines[0]


FFMPEG_WITHOUT_X265 = """#!/bin/sh
# An ffmpeg built without libx265 or the HEVC decoder: it lists other codecs.
echo " V....D libx264              libx264 H.264 / AVC / MPEG-4 AVC"
echo " V....D h264                 H.264 / AVC / MPEG-4 AVC / MPEG-4 part 10"
"""


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.y4m"
    _write_clip(path, 64, 64, 2)
    return path


@pytest.mark.parametrize("ffmpeg", ["none", "without libx265"])
def test_encode_without_libx265_is_one_line_and_writes_nothing(
    tmp_path, capsys, monkeypatch, clip, ffmpeg
):
    candidates = []
    if ffmpeg != "none":
        script = tmp_path / "ffmpeg"
        script.write_text(FFMPEG_WITHOUT_X265)
        script.chmod(0o755)
        candidates = [str(script)]
    monkeypatch.setattr(hevc, "ffmpeg_candidates", lambda: candidates)
    out, recon = tmp_path / "out.cvc", tmp_path / "recon.y4m"
    code, line = _run(
        capsys, "encode", str(clip), "-o", str(out), "--recon", str(recon), "--model", MODEL,
        "--intra-coder", "hevc", "-q",
    )  # fmt: skip
    assert code == 1 and "needs ffmpeg with the libx265 encoder" in line
    assert not out.exists() and not recon.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["clip.y4m", *(["ffmpeg"] if candidates else [])]
    )


def _hevc_stream(tmp_path: Path, clip: Path) -> bytes:
    data, _ = _encode(tmp_path, clip, gop=0)
    (tmp_path / "recon.yuv").unlink()
    return data


def test_decode_without_an_hevc_decoder_is_one_line_and_writes_nothing(
    tmp_path, capsys, monkeypatch, clip
):
    stream = tmp_path / "in.cvc"
    stream.write_bytes(_hevc_stream(tmp_path, clip))
    monkeypatch.setattr(hevc, "ffmpeg_candidates", lambda: [])
    out = tmp_path / "out.y4m"
    code, line = _run(capsys, "decode", str(stream), "-o", str(out), "-q")
    assert code == 1 and "decoding them needs ffmpeg's HEVC decoder" in line
    assert not out.exists()


def _with_payload(data: bytes, payload: bytes) -> bytes:
    """``data`` with the first record's HEVC payload replaced, every CRC valid again."""
    reader = CvcReader(io.BytesIO(data))
    records = list(reader)
    sink = io.BytesIO()
    writer = CvcWriter(sink, reader.header)
    writer.write_frame(FrameRecord("I", [payload], records[0].recon_crc))
    for record in records[1:]:
        writer.write_frame(record)
    writer.close()
    return sink.getvalue()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "flipped bit", "record CRC"])
def test_a_damaged_hevc_payload_is_one_line_and_writes_nothing(tmp_path, capsys, clip, damage):
    data = _hevc_stream(tmp_path, clip)
    payload = CvcReader(io.BytesIO(data)).read_frame().streams[0]
    if damage == "truncated":
        data = _with_payload(data, payload[: len(payload) // 3])
    elif damage == "garbage":
        data = _with_payload(data, bytes(range(256)) * 4)
    elif damage == "flipped bit":  # decodes to another picture: the reconstruction CRC says so
        flipped = bytearray(payload)
        flipped[len(flipped) // 2] ^= 0x08
        data = _with_payload(data, bytes(flipped))
    else:  # damage the payload under the record's own CRC
        damaged = bytearray(data)
        damaged[data.index(payload) + len(payload) // 2] ^= 0x08
        data = bytes(damaged)
    stream = tmp_path / "in.cvc"
    stream.write_bytes(data)
    out = tmp_path / "out.yuv"
    code, line = _run(capsys, "decode", str(stream), "-o", str(out), "-q")
    assert code == 1 and line.startswith("canfvc: frame 0: "), line
    assert not out.exists()
    with pytest.raises(BitstreamError):
        _decode(tmp_path, data)


def test_the_demo_codes_the_clip_with_each_intra_coder(capfd):
    demo.main(["--model", MODEL, "--frames", "2", "--intra-coders", "anfic,hevc"])
    out = capfd.readouterr().out  # the canfvc commands run in child processes
    results = [line for line in out.splitlines() if line.startswith("demo result")]
    assert [line.split("(")[1].split(" ")[0] for line in results] == ["anfic", "hevc"]
    assert "intra_coder:   hevc" in out and "intra_coder:   anfic" in out  # canfvc info
    with pytest.raises(SystemExit):
        demo.main(["--intra-coders", "bpg"])
