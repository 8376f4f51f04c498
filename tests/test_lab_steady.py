"""The steady-state harness: a GOP's settled quality against its I-frame, and the way back after a
scene cut, from the same estimate as lab/estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from canfvc_codec.lab import steady

SIZE = 64
MODEL = "random-tiny"
LAMBDAS = (256.0, 2048.0)
GOP, RECOVERY = 5, 3


@pytest.fixture
def cut_config(tmp_path, yuv_frames, monkeypatch):
    """A clip named bikes, whose first frame is from another scene (the cut after it), with the
    harness shortened to GOPs of 5 frames."""
    monkeypatch.setattr(steady, "GOP_FRAMES", GOP)
    monkeypatch.setattr(steady, "STEADY_FRAMES", slice(3, 5))
    monkeypatch.setattr(steady, "RECOVERY_FRAMES", RECOVERY)
    other = yuv_frames(start=10, count=1, width=SIZE, height=SIZE)
    scene = yuv_frames(start=120, count=GOP, width=SIZE, height=SIZE)
    frames = other + scene
    (tmp_path / "bikes.yuv").write_bytes(b"".join(p.tobytes() for f in frames for p in f))
    sequence = {
        "name": "bikes",
        "path": "bikes.yuv",
        "size": f"{SIZE}x{SIZE}",
        "fps": 25,
        "frames": len(frames),
    }
    config = tmp_path / "dev.json"
    config.write_text(json.dumps({"name": "t", "gop": GOP, "sequences": [sequence]}))
    return config


def test_steady_state_and_recovery_after_the_cut(cut_config, capsys):
    lines: list[str] = []
    record = steady.run(cut_config, MODEL, LAMBDAS, log=lines.append)
    bikes = record["sequences"]["bikes"]
    assert set(bikes["steady"]) == set(bikes["after_cut"]) == {"256", "2048"}
    for lmbda, point in bikes["steady"].items():
        frames = point["frames"]
        assert [f["type"] for f in frames] == ["I"] + ["P"] * (GOP - 1)  # no adaptive I-frames
        settled = np.mean([f["psnr-rgb"] for f in frames[3:5]])
        assert point["steady_psnr"] == pytest.approx(settled)
        assert point["gap"] == pytest.approx(frames[0]["psnr-rgb"] - settled)
        assert all(f["bytes"] > 0 for f in frames)
        recovery = bikes["after_cut"][lmbda]
        assert [f["type"] for f in recovery["p_frames"]] == ["P"] * RECOVERY
        assert [f["type"] for f in recovery["i_frames"]] == ["I"] * RECOVERY
        gaps = [
            i["psnr-rgb"] - p["psnr-rgb"]
            for p, i in zip(recovery["p_frames"], recovery["i_frames"], strict=True)
        ]
        assert recovery["gaps"] == pytest.approx(gaps)
        within = [k + 1 for k, gap in enumerate(gaps) if gap <= steady.RECOVERY_TOLERANCE_DB]
        assert recovery["recovered_at"] == (within[0] if within else None)
    # The steady GOP starts at the cut: its I-frame is the first frame of the new scene, the
    # same picture the after-cut run codes as an I-frame there.
    for lmbda in bikes["steady"]:
        first = bikes["steady"][lmbda]["frames"][0]
        assert first["psnr-rgb"] == pytest.approx(
            bikes["after_cut"][lmbda]["i_frames"][0]["psnr-rgb"]
        )
    assert len(lines) == len(LAMBDAS) and "after the cut" in lines[0]
