"""Metrics on inputs whose answer is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from canfvc_codec.bitstream import bits_per_pixel
from canfvc_codec.eval.metrics import (
    frame_metrics,
    mean_metrics,
    rgb_ms_ssim,
    rgb_psnr,
    yuv_psnr,
)
from canfvc_codec.io.frame import Frame, VideoInfo
from canfvc_codec.psnr import PSNR_CAP_DB, psnr_from_mse

PEAK_8BIT = 255.0


def _info(width: int, height: int, bit_depth: int = 8) -> VideoInfo:
    return VideoInfo(width, height, 25, 1, bit_depth, "bt709", False, None)


def _frame(planes) -> Frame:
    return Frame(*(np.array(p) for p in planes))


def test_identical_frames_hit_the_cap(yuv_frames):
    y, u, v = yuv_frames(count=1, width=176, height=144)[0]
    frame = Frame(y, u, v)
    values = frame_metrics(frame, Frame(y.copy(), u.copy(), v.copy()), _info(176, 144))
    for key in ("psnr-rgb", "psnr-yuv", "psnr-y", "psnr-u", "psnr-v"):
        assert values[key] == PSNR_CAP_DB
    # 144 rows are too few for the five MS-SSIM scales: reported as missing, not as a number.
    assert math.isnan(values["ms-ssim-rgb"])


def test_known_mse_gives_known_psnr():
    # Every luma sample off by 5 -> MSE 25 -> PSNR = 10 log10(255^2 / 25).
    ref = np.full((16, 16), 100, np.uint8)
    expected = 10 * math.log10(PEAK_8BIT**2 / 25)
    assert psnr_from_mse(25.0, PEAK_8BIT) == pytest.approx(expected)
    chroma = np.full((8, 8), 128, np.uint8)
    values = yuv_psnr(_frame((ref, chroma, chroma)), _frame((ref + 5, chroma, chroma + 1)), 8)
    assert values["psnr-y"] == pytest.approx(expected)
    assert values["psnr-u"] == PSNR_CAP_DB
    v_psnr = 10 * math.log10(PEAK_8BIT**2 / 1)
    assert values["psnr-v"] == pytest.approx(v_psnr)
    assert values["psnr-yuv"] == pytest.approx((6 * expected + PSNR_CAP_DB + v_psnr) / 8)


def test_ten_bit_peak_is_1023():
    ref = np.full((8, 8), 512, np.uint16)
    chroma = np.full((4, 4), 512, np.uint16)
    values = yuv_psnr(_frame((ref, chroma, chroma)), _frame((ref + 2, chroma, chroma)), 10)
    assert values["psnr-y"] == pytest.approx(10 * math.log10(1023.0**2 / 4))


def test_rgb_psnr_and_ms_ssim(rgb_frames):
    ref = rgb_frames(count=1, width=192, height=176)[0]
    shifted = (ref + 0.1).clamp(0, 1)
    mse = torch.mean((ref.double() - shifted.double()) ** 2).item()
    assert rgb_psnr(ref, shifted) == pytest.approx(10 * math.log10(1 / mse))
    assert rgb_ms_ssim(ref, ref) == pytest.approx(1.0, abs=1e-6)
    noisy = (ref + 0.05 * torch.randn_like(ref)).clamp(0, 1)
    assert (
        0.0
        < rgb_ms_ssim(ref, noisy)
        < rgb_ms_ssim(ref, (ref + 0.01 * torch.randn_like(ref)).clamp(0, 1))
    )


def test_bpp_and_means():
    assert bits_per_pixel(1000, 100, 80, 2) == pytest.approx(8000 / 16000)
    rows = [{"psnr-y": 30.0}, {"psnr-y": 40.0}]
    assert mean_metrics(rows, ("psnr-y",)) == {"psnr-y": 35.0}
    with pytest.raises(ValueError):
        bits_per_pixel(10, 0, 10)
