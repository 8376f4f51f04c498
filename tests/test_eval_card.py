"""Model cards take their measured RD points and BD-rates from estimate records."""

from __future__ import annotations

import json

import pytest

from canfvc_codec.eval import card
from canfvc_codec.eval.estimate import ESTIMATE

MODEL_ID = "00112233"


def _frame(kind: str, bpp: float, psnr: float) -> dict:
    row = {"type": kind, "bpp": bpp, "psnr-rgb": psnr}
    return row | ({"bpp-motion": bpp / 10} if kind == "P" else {})


def _record(lmbda: float, types: str) -> dict:
    frames = [_frame(t, 0.4 if t == "I" else 0.1, 32.0 if t == "I" else 31.0) for t in types]
    point = {
        "value": lmbda,
        "motion_lambda": 256.0,
        "bpp": sum(f["bpp"] for f in frames) / len(frames),
        "psnr-rgb": 31.25,
        "psnr-yuv": 35.123456,
        "ms-ssim-rgb": 0.95,
        "frames": frames,
    }
    bd = {metric: {ESTIMATE: {"clip": 100.0 + lmbda / 1000}} for metric in card.BD_METRICS}
    return {
        "model_id": MODEL_ID,
        "adaptive_intra": True,
        "sequences": {"clip": {"start": 7, "frames": len(types), "codecs": {ESTIMATE: [point]}}},
        "bd_rate": bd,
    }


def test_points_carry_the_split_between_i_and_p_frames() -> None:
    (point,) = card.rd_points(_record(512.0, "IPPP"), gop=32)
    assert point["sequence"] == "clip" and point["frames"] == "4 (dev range from 7)"
    assert point["gop"] == 32 and point["lambda"] == 512.0 and point["bpp"] == 0.175
    assert point["psnr_yuv"] == 35.1235  # rounded to the card's precision
    assert point["i_frames"] == 1 and (point["i_bpp"], point["p_bpp"]) == (0.4, 0.1)
    assert point["p_over_i"] == 0.25 and point["p_motion_bpp"] == 0.01
    assert (point["i_psnr_rgb"], point["p_psnr_rgb"]) == (32.0, 31.0)
    (intra_only,) = card.rd_points(_record(512.0, "II"))
    assert intra_only["p_bpp"] is None and intra_only["p_over_i"] is None


def test_card_is_updated_and_keeps_what_it_said(tmp_path) -> None:
    path = tmp_path / "model.json"
    words = {"anchor": "x265 veryslow", "psnr-rgb": {"old_frames": 1.0}}
    path.write_text(json.dumps({"model_id": MODEL_ID, "data": "d", "bd_rate_vs_x265": words}))
    records = []
    for lmbda, types in ((256.0, "IPP"), (2048.0, "IIP")):
        records.append(tmp_path / f"l{lmbda:g}.json")
        records[-1].write_text(json.dumps(_record(lmbda, types)))
    card.main(["--card", str(path), *map(str, records), "--gop", "16"])
    updated = json.loads(path.read_text())
    assert updated["data"] == "d"
    assert [p["lambda"] for p in updated["rd_points"]] == [256.0, 2048.0]
    assert [p["i_frames"] for p in updated["rd_points"]] == [1, 2]
    bd = updated["bd_rate_vs_x265"]
    assert bd["anchor"] == "x265 veryslow"
    assert bd["psnr-rgb"] == {"clip_3_frames": 102.048}  # the later record's, nothing stale
    assert "clip 3 dev frames from 7" in bd["canfvc_points"]


def test_card_averages_the_sequences_bd_rates() -> None:
    other = _record(512.0, "IP")
    other["sequences"] = {"park": other["sequences"]["clip"]}
    other["bd_rate"] = {metric: {ESTIMATE: {"park": 50.0}} for metric in card.BD_METRICS}
    bd = card.update_card({"model_id": MODEL_ID}, [_record(256.0, "IPP"), other])["bd_rate_vs_x265"]
    assert bd["psnr-rgb"] == {"clip_3_frames": 100.256, "park_2_frames": 50.0, "average": 75.128}
    other["bd_rate"]["psnr-rgb"][ESTIMATE]["park"] = "n/a (test has 2 usable points, 3 needed)"
    bd = card.update_card({"model_id": MODEL_ID}, [_record(256.0, "IPP"), other])["bd_rate_vs_x265"]
    assert bd["psnr-rgb"]["average"].startswith("n/a")


def test_estimates_of_another_model_are_refused(tmp_path, capsys) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"model_id": "ffff"}))
    estimate = tmp_path / "e.json"
    estimate.write_text(json.dumps(_record(256.0, "IP")))
    with pytest.raises(SystemExit) as exit_info:
        card.main(["--card", str(path), str(estimate)])
    assert "of model 00112233, the card of model ffff" in str(exit_info.value.code)
    assert json.loads(path.read_text()) == {"model_id": "ffff"}  # left as it was
    with pytest.raises(SystemExit) as exit_info:
        card.main(["--card", str(tmp_path / "missing.json"), str(estimate)])
    assert "cannot read" in str(exit_info.value.code)
