"""The transforms' ceiling: the unquantised reconstruction, and the harness that reports it."""

from __future__ import annotations

import math

import pytest
import torch

from canfvc_codec.lab import ceiling
from canfvc_codec.weights import random_model

SIZE = 64  # the smallest frame the coders take unpadded
FINE = 1000.0  # gain factor that makes the rounding step negligible


def _finely_gained(model):
    """``model`` with the intra coder's gains raised FINE-fold: rounding then moves nothing."""
    with torch.no_grad():
        model.intra.gain.log_gain += math.log(FINE)
        model.intra.gain.log_inv_gain -= math.log(FINE)
    return model


def _coded_error(model, x: torch.Tensor) -> float:
    with torch.no_grad():
        coded = model.forward_intra(x, 1024.0).x_hat
        return float((coded - model.intra.unquantised(x)).abs().max())


def test_coding_reaches_the_ceiling_as_the_rounding_step_vanishes(rgb_frames) -> None:
    x = rgb_frames(start=30, count=1, width=SIZE, height=SIZE)
    model = random_model("tiny")[0].eval()
    coarse = _coded_error(model, x)
    fine = _coded_error(_finely_gained(model), x)
    assert coarse > 1e-3  # rounding at the model's own gain moves the picture
    assert fine < coarse / 100


def test_the_harness_reports_the_ceiling_and_each_lambda(rgb_frames) -> None:
    # Frames that need padding: every figure is of the picture cropped back to its size.
    frames = list(rgb_frames(start=30, count=2, width=48, height=40)[:, None])
    model = random_model("tiny")[0].eval()
    coarse = ceiling.intra_ceiling(model, frames, [256.0, 2048.0])
    assert set(coarse) == {"ceiling", "psnr, λ 256", "bpp, λ 256", "psnr, λ 2048", "bpp, λ 2048"}
    for values in coarse.values():
        assert len(values) == 2 and all(math.isfinite(v) for v in values)
    assert all(a < b for a, b in zip(coarse["bpp, λ 256"], coarse["bpp, λ 2048"], strict=True))
    # With the rounding step negligible, each λ decodes what the ceiling says, and not before.
    fine = ceiling.intra_ceiling(_finely_gained(model), frames, [256.0, 2048.0])
    assert fine["ceiling"] == pytest.approx(coarse["ceiling"])

    def gap(rows: dict[str, list[float]]) -> float:
        return max(abs(a - b) for a, b in zip(rows["psnr, λ 256"], rows["ceiling"], strict=True))

    assert gap(fine) < gap(coarse) / 10
    with pytest.raises(ceiling.InputError, match="at least one frame"):
        ceiling.intra_ceiling(model, [], [256.0])


def test_command_line(tmp_path, yuv_frames, capsys) -> None:
    frames = yuv_frames(start=20, count=2, width=48, height=40)
    clip = tmp_path / "clip_48x40_25fps.yuv"
    clip.write_bytes(b"".join(p.tobytes() for f in frames for p in f))
    ceiling.main([str(clip), "--model", "random-tiny", "--lambda", "512"])
    out = capsys.readouterr().out
    assert "over 2 frames" in out and "ceiling" in out and "bpp, λ 512" in out
    with pytest.raises(SystemExit) as exit_info:
        ceiling.main([str(tmp_path / "missing.y4m"), "--model", "random-tiny"])
    assert str(exit_info.value).startswith("canfvc: error:")
