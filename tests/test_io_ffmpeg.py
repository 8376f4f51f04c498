"""Inputs through ffmpeg, lossless mp4/mkv and PNG outputs."""

from __future__ import annotations

import subprocess
from dataclasses import replace

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from canfvc_codec.datasets import clip_path
from canfvc_codec.errors import InputError, OutputError
from canfvc_codec.io import Frame, open_reader, open_writer
from canfvc_codec.io import ffmpeg as ffmpeg_io
from canfvc_codec.io.color import yuv_to_rgb
from tests.test_io_yuv import info_for, random_frames, same, write_all

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
BIKES_SIZE = (640, 272)


def test_reads_a_real_clip_frame_exactly(yuv_frames):
    """The reader's frames equal ffmpeg's own decode of the same frames (``--start`` included)."""
    expected = yuv_frames("bikes.mp4", start=3, count=2, width=BIKES_SIZE[0], height=BIKES_SIZE[1])
    with open_reader(str(clip_path("bikes.mp4")), start=3, frames=2) as reader:
        info = reader.info
        frames = list(reader)
    assert (info.width, info.height, info.fps, info.bit_depth) == (*BIKES_SIZE, 25, 8)
    assert info.frame_count is None  # ffmpeg inputs are streamed: the count is not known ahead
    assert len(frames) == 2
    for frame, (y, u, v) in zip(frames, expected, strict=True):
        assert same(frame, Frame(y, u, v))


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize(
    ("bit_depth", "matrix", "full_range"),
    [(8, "bt709", False), (8, "bt601", True), (10, "bt709", False), (10, "bt601", True)],
)
def test_lossless_round_trip(tmp_path, suffix, bit_depth, matrix, full_range):
    frames = random_frames(3, bit_depth, seed=bit_depth)
    info = replace(info_for(bit_depth), matrix=matrix, full_range=full_range)
    path = tmp_path / f"out{suffix}"
    write_all(path, frames, info)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with open_reader(str(path)) as reader:
        assert reader.info.bit_depth == bit_depth
        assert reader.info.matrix == matrix
        assert reader.info.full_range is full_range
        assert reader.info.fps == 25
        back = list(reader)
    assert len(back) == 3
    assert all(same(a, b) for a, b in zip(frames, back, strict=True))


def _decode_png(path, pix_fmt: str, dtype, shape) -> np.ndarray:
    cmd = [FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    data = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(data, dtype).reshape(shape)


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_png_pattern(tmp_path, yuv_frames, bit_depth):
    """PNGs are valid (ffmpeg decodes them) and hold canfvc's own RGB conversion."""
    y, u, v = yuv_frames(count=1, width=64, height=48)[0]
    if bit_depth == 10:
        y, u, v = (p.astype(np.uint16) * 4 for p in (y, u, v))
    frame = Frame(y, u, v)
    info = info_for(bit_depth)
    write_all(tmp_path / "rec_%03d.png", [frame, frame], info)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec_001.png", "rec_002.png"]
    expected = yuv_to_rgb(frame, info).permute(1, 2, 0).numpy()
    if bit_depth == 8:
        pixels = _decode_png(tmp_path / "rec_001.png", "rgb24", np.uint8, (48, 64, 3))
        assert np.array_equal(pixels, np.round(expected * 255).astype(np.uint8))
    else:
        pixels = _decode_png(tmp_path / "rec_002.png", "rgb48le", "<u2", (48, 64, 3))
        assert np.array_equal(pixels, np.round(expected * 65535).astype(np.uint16))


def test_png_needs_a_pattern_and_aborts_cleanly(tmp_path):
    with pytest.raises(OutputError, match="needs a frame-number pattern"):
        open_writer(str(tmp_path / "rec.png"), info_for())
    with pytest.raises(RuntimeError):
        with open_writer(str(tmp_path / "rec_%04d.png"), info_for()) as writer:
            writer.write(random_frames(1)[0])
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


def test_rgb_pictures_are_read_through_ffmpeg(tmp_path, rgb_frames):
    """An RGB source is converted by ffmpeg to 4:2:0 with canfvc's matrix: close to its own."""
    rgb = rgb_frames(count=1, width=64, height=48)[0]
    pixels = (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    pattern = tmp_path / "src_%d.png"
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48",
         "-i", "-", str(pattern)],
        input=pixels.tobytes(), check=True,
    )  # fmt: skip
    with open_reader(str(pattern)) as reader:
        assert (reader.info.width, reader.info.height, reader.info.bit_depth) == (64, 48, 8)
        frame = next(iter(reader))
    back = yuv_to_rgb(frame, reader.info)
    assert torch.mean((back - rgb) ** 2) < 1e-3  # over 30 dB: same matrix and range


def test_unreadable_inputs(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 10)
    with pytest.raises(InputError, match="junk.mp4: ffmpeg cannot read it"):
        open_reader(str(junk))
    audio = tmp_path / "tone.wav"
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", "sine=duration=0.1", str(audio)], check=True
    )
    with pytest.raises(InputError, match="no video stream"):
        open_reader(str(audio))
    with pytest.raises(InputError, match="no such file"):
        open_reader(str(tmp_path / "missing.mkv"))


def test_stopping_early_ends_ffmpeg():
    with open_reader(str(clip_path("bikes.mp4")), frames=1) as reader:
        assert len(list(reader)) == 1
        process = reader._process
    assert process.poll() is not None


def test_bundled_ffmpeg_is_used_without_one_on_path(monkeypatch):
    monkeypatch.setattr(ffmpeg_io.shutil, "which", lambda name: None)
    assert ffmpeg_io.ffmpeg_exe() == FFMPEG
