"""Raw 4:2:0 files: round trips at 8 and 10 bit, frame ranges, file-name parsing, errors."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import numpy as np
import pytest

from canfvc_codec.errors import InputError, OutputError, UsageError
from canfvc_codec.io import Frame, VideoInfo, open_reader, open_writer, parse_fps, parse_size
from canfvc_codec.io.yuv import parse_raw_name

W, H = 64, 48


def random_frames(count: int, bit_depth: int = 8, size=(W, H), seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    top = 1 << bit_depth
    width, height = size
    return [
        Frame(
            rng.integers(0, top, (height, width)).astype(dtype),
            rng.integers(0, top, (height // 2, width // 2)).astype(dtype),
            rng.integers(0, top, (height // 2, width // 2)).astype(dtype),
        )
        for _ in range(count)
    ]


def info_for(bit_depth: int = 8, size=(W, H)) -> VideoInfo:
    return VideoInfo(size[0], size[1], 25, 1, bit_depth, "bt709", False, None)


def same(a: Frame, b: Frame) -> bool:
    return all(np.array_equal(p, q) for p, q in zip((a.y, a.u, a.v), (b.y, b.u, b.v), strict=True))


def write_all(path, frames, info, **kwargs) -> None:
    with open_writer(str(path), info, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_round_trip(tmp_path, bit_depth):
    frames = random_frames(3, bit_depth)
    path = tmp_path / f"clip_{W}x{H}_25.yuv"
    write_all(path, frames, info_for(bit_depth))
    assert path.stat().st_size == 3 * W * H * 3 // 2 * (2 if bit_depth == 10 else 1)
    with open_reader(str(path), bit_depth=bit_depth) as reader:
        assert reader.info.frame_count == 3
        assert (reader.info.width, reader.info.height, reader.info.fps) == (W, H, 25)
        back = list(reader)
    assert len(back) == 3 and all(same(a, b) for a, b in zip(frames, back, strict=True))
    assert back[0].y.dtype == (np.uint16 if bit_depth == 10 else np.uint8)


def test_ten_bit_is_little_endian(tmp_path):
    frame = Frame(
        np.full((2, 2), 0x0102, np.uint16),
        np.full((1, 1), 3, np.uint16),
        np.zeros((1, 1), np.uint16),
    )
    path = tmp_path / "t.yuv"
    write_all(path, [frame], info_for(10, (2, 2)))
    assert path.read_bytes()[:2] == b"\x02\x01"


def test_start_and_frames_select_a_range(tmp_path):
    frames = random_frames(6)
    path = tmp_path / f"c_{W}x{H}.yuv"
    write_all(path, frames, info_for())
    with open_reader(str(path), start=2, frames=3) as reader:
        assert reader.info.frame_count == 3
        back = list(reader)
    assert [same(a, b) for a, b in zip(frames[2:5], back, strict=True)] == [True] * 3
    with open_reader(str(path), start=4, frames=10) as reader:
        assert reader.info.frame_count == 2
        assert len(list(reader)) == 2


def test_flags_override_the_name(tmp_path):
    path = tmp_path / "clip_32x16_50fps.yuv"
    write_all(path, random_frames(2, size=(64, 8)), info_for(size=(64, 8)))
    with open_reader(str(path), size=(64, 8), fps=Fraction(30000, 1001)) as reader:
        assert (reader.info.width, reader.info.height) == (64, 8)
        assert reader.info.fps == Fraction(30000, 1001)


@pytest.mark.parametrize(
    ("name", "size", "fps", "bit_depth"),
    [
        ("name_1920x1080_50.yuv", (1920, 1080), 50, None),
        ("name_1920x1080_50fps_10bit_420.yuv", (1920, 1080), 50, 10),
        ("BQTerrace_1920x1080_60.yuv", (1920, 1080), 60, None),
        ("RaceHorses_416x240_30.yuv", (416, 240), 30, None),
        ("x_640x360_29.97.yuv", (640, 360), Fraction(30000, 1001), None),
        ("foreman_cif_30.yuv", (352, 288), 30, None),
        ("clip_1280x720p_24_8bit.yuv", (1280, 720), 24, 8),
        ("yuv420p10le_352x288.yuv", (352, 288), None, 10),
        ("plain.yuv", None, None, None),
    ],
)
def test_name_parsing(name, size, fps, bit_depth):
    hints = parse_raw_name(name)
    assert hints.size == size
    assert hints.fps == fps
    assert hints.bit_depth == bit_depth


def test_parse_fps_and_size():
    assert parse_fps("25") == 25
    assert parse_fps("23.976") == Fraction(24000, 1001)
    assert parse_fps("59.94") == Fraction(60000, 1001)
    assert parse_fps("12.5") == Fraction(25, 2)
    assert parse_fps("30000/1001") == Fraction(30000, 1001)
    assert parse_size("416x240") == (416, 240)
    for bad in ("0", "-5", "abc", "1/0"):
        with pytest.raises(ValueError):
            parse_fps(bad)
    for bad in ("416", "axb", "416x240x3"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_not_a_whole_number_of_frames(tmp_path):
    path = tmp_path / "short_64x48.yuv"
    path.write_bytes(bytes(W * H * 3 // 2 + 7))
    with pytest.raises(InputError, match="not a whole number of 64x48 8-bit 4:2:0 frames"):
        open_reader(str(path))


def test_unknown_size(tmp_path):
    path = tmp_path / "nameless.yuv"
    path.write_bytes(bytes(100))
    with pytest.raises(UsageError, match="unknown frame size"):
        open_reader(str(path))


def test_odd_dimensions(tmp_path):
    path = tmp_path / "odd_63x48.yuv"
    path.write_bytes(bytes(100))
    with pytest.raises(InputError, match="odd dimensions 63x48"):
        open_reader(str(path))


def test_missing_file_and_start_past_the_end(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_reader(str(tmp_path / "missing_64x48.yuv"))
    path = tmp_path / f"c_{W}x{H}.yuv"
    write_all(path, random_frames(2), info_for())
    with pytest.raises(InputError, match="past the end"):
        open_reader(str(path), start=2)


def test_existing_output_needs_overwrite(tmp_path):
    path = tmp_path / "out.yuv"
    path.write_bytes(b"keep")
    with pytest.raises(OutputError, match="already exists"):
        open_writer(str(path), info_for())
    assert path.read_bytes() == b"keep"
    write_all(path, random_frames(1), info_for(), overwrite=True)
    assert path.stat().st_size == W * H * 3 // 2


def test_failure_leaves_no_partial_output(tmp_path):
    path = tmp_path / "out.yuv"
    with pytest.raises(RuntimeError):
        with open_writer(str(path), info_for()) as writer:
            writer.write(random_frames(1)[0])
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


def test_output_appears_only_when_complete(tmp_path):
    path = tmp_path / "out.yuv"
    with open_writer(str(path), info_for()) as writer:
        writer.write(random_frames(1)[0])
        assert not path.exists()
    assert path.exists() and len(list(tmp_path.iterdir())) == 1


def test_reading_is_streamed(tmp_path):
    """Memory does not grow with the video's length: the peak stays near one frame."""
    frame_bytes = W * H * 3 // 2
    count = 60
    path = tmp_path / f"c_{W}x{H}.yuv"
    write_all(path, random_frames(count), info_for())
    tracemalloc.start()
    try:
        with open_reader(str(path)) as reader:
            seen = sum(1 for _ in reader)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 8 * frame_bytes < count * frame_bytes
