"""Y4M: header fields, round trips at 8 and 10 bit, stdin and stdout, damaged streams."""

from __future__ import annotations

import io
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

from canfvc_codec.errors import InputError, UsageError
from canfvc_codec.io import open_reader
from canfvc_codec.io.y4m import Y4MReader, format_header, parse_header
from tests.test_io_yuv import info_for, random_frames, same, write_all

W, H = 64, 48
PY = sys.executable


def header(text: str) -> bytes:
    return f"YUV4MPEG2 {text}\n".encode()


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_round_trip(tmp_path, bit_depth):
    frames = random_frames(3, bit_depth)
    info = info_for(bit_depth)
    info.full_range = True
    path = tmp_path / "clip.y4m"
    write_all(path, frames, info)
    with open_reader(str(path)) as reader:
        assert reader.info.bit_depth == bit_depth
        assert reader.info.full_range is True
        assert reader.info.frame_count == 3
        back = list(reader)
    assert all(same(a, b) for a, b in zip(frames, back, strict=True))


def test_start_and_frames(tmp_path):
    frames = random_frames(5)
    path = tmp_path / "clip.y4m"
    write_all(path, frames, info_for())
    with open_reader(str(path), start=3, frames=5) as reader:
        assert reader.info.frame_count == 2
        back = list(reader)
    assert len(back) == 2 and same(back[0], frames[3]) and same(back[1], frames[4])


@pytest.mark.parametrize(
    ("fields", "bit_depth", "fps", "full_range"),
    [
        ("W64 H48 F25:1 Ip A1:1 C420jpeg", 8, 25, False),
        ("W64 H48 F30000:1001 C420mpeg2 XYSCSS=420MPEG2", 8, Fraction(30000, 1001), False),
        ("W64 H48 F50:1 C420paldv XCOLORRANGE=FULL", 8, 50, True),
        ("W64 H48 F24:1 C420p10 XYSCSS=420P10 XCOLORRANGE=LIMITED", 10, 24, False),
        ("W64 H48 F25:1", 8, 25, False),  # no C: 4:2:0 8-bit, as the format defines
        ("W64 H48 F25:1 A0:0 C420 Xfuture=1 Zunknown", 8, 25, False),
    ],
)
def test_header_fields(fields, bit_depth, fps, full_range):
    info, _ = parse_header(header(fields), "test")
    assert (info.width, info.height) == (W, H)
    assert info.bit_depth == bit_depth
    assert info.fps == fps
    assert info.full_range is full_range


def test_pixel_aspect_ratio_is_read():
    assert parse_header(header("W64 H48 F25:1 A128:117"), "t")[1] == Fraction(128, 117)
    assert parse_header(header("W64 H48 F25:1 A0:0"), "t")[1] is None


def test_written_header_reads_back():
    info = info_for(10)
    info.fps_num, info.fps_den, info.full_range = 60000, 1001, True
    parsed, _ = parse_header(format_header(info), "t")
    assert parsed == info


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFF....", "not a Y4M stream"),
        (header("W64 F25:1"), r"width \(W\) or height \(H\) missing"),
        (header("W64 Hx F25:1"), "bad Y4M header: Hx"),
        (header("W64 H48 F25"), "F25 is not of the form n:d"),
        (header("W64 H48 F25:0"), "bad Y4M header: F25:0"),
        (header("W64 H48 Iz"), "bad Y4M header: Iz"),
        (header("W64 H48 XCOLORRANGE=HALF"), "XCOLORRANGE=HALF"),
        (header("W64 H48 C444"), "unsupported pixel format C444"),
        (header("W64 H48 Cmono"), "unsupported pixel format Cmono"),
        (header("W64 H48 C420p12"), "unsupported pixel format C420p12"),
        (header("W63 H48"), "odd dimensions 63x48"),
        (b"", "empty input"),
    ],
)
def test_bad_headers(data, message):
    with pytest.raises(InputError, match=message):
        Y4MReader(io.BytesIO(data), "test")


