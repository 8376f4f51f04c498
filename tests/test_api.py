"""The Python API (canfvc_codec.api): the command line's bytes and frames, frames given as arrays
(YUV and RGB, 8 and 10 bit), decoding one frame at a time, and the command line's errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

import canfvc_codec as canfvc
from canfvc_codec.cli import main
from canfvc_codec.errors import BitstreamError, InputError, ModelError, OutputError, UsageError
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer
from canfvc_codec.io.color import rgb_to_yuv, yuv_to_rgb
from tests.conftest import real_yuv_frames

MODEL = "random-tiny"
WIDTH, HEIGHT, COUNT, FPS = 64, 64, 3, 25
# Frame types as the GOP puts them, so that the clip has P-frames (random weights make every
# adaptive choice intra).
CODING = {"lmbda": 700.0, "gop": 2, "adaptive_intra": False, "device": "cpu"}
CLI_CODING = ["--lambda", "700", "--gop", "2", "--no-adaptive-intra", "--device", "cpu"]
TEN_BIT_SCALE = 4  # 8-bit samples as 10-bit ones


@pytest.fixture(scope="module")
def model() -> canfvc.Model:
    return canfvc.load_model(MODEL)


def _planes(bit_depth: int = 8) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    frames = real_yuv_frames("bikes.mp4", 0, COUNT, WIDTH, HEIGHT)
    if bit_depth == 8:
        return frames
    return [tuple(p.astype(np.uint16) * TEN_BIT_SCALE for p in planes) for planes in frames]


def _write_clip(path: Path, bit_depth: int = 8) -> Path:
    info = VideoInfo(WIDTH, HEIGHT, FPS, 1, bit_depth, "bt709", False, COUNT)
    with open_writer(str(path), info) as writer:
        for planes in _planes(bit_depth):
            writer.write(Frame(*planes))
    return path


def _cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        main(list(args))
    return stop.value.code, capsys.readouterr().err


def _same_frames(a: list[Frame], b: list[Frame]) -> bool:
    planes = [(f.y, f.u, f.v) for f in a], [(f.y, f.u, f.v) for f in b]
    return len(a) == len(b) and all(
        np.array_equal(p, q)
        for x, y in zip(*planes, strict=True)
        for p, q in zip(x, y, strict=True)
    )


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_encode_and_decode_give_the_command_lines_bytes_and_frames(
    tmp_path, capsys, model, bit_depth
):
    clip = _write_clip(tmp_path / "clip.y4m", bit_depth)
    stream, decoded = tmp_path / "cli.cvc", tmp_path / "cli.y4m"
    common = ["--threads", "1", "-q"]
    assert _cli(capsys, "encode", str(clip), "-o", str(stream), "--model", MODEL, *CLI_CODING,
                *common)[0] == 0  # fmt: skip
    assert _cli(capsys, "decode", str(stream), "-o", str(decoded), *common)[0] == 0

    from_file = canfvc.encode(clip, model=model, **CODING)
    from_planes = canfvc.encode(_planes(bit_depth), model=model, fps=FPS, **CODING)
    assert from_file.stream == from_planes.stream == stream.read_bytes()
    assert [f.type for f in from_file.frames] == ["I", "P", "I"] and from_file.i_frames == 2
    assert from_file.bytes == len(stream.read_bytes()) and from_file.lmbda == 700.0
    assert from_file.psnr_rgb == pytest.approx(np.mean([f.psnr_rgb for f in from_file.frames]))

    with open_reader(str(decoded)) as reader:
        cli_frames = list(reader)
    with canfvc.decode(from_file.stream, model=model) as frames:
        assert frames.video.bit_depth == bit_depth and frames.video.frame_count == COUNT
        assert _same_frames(list(frames), cli_frames)
    assert _same_frames(list(canfvc.decode(stream)), cli_frames)  # the model found by its id
    assert _same_frames(list(canfvc.decode(stream, start=1, frames=1)), cli_frames[1:2])
    assert canfvc.info(stream) == canfvc.info(from_file.stream)


def test_encode_writes_a_path_or_a_file(tmp_path, model):
    planes = _planes()
    in_memory = canfvc.encode(planes, model=model, **CODING).stream
    target = tmp_path / "out.cvc"
    assert canfvc.encode(planes, target, model=model, **CODING).stream is None
    assert target.read_bytes() == in_memory
    with pytest.raises(OutputError, match="already exists"):
        canfvc.encode(planes, target, model=model, **CODING)
    buffer = io.BytesIO()
    canfvc.encode(iter(planes), buffer, model=model, **CODING)  # a generator: count unknown
    assert canfvc.info(buffer.getvalue())["header"]["frame_count"] == 0


def test_rgb_frames_are_coded_as_their_yuv(model):
    info = VideoInfo(WIDTH, HEIGHT, 30, 1, 8, "bt709", False, COUNT)
    rgb = [yuv_to_rgb(Frame(*planes), info).permute(1, 2, 0) for planes in _planes()]
    as_uint8 = [torch.round(picture * 255).to(torch.uint8) for picture in rgb]
    as_float = [picture.double() / 255 for picture in as_uint8]
    as_yuv = [rgb_to_yuv(picture.permute(2, 0, 1) / 255, info) for picture in as_uint8]
    from_uint8 = canfvc.encode([p.numpy() for p in as_uint8], model=model, **CODING).stream
    assert canfvc.encode(as_uint8, model=model, **CODING).stream == from_uint8  # tensors
    assert canfvc.encode(as_float, model=model, **CODING).stream == from_uint8
    assert canfvc.encode(as_yuv, model=model, **CODING).stream == from_uint8

    decoded = list(canfvc.decode(from_uint8, rgb=True))
    assert len(decoded) == COUNT and decoded[0].shape == (HEIGHT, WIDTH, 3)
    assert decoded[0].dtype == np.float32 and 0 <= decoded[0].min() <= decoded[0].max() <= 1
    yuv = next(canfvc.decode(from_uint8))
    assert np.array_equal(decoded[0], yuv_to_rgb(yuv, info).permute(1, 2, 0).numpy())


def test_ten_bit_rgb_codes_a_ten_bit_stream(model):
    rgb = np.random.default_rng(0).integers(0, 1024, (2, HEIGHT, WIDTH, 3), dtype=np.uint16)
    result = canfvc.encode(rgb, model=model, **CODING)
    assert canfvc.info(result.stream)["header"]["bit_depth"] == 10
    frame = next(canfvc.decode(result.stream))
    assert frame.y.dtype == np.uint16 and frame.y.max() < 1024
    as_float = canfvc.encode(rgb.astype(np.float64) / 1023, model=model, bit_depth=10, **CODING)
    assert as_float.stream == result.stream


class CountingReader(io.RawIOBase):
    """A pipe-like stream (no seeking) that counts the bytes read from it."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._data.read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_decode_reads_one_frame_at_a_time(model):
    stream = canfvc.encode(_planes(), model=model, **CODING).stream
    report = canfvc.info(stream)
    header, records = report["totals"]["header_bytes"], [f["bytes"] for f in report["frames"]]
    source = CountingReader(stream)
    frames = canfvc.decode(source, model=model)
    assert source.bytes_read == header  # the header only: nothing is decoded yet
    next(frames)
    assert source.bytes_read == header + records[0]
    next(frames)
    assert source.bytes_read == header + records[0] + records[1]
    assert len(list(frames)) == COUNT - 2
    assert source.bytes_read == len(stream)


