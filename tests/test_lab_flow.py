"""The motion diagnostic: warp PSNR of the encoder's flow, against no motion."""

from __future__ import annotations

import math

import pytest
import torch

from canfvc_codec.lab import flow
from canfvc_codec.weights import random_model

SHIFT = 3  # pixels
WIDTH, HEIGHT = 64, 48


def _shifted_pair(rgb_frames) -> tuple[torch.Tensor, torch.Tensor]:
    """A real frame and the same frame moved SHIFT pixels left: target(x) = reference(x + SHIFT)."""
    picture = rgb_frames(start=60, count=1, width=WIDTH + SHIFT, height=HEIGHT)
    return picture[:, :, :, :WIDTH], picture[:, :, :, SHIFT:]


def test_the_true_motion_predicts_far_better_than_none(rgb_frames) -> None:
    reference, target = _shifted_pair(rgb_frames)
    true_flow = torch.zeros(1, 2, HEIGHT, WIDTH)
    true_flow[:, 0] = SHIFT
    exact = flow.warp_psnr(reference, target, true_flow)
    wrong_way = flow.warp_psnr(reference, target, -true_flow)
    none = flow.warp_psnr(reference, target, flow.zero_flow(target, reference))
    # Only the SHIFT columns that enter on the right are unknown to the reference.
    assert exact > none + 20.0
    assert wrong_way < none


def test_every_estimator_scores_every_pair(rgb_frames) -> None:
    frames = list(rgb_frames(start=10, count=3, width=WIDTH, height=HEIGHT)[:, None])
    model, _ = random_model("tiny")
    per_pair = flow.warp_quality(
        frames, {"none": flow.zero_flow, "spynet": flow.spynet_estimator(model.eval())}
    )
    assert set(per_pair) == {"none", "spynet"}
    for values in per_pair.values():
        assert len(values) == 2 and all(math.isfinite(v) for v in values)
    still = flow.warp_quality([frames[0], frames[0]], {"none": flow.zero_flow})
    assert still["none"] == [100.0]  # identical frames: the metrics' PSNR cap


def test_coded_motion_is_scored_per_pair(rgb_frames) -> None:
    frames = list(rgb_frames(start=10, count=3, width=WIDTH, height=HEIGHT)[:, None])
    model, _ = random_model("tiny")
    rows = flow.coded_motion_quality(model.eval(), frames, 1024.0)
    assert set(rows) == {"coded flow", "x_c", "motion bpp"}
    assert all(len(values) == 2 for values in rows.values())
    assert all(bpp > 0 for bpp in rows["motion bpp"])  # the motion always costs something
    assert all(math.isfinite(v) for v in rows["coded flow"] + rows["x_c"])


def test_a_chain_scores_every_p_frame_on_decoded_references(rgb_frames) -> None:
    frames = list(rgb_frames(start=10, count=4, width=WIDTH, height=HEIGHT)[:, None])
    model, _ = random_model("tiny-small")
    rows = flow.p_frame_chain(model.eval(), frames, 1024.0, flow.zero_flow)
    assert set(rows) == {
        "motion bpp",
        "inter bpp",
        "x_c",
        "searched warp",
        "decoded",
        "inter ceiling",
    }
    assert all(len(values) == 3 for values in rows.values())
    assert all(math.isfinite(v) for v in rows["inter ceiling"])
    assert all(bpp > 0 for bpp in rows["motion bpp"] + rows["inter bpp"])
    # With no motion searched, the searched warp is the decoded reference as it is: a fresh
    # small model's motion compensation is that warp, so x_c is the same picture.
    for x_c, warped in zip(rows["x_c"], rows["searched warp"], strict=True):
        assert abs(x_c - warped) < 0.5
    with pytest.raises(flow.InputError, match="two frames"):
        flow.p_frame_chain(model, frames[:1], 1024.0, flow.zero_flow)


def test_one_frame_is_an_error(rgb_frames) -> None:
    frames = list(rgb_frames(start=10, count=1, width=WIDTH, height=HEIGHT)[:, None])
    with pytest.raises(flow.InputError, match="two frames"):
        flow.warp_quality(frames, {"none": flow.zero_flow})


def test_command_line(tmp_path, yuv_frames, capsys) -> None:
    frames = yuv_frames(start=20, count=3, width=WIDTH, height=HEIGHT)
    clip = tmp_path / f"clip_{WIDTH}x{HEIGHT}_25fps.yuv"
    clip.write_bytes(b"".join(p.tobytes() for f in frames for p in f))
    flow.main(
        [str(clip), "--model", "random-tiny", "--frames", "3", "--coded", "512", "--chain", "256"]
    )
    out = capsys.readouterr().out
    assert "over 2 frame pairs" in out and "no motion" in out and "spynet" in out
    assert "x_c, λ 512" in out and "motion bpp, λ 512" in out
    assert "chain inter bpp, λ 256" in out and "chain decoded, λ 256" in out
    with pytest.raises(SystemExit) as exit_info:
        flow.main([str(tmp_path / "missing.y4m"), "--model", "random-tiny"])
    assert str(exit_info.value).startswith("canfvc: error:")