def test_damaged_frames():
    frame_bytes = W * H * 3 // 2
    truncated = header("W64 H48") + b"FRAME\n" + bytes(frame_bytes) + b"FRAME\n" + bytes(10)
    with pytest.raises(InputError, match="frame 1 is truncated"):
        list(Y4MReader(io.BytesIO(truncated), "test"))
    bad_tag = header("W64 H48") + b"FRAMX\n" + bytes(frame_bytes)
    with pytest.raises(InputError, match="frame 0: bad Y4M frame header"):
        list(Y4MReader(io.BytesIO(bad_tag), "test"))
    with pytest.raises(InputError, match="no frames"):
        list(Y4MReader(io.BytesIO(header("W64 H48")), "test"))


def test_a_file_without_frames_says_so(tmp_path):
    path = tmp_path / "empty.y4m"
    path.write_bytes(header("W64 H48"))
    with pytest.raises(InputError, match="empty.y4m: the video has no frames"):
        open_reader(str(path))


def test_frame_parameters_are_accepted():
    frame_bytes = W * H * 3 // 2
    data = header("W64 H48") + b"FRAME Ixyz\n" + bytes(frame_bytes)
    assert len(list(Y4MReader(io.BytesIO(data), "test"))) == 1


def test_flags_override_the_header_and_bit_depth_must_match(tmp_path):
    path = tmp_path / "c.y4m"
    path.write_bytes(header("W64 H48 F25:1") + b"FRAME\n" + bytes(W * H * 3 // 2))
    with open_reader(str(path), fps=Fraction(50), matrix="bt601", full_range=True) as reader:
        assert (reader.info.fps, reader.info.matrix, reader.info.full_range) == (50, "bt601", True)
    with pytest.raises(UsageError, match="--bit-depth 10 does not match the 8-bit input"):
        open_reader(str(path), bit_depth=10)
    with pytest.raises(InputError, match="--size 32x32 does not match"):
        open_reader(str(path), size=(32, 32))


def test_stdin_and_stdout(tmp_path):
    """`-` reads Y4M from stdin and writes Y4M to stdout, byte for byte through a pipe."""
    frames = random_frames(2, 10)
    source = tmp_path / "in.y4m"
    write_all(source, frames, info_for(10))
    script = (
        "from canfvc_codec.io import open_reader, open_writer\n"
        "with open_reader('-') as r, open_writer('-', r.info) as w:\n"
        "    for f in r: w.write(f)\n"
    )
    result = subprocess.run(
        [PY, "-c", script], input=source.read_bytes(), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == source.read_bytes()


def test_broken_pipe_on_stdout():
    """A reader that goes away gives one clear error, not a traceback from the interpreter."""
    script = (
        "import numpy as np, sys\n"
        "from canfvc_codec.errors import OutputError\n"
        "from canfvc_codec.io import Frame, VideoInfo, open_writer\n"
        "info = VideoInfo(64, 48, 25, 1, 8, 'bt709', False, None)\n"
        "f = Frame(np.zeros((48, 64), np.uint8), *[np.zeros((24, 32), np.uint8)] * 2)\n"
        "try:\n"
        "    with open_writer('-', info) as w:\n"
        "        for _ in range(2000): w.write(f)\n"
        "except OutputError as e:\n"
        "    print(e, file=sys.stderr); sys.exit(1)\n"
    )
    process = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.read(100)
    process.stdout.close()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.decode().strip() == "output pipe closed before the video was complete (broken pipe)"


def test_reading_a_pipe_is_streamed():
    """Frames are read one at a time from a pipe: the first arrives before the writer is done."""
    frame_bytes = W * H * 3 // 2
    stream = io.BytesIO(header("W64 H48") + (b"FRAME\n" + bytes(frame_bytes)) * 4)
    reader = Y4MReader(stream, "pipe")
    first = next(iter(reader))
    assert first.y.shape == (H, W) and np.all(first.y == 0)
    assert stream.tell() == len(header("W64 H48")) + 6 + frame_bytes
