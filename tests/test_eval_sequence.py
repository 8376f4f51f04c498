"""How the evaluation tools read a sequence: vtest.avi is area down-scaled by 2, as configured."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from canfvc_codec.datasets import CLIP_DOWNSCALE
from canfvc_codec.errors import CanfvcError
from canfvc_codec.eval.config import parse_config
from canfvc_codec.eval.runner import prepare_sequence, read_raw
from canfvc_codec.eval.sequence import area_downscale, open_sequence
from canfvc_codec.io import Frame
from canfvc_codec.io.ffmpeg import ffmpeg_exe

CLIP = "vtest.avi"
FACTOR = CLIP_DOWNSCALE[CLIP]
WIDTH, HEIGHT = 64, 32  # the clip's size; read at half of it
CLIP_FRAMES = 5
START, FRAMES = 2, 3


def _block_means(plane: np.ndarray) -> np.ndarray:
    """The mean of each 2x2 block, rounded half up, written out sample by sample."""
    height, width = plane.shape[0] // 2, plane.shape[1] // 2
    out = np.empty((height, width), plane.dtype)
    for row in range(height):
        for col in range(width):
            block = plane[2 * row : 2 * row + 2, 2 * col : 2 * col + 2]
            out[row, col] = (int(block.sum()) + 2) // 4
    return out


def _planes(rng: np.random.Generator, width: int, height: int) -> list[np.ndarray]:
    sizes = ((height, width), (height // 2, width // 2), (height // 2, width // 2))
    return [rng.integers(0, 256, size, dtype=np.uint8) for size in sizes]


@pytest.fixture
def cached_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[np.ndarray]]:
    """A lossless 64x32 ``vtest.avi`` of random frames in a fresh cache; returns its planes."""
    monkeypatch.setenv("CANFVC_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    frames = [_planes(rng, WIDTH, HEIGHT) for _ in range(CLIP_FRAMES)]
    clips = tmp_path / "cache" / "clips"
    clips.mkdir(parents=True)
    cmd = [
        ffmpeg_exe(), "-v", "error", "-nostdin", "-f", "rawvideo", "-pix_fmt", "yuv420p",
        "-s", f"{WIDTH}x{HEIGHT}", "-r", "10", "-i", "-", "-c:v", "rawvideo",
        "-pix_fmt", "yuv420p", str(clips / CLIP),
    ]  # fmt: skip
    data = b"".join(plane.tobytes() for frame in frames for plane in frame)
    subprocess.run(cmd, input=data, check=True, capture_output=True)
    return frames


def _spec(size: str, tmp_path: Path):
    entry = {"name": "vtest", "clip": CLIP, "size": size, "start": START, "frames": FRAMES}
    (spec,) = parse_config({"sequences": [entry]}, tmp_path).sequences
    return spec


def test_area_downscale_averages_each_plane_rounding_half_up() -> None:
    rng = np.random.default_rng(1)
    y, u, v = _planes(rng, 16, 8)
    small = area_downscale(Frame(y, u, v), 2)
    for plane, full in zip((small.y, small.u, small.v), (y, u, v), strict=True):
        assert plane.dtype == np.uint8 and np.array_equal(plane, _block_means(full))
    ten_bit = np.tile(np.array([[1020, 1023], [1023, 1023]], np.uint16), (2, 2))
    small = area_downscale(Frame(ten_bit, ten_bit[:2, :2], ten_bit[:2, :2]), 2)
    assert small.y.dtype == np.uint16 and (small.y == 1022).all() and small.u[0, 0] == 1022
    halves = np.tile(np.array([[0, 1], [0, 1]], np.uint8), (2, 2))  # means of exactly 0.5
    assert (area_downscale(Frame(halves, halves[:2, :2], halves[:2, :2]), 2).y == 1).all()
    assert area_downscale(Frame(y, u, v), 1).y is y


def test_vtest_is_read_down_scaled_by_area(tmp_path: Path, cached_clip) -> None:
    spec = _spec(f"{WIDTH // FACTOR}x{HEIGHT // FACTOR}", tmp_path)
    assert spec.downscale == FACTOR == 2
    with open_sequence(spec, FRAMES) as (info, frames):
        pictures = list(frames)
    assert (info.width, info.height) == (WIDTH // 2, HEIGHT // 2) and len(pictures) == FRAMES
    for picture, planes in zip(pictures, cached_clip[START : START + FRAMES], strict=True):
        for got, full in zip((picture.y, picture.u, picture.v), planes, strict=True):
            assert np.array_equal(got, _block_means(full))

    # canfvc eval's reference frames (what the anchors code and are scored against) are the same.
    prepared = prepare_sequence(spec, tmp_path / "work")
    assert (prepared.info.width, prepared.info.height, prepared.frames) == (32, 16, FRAMES)
    stored = list(read_raw(prepared.raw_path, prepared.info, FRAMES))
    assert all(np.array_equal(a.y, b.y) for a, b in zip(stored, pictures, strict=True))


def test_a_size_that_ignores_the_down_scaling_is_refused(tmp_path: Path, cached_clip) -> None:
    spec = _spec(f"{WIDTH}x{HEIGHT}", tmp_path)
    with pytest.raises(CanfvcError, match="vtest.avi down-scaled by 2 is 32x16, the config says"):
        with open_sequence(spec, FRAMES):
            pass
