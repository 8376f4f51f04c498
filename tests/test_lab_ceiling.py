"""The transforms' ceiling: the unquantised reconstruction, and the harness that reports it."""

from __future__ import annotations

import math

import pytest
import torch

from canfvc_codec.lab import ceiling
from canfvc_codec.weights import random_model

SIZE = 64  # the smallest frame the coders take unpadded
FINE = 1000.0  # gain factor that makes the rounding step negligible


def _coded_error(model, x: torch.Tensor) -> float:
    coded = model.forward_intra(x, 1024.0).x_hat
    return float((coded - model.intra.unquantised(x)).abs().max())


def test_coding_reaches_the_ceiling_as_the_rounding_step_vanishes(rgb_frames) -> None:
    x = rgb_frames(start=30, count=1, width=SIZE, height=SIZE)
    model = random_model("tiny")[0].eval()
    with torch.no_grad():
        coarse = _coded_error(model, x)
        model.intra.gain.log_gain += math.log(FINE)
        model.intra.gain.log_inv_gain -= math.log(FINE)
        fine = _coded_error(model, x)
    assert coarse > 1e-3  # rounding at the model's own gain moves the picture
    assert fine < coarse / 100


def test_the_harness_reports_the_ceiling_and_each_lambda(rgb_frames) -> None:
    frames = list(rgb_frames(start=30, count=2, width=48, height=40)[:, None])
    model = random_model("tiny-small")[0]
    rows = ceiling.intra_ceiling(model, frames, [256.0, 2048.0])
    assert set(rows) == {"ceiling", "psnr, λ 256", "bpp, λ 256", "psnr, λ 2048", "bpp, λ 2048"}
    for values in rows.values():
        assert len(values) == 2 and all(math.isfinite(v) for v in values)
    # A fresh small intra coder's synthesis starts silent: every reconstruction is black.
    assert rows["ceiling"] == pytest.approx(rows["psnr, λ 2048"])
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
