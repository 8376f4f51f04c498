"""Model cards take their measured RD points and BD-rates from estimate records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canfvc_codec.lab import card
from canfvc_codec.lab.estimate import ESTIMATE

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
    assert point["i_bits_share"] == round(0.4 / 0.7, card.DIGITS)  # of the four frames' bits
    assert (point["i_psnr_rgb"], point["p_psnr_rgb"]) == (32.0, 31.0)
    (intra_only,) = card.rd_points(_record(512.0, "II"))
    assert intra_only["p_bpp"] is None and intra_only["p_over_i"] is None
    assert intra_only["i_bits_share"] == 1.0


def test_points_say_how_adaptive_intra_chose() -> None:
    # Records from before the intra choice was recorded were all made with the frame choice.
    assert card.rd_points(_record(512.0, "IP"))[0]["intra_choice"] == "frame"
    record = _record(512.0, "IP") | {"intra_choice": "run"}
    assert card.rd_points(record)[0]["intra_choice"] == "run"
    fixed = record | {"adaptive_intra": False}
    assert card.rd_points(fixed)[0]["intra_choice"] is None  # no choice made


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


def _real_run(tmp_path, lmbda: float, types: str, *, rows_typed: bool, model: str = MODEL_ID):
    """A canfvc eval folder: results.json, and info.json unless the rows carry the types."""
    rows = [
        {"frame": i, "bpp": 0.4 if t == "I" else 0.1, "psnr-rgb": 33.0 if t == "I" else 32.0}
        | ({"type": t} if rows_typed else {})
        for i, t in enumerate(types)
    ]
    point = {
        "codec": card.CANFVC,
        "value": lmbda,
        "bpp": sum(r["bpp"] for r in rows) / len(rows),
        "psnr-rgb": 32.5,
        "psnr-yuv": 36.0,
        "ms-ssim-rgb": 0.97,
        "encode_s_per_frame": 46.38,
        "decode_s_per_frame": 23.89,
        "frames": rows,
    }
    sequence = {"start": 186, "frames": len(types), "gop": 32, "codecs": {card.CANFVC: [point]}}
    folder = tmp_path / f"run_{lmbda:g}"
    folder.mkdir()
    results = {"canfvc": {"model_id": model}, "sequences": {"bikes": sequence}}
    (folder / "results.json").write_text(json.dumps(results))
    if not rows_typed:
        info = {"header": {"motion_lambda": 256.0}, "frames": [{"type": t} for t in types]}
        (folder / "info.json").write_text(json.dumps(info))
    return folder


def test_real_file_runs_replace_their_points_and_keep_the_others(tmp_path) -> None:
    old = {"sequence": "bikes", "frames": "4 (dev range from 186)", "lambda": 2048.0, "bpp": 9.9}
    other = {"sequence": "bigbuckbunny", "frames": "4 (dev range from 100)", "lambda": 2048.0}
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"model_id": MODEL_ID, "rd_points_real_files": [old, other]}))
    estimate = tmp_path / "e.json"
    estimate.write_text(json.dumps(_record(256.0, "IP")))
    runs = [
        _real_run(tmp_path, 2048.0, "IPIP", rows_typed=False),
        _real_run(tmp_path, 256.0, "IPPP", rows_typed=True),
    ]
    card.main(["--card", str(path), str(estimate), *[f"--real={run}" for run in runs]])
    real = json.loads(path.read_text())["rd_points_real_files"]
    assert [(p["sequence"], p["lambda"]) for p in real] == [
        ("bikes", 2048.0),  # replaced where it stood
        ("bigbuckbunny", 2048.0),  # kept
        ("bikes", 256.0),  # added
    ]
    replaced, _, added = real
    assert replaced["bpp"] == 0.25 and replaced["i_frames"] == 2 and replaced["p_over_i"] == 0.25
    assert replaced["motion_lambda"] == 256.0 and replaced["encode_s_per_frame"] == 46.4
    assert replaced["intra_choice"] == "frame"  # the record does not name one: made before
    assert added["i_frames"] == 1 and added["p_psnr_rgb"] == 32.0
    assert "p_motion_bpp" not in added  # real files do not split the P-frames' bits


def test_real_file_runs_of_another_model_or_malformed_are_refused(tmp_path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"model_id": MODEL_ID}))
    estimate = tmp_path / "e.json"
    estimate.write_text(json.dumps(_record(256.0, "IP")))
    foreign = _real_run(tmp_path, 256.0, "IP", rows_typed=True, model="ffff")
    with pytest.raises(SystemExit) as exit_info:
        card.main(["--card", str(path), str(estimate), "--real", str(foreign)])
    assert "real-file run is of model ffff" in str(exit_info.value.code)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("[1, 2]")
    with pytest.raises(SystemExit) as exit_info:
        card.main(["--card", str(path), str(estimate), "--real", str(broken)])
    assert "not a canfvc eval record" in str(exit_info.value.code)
    short = _real_run(tmp_path, 512.0, "IPP", rows_typed=False)
    (short / "info.json").write_text(json.dumps({"frames": [{"type": "I"}]}))
    with pytest.raises(SystemExit) as exit_info:
        card.main(["--card", str(path), str(estimate), "--real", str(short)])
    assert "the stream holds 1 frames, the record 3" in str(exit_info.value.code)
    assert json.loads(path.read_text()) == {"model_id": MODEL_ID}  # left as it was


def _merged_run(tmp_path, bd_by_sequence: dict, model: str = MODEL_ID):
    """Real-file runs merged with the anchors: canfvc points only where a BD-rate is a number."""
    sequences = {
        name: {
            "start": 100,
            "frames": 32,
            "codecs": {card.CANFVC: [{"value": 256.0}] if isinstance(bd, float) else []},
        }
        for name, bd in bd_by_sequence.items()
    }
    bd_rate = {metric: {card.CANFVC: dict(bd_by_sequence)} for metric in card.BD_METRICS}
    folder = tmp_path / f"merged_{len(bd_by_sequence)}"
    folder.mkdir()
    results = {"canfvc": {"model_id": model}, "sequences": sequences, "bd_rate": bd_rate}
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_real_file_bd_rates_cover_the_sequences_that_have_real_files(tmp_path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"model_id": MODEL_ID, "bd_rate_vs_x265": {"real_files": "old"}}))
    estimate = tmp_path / "e.json"
    estimate.write_text(json.dumps(_record(256.0, "IP")))
    one = _merged_run(tmp_path, {"bikes": 700.0, "park": "n/a (no canfvc results)"})
    card.main(["--card", str(path), str(estimate), "--real-bd", str(one)])
    real = json.loads(path.read_text())["bd_rate_vs_x265"]["real_files"]
    assert real["psnr-rgb"] == {"bikes_32_frames": 700.0}  # park has no real files: left out
    assert real["canfvc_points"].startswith("real files") and "park" not in real["canfvc_points"]
    both = _merged_run(tmp_path, {"bikes": 700.0, "park": 900.0, "extra": 1.0})
    card.main(["--card", str(path), str(estimate), "--real-bd", str(both)])
    real = json.loads(path.read_text())["bd_rate_vs_x265"]["real_files"]
    assert real["ms-ssim-rgb"]["average"] == pytest.approx((700.0 + 900.0 + 1.0) / 3, abs=1e-3)
    # The estimate's BD-rates stay apart from the real files'.
    assert json.loads(path.read_text())["bd_rate_vs_x265"]["psnr-rgb"] == {"clip_2_frames": 100.256}


def test_real_file_bd_rates_of_another_model_or_without_canfvc_are_refused(tmp_path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"model_id": MODEL_ID}))
    estimate = tmp_path / "e.json"
    estimate.write_text(json.dumps(_record(256.0, "IP")))
    foreign = _merged_run(tmp_path, {"bikes": 700.0}, model="ffff")
    with pytest.raises(SystemExit) as exit_info:
        card.main(["--card", str(path), str(estimate), "--real-bd", str(foreign)])
    assert "merged real-file run is of model ffff" in str(exit_info.value.code)
    anchors_only = _merged_run(tmp_path, {"bikes": "n/a (no canfvc results)", "park": "n/a"})
    with pytest.raises(SystemExit) as exit_info:
        card.main(["--card", str(path), str(estimate), "--real-bd", str(anchors_only)])
    assert "no BD-rates of canfvc" in str(exit_info.value.code)
    assert json.loads(path.read_text()) == {"model_id": MODEL_ID}  # left as it was


def _snapshot(model_id: str, steps: int, bd: float, sequence: str) -> dict:
    """An estimate record of one sequence by a snapshot that trained ``steps`` steps."""
    record = _record(512.0, "IP") | {"model_id": model_id}
    record["sequences"] = {sequence: record["sequences"]["clip"]}
    record["bd_rate"] = {m: {ESTIMATE: {sequence: bd}} for m in card.BD_METRICS}
    return record | {"training": {"steps": steps, "device_seconds": steps * 6.0}}


def test_the_learning_curve_has_one_point_per_snapshot_in_training_order() -> None:
    late = [_snapshot("bb", 900, 50.0, "a"), _snapshot("bb", 900, 70.0, "b")]
    early = [_snapshot("aa", 300, 200.0, "a"), _snapshot("aa", 300, 100.0, "b")]
    updated = card.update_card({"model_id": "bb"}, late, curve=early)
    first, last = updated["learning_curve"]
    assert (first["model_id"], first["steps"], first["device_minutes"]) == ("aa", 300, 30.0)
    assert first["sequences"] == ["a", "b"] and last["model_id"] == "bb"
    # Each point is the average over the sequences of its snapshot's BD-rates.
    assert first["bd_rate_vs_x265"]["psnr-rgb"] > last["bd_rate_vs_x265"]["psnr-rgb"]
    assert "learning_curve" not in card.update_card({"model_id": "bb"}, late)
    with pytest.raises(card.InputError, match="how long"):
        card.learning_curve([_record(512.0, "IP")])


def test_the_learning_curve_keeps_each_encoders_points_apart() -> None:
    """Estimates of one model with I-frames at λ and at 2λ are two points, each labelled."""
    before = [_snapshot("aa", 300, 200.0, "a"), _snapshot("bb", 900, 100.0, "a")]
    after = [_snapshot("bb", 900, 80.0, "a") | {"intra_lambda_factor": 2.0}]
    points = card.learning_curve([*after, *before])
    assert [(p["model_id"], p["intra_lambda_factor"]) for p in points] == [
        ("aa", 1.0),
        ("bb", 1.0),
        ("bb", 2.0),
    ]
    assert [p["bd_rate_vs_x265"]["psnr-rgb"] for p in points] == [200.0, 100.0, 80.0]


def test_the_learning_curve_plot_is_an_image_of_its_points(tmp_path: Path) -> None:
    late = [_snapshot("bb", 900, 50.0, "a"), _snapshot("bb", 900, 40.0, "a")]
    late[1]["intra_lambda_factor"] = 2.0
    early = [_snapshot("aa", 300, 200.0, "a")]
    points = card.update_card({"model_id": "bb"}, late, curve=early)["learning_curve"]
    path = tmp_path / "curve" / "small.png"
    card.plot_learning_curve(points, path, "small")
    assert path.read_bytes().startswith(b"\x89PNG")