def _cli_error(capsys, *args: str) -> str:
    code, err = _cli(capsys, *args)
    assert code != 0 and err.startswith("canfvc: ") and err.count("\n") == 1
    return err.removeprefix("canfvc: ").strip()


def test_errors_are_typed_with_the_command_lines_messages(tmp_path, capsys, model):
    missing = str(tmp_path / "missing.cvc")
    with pytest.raises(InputError) as err:
        canfvc.info(missing)
    assert str(err.value) == _cli_error(capsys, "info", missing)

    garbage = tmp_path / "garbage.cvc"
    garbage.write_bytes(b"not a stream at all")
    for call in (canfvc.info, canfvc.decode):
        with pytest.raises(BitstreamError) as err:
            call(str(garbage))
        assert str(err.value) == _cli_error(capsys, "info", str(garbage))
    with pytest.raises(BitstreamError, match="^not a .cvc file"):
        canfvc.decode(garbage.read_bytes())

    clip = _write_clip(tmp_path / "clip.y4m")
    stream = tmp_path / "clip.cvc"
    cases = [
        ({"model": "no-such-model"}, ["--model", "no-such-model"], ModelError),
        ({"bitrate": 0}, ["--bitrate", "0"], UsageError),
        ({"bitrate": "fast"}, ["--bitrate", "fast"], UsageError),
        ({"bpp": -1}, ["--bpp", "-1"], UsageError),
        ({"bitrate": "1k", "bpp": 1}, ["--bitrate", "1k", "--bpp", "1"], UsageError),
        ({"bitrate": "1k", "lmbda": 512}, ["--bitrate", "1k", "--lambda", "512"], UsageError),
    ]
    for options, flags, error in cases:
        with pytest.raises(error) as err:
            canfvc.encode(clip, **{"model": model, **options})
        assert str(err.value) == _cli_error(capsys, "encode", str(clip), "-o", str(stream), *flags)
    assert not stream.exists()


def test_bad_frames_are_input_errors(model):
    y, u, v = _planes()[0]
    odd = np.zeros((HEIGHT - 1, WIDTH, 3), np.uint8)
    with pytest.raises(InputError, match="odd dimensions 64x63"):
        canfvc.encode([odd], model=model)
    with pytest.raises(InputError, match="frame 1: planes"):
        canfvc.encode([(y, u, v), (y[:, :32], u, v)], model=model)
    with pytest.raises(InputError, match=r"frame 0: float RGB samples must be in \[0, 1\]"):
        canfvc.encode([np.full((HEIGHT, WIDTH, 3), 1.5)], model=model)
    with pytest.raises(InputError, match="samples must be uint8"):
        canfvc.encode([(y.astype(np.int32), u, v)], model=model)
    with pytest.raises(InputError, match="the video has no frames"):
        canfvc.encode([], model=model)
