"""YUV 4:2:0 <-> RGB conversion: reference values, round trips on real frames, chroma resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from canfvc_codec.io.color import _downsample, _upsample, rgb_to_yuv, yuv_to_rgb
from canfvc_codec.io.frame import Frame, VideoInfo

ROUND_TRIP_SHARE = 0.999  # share of samples within one code value after YUV -> RGB -> YUV


def _info(bit_depth: int = 8, matrix: str = "bt709", full_range: bool = False, size=(176, 144)):
    return VideoInfo(size[0], size[1], 25, 1, bit_depth, matrix, full_range, None)


def _flat_rgb(color: tuple[float, float, float], size=(8, 8)) -> torch.Tensor:
    return torch.tensor(color, dtype=torch.float32)[:, None, None].expand(3, size[1], size[0])


@pytest.mark.parametrize(
    ("matrix", "color", "expected"),
    [
        # Published limited-range 8-bit codes of the primaries.
        ("bt709", (1.0, 0.0, 0.0), (63, 102, 240)),
        ("bt709", (0.0, 1.0, 0.0), (173, 42, 26)),
        ("bt709", (0.0, 0.0, 1.0), (32, 240, 118)),
        ("bt601", (1.0, 0.0, 0.0), (81, 90, 240)),
        ("bt601", (0.0, 1.0, 0.0), (145, 54, 34)),
        ("bt601", (0.0, 0.0, 1.0), (41, 240, 110)),
        ("bt709", (1.0, 1.0, 1.0), (235, 128, 128)),
        ("bt709", (0.0, 0.0, 0.0), (16, 128, 128)),
    ],
)
def test_reference_codes(matrix, color, expected):
    frame = rgb_to_yuv(_flat_rgb(color), _info(matrix=matrix, size=(8, 8)))
    got = (int(frame.y[0, 0]), int(frame.u[0, 0]), int(frame.v[0, 0]))
    assert got == expected


@pytest.mark.parametrize(
    ("bit_depth", "full_range", "white", "black", "grey_chroma"),
    [(8, True, 255, 0, 128), (10, False, 940, 64, 512), (10, True, 1023, 0, 512)],
)
def test_ranges_and_bit_depths(bit_depth, full_range, white, black, grey_chroma):
    info = _info(bit_depth, full_range=full_range, size=(8, 8))
    for level, code in ((1.0, white), (0.0, black)):
        frame = rgb_to_yuv(_flat_rgb((level, level, level)), info)
        assert frame.y.dtype == (np.uint16 if bit_depth == 10 else np.uint8)
        assert (frame.y == code).all()
        assert (frame.u == grey_chroma).all() and (frame.v == grey_chroma).all()
        rgb = yuv_to_rgb(frame, info)
        assert torch.allclose(rgb, torch.full_like(rgb, level), atol=1e-6)


@pytest.mark.parametrize("clip", ["bikes.mp4", "bigbuckbunny.mp4"])
def test_real_frames_round_trip(yuv_frames, clip):
    """YUV -> RGB -> YUV on real frames: within one code value on at least 99.9 % of samples.

    The few misses are out-of-gamut samples (e.g. luma above 235) that RGB in [0, 1] cannot hold.
    """
    info = _info()
    within = total = 0
    for y, u, v in yuv_frames(clip, start=10, count=3):
        rgb = yuv_to_rgb(Frame(y, u, v), info)
        assert rgb.shape == (3, 144, 176) and rgb.dtype == torch.float32
        assert rgb.min() >= 0.0 and rgb.max() <= 1.0
        back = rgb_to_yuv(rgb, info)
        for a, b in zip((y, u, v), (back.y, back.u, back.v), strict=True):
            error = np.abs(a.astype(np.int32) - b.astype(np.int32))
            within += int((error <= 1).sum())
            total += error.size
    assert within / total >= ROUND_TRIP_SHARE


@pytest.mark.parametrize("matrix", ["bt709", "bt601"])
@pytest.mark.parametrize(
    ("bit_depth", "full_range"), [(8, False), (8, True), (10, False), (10, True)]
)
def test_in_gamut_frames_are_stable(rgb_frames, matrix, bit_depth, full_range):
    """A frame made by rgb_to_yuv is (nearly) in gamut: converting it again moves no sample by
    more than one 8-bit code value, and almost none at all. (Rounding can push a saturated
    pixel just outside the gamut, where RGB is clipped.)"""
    info = _info(bit_depth, matrix, full_range, size=(128, 128))
    one_code = 1 << (bit_depth - 8)
    frame = rgb_to_yuv(rgb_frames(count=1)[0], info)
    again = rgb_to_yuv(yuv_to_rgb(frame, info), info)
    for a, b in zip((frame.y, frame.u, frame.v), (again.y, again.u, again.v), strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= one_code
        assert (a == b).mean() > 0.99


def test_chroma_upsampling_keeps_the_block_means():
    """Area down-sampling exactly undoes the up-sampling: the heart of the round trip."""
    plane = torch.rand(1, 2, 9, 11, generator=torch.Generator().manual_seed(1))
    up = _upsample(plane)
    assert up.shape == (1, 2, 18, 22)
    assert torch.allclose(_downsample(up), plane, atol=1e-6)


def test_chroma_upsampling_is_smooth_on_gradients():
    """On a linear ramp the up-sampled plane is the ramp itself (no blocks), away from borders."""
    ramp = torch.arange(16, dtype=torch.float32).repeat(16, 1)[None, None]
    up = _upsample(ramp)[0, 0, :, 2:-2]
    steps = up[:, 1:] - up[:, :-1]
    assert torch.allclose(steps, torch.full_like(steps, 0.5), atol=1e-5)


def test_rgb_to_yuv_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        rgb_to_yuv(torch.zeros(1, 3, 8, 8), _info(size=(8, 8)))
