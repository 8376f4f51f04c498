"""Merging results.json files of several runs: union of points, provenance, recomputed BD-rates."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from canfvc_codec.errors import InputError
from canfvc_codec.eval.merge import main, merge_files, merge_results
from canfvc_codec.eval.metrics import QUALITY_KEYS

CPU = {"processor": "Test CPU", "cpu_count": 2, "platform": "Linux", "torch": "2", "cuda": None}
GPU = {"processor": "Test Xeon", "cpu_count": 16, "platform": "Linux", "torch": "2", "cuda": "H100"}
DB_PER_DOUBLING = 3.0  # quality linear in log-rate: BD-rate interpolation is then exact
CANFVC_RATE_SCALE = 2.0  # canfvc needs twice x265's bits for the same quality: BD-rate +100 %
STALE_SCALE = 1.3  # an earlier run's QP 37 point, off the curve: the BD-rate shows if it is kept
OK = {"status": "ok", "model_id": "abc123"}


def _psnr(bpp: float) -> float:
    return 40.0 + DB_PER_DOUBLING * math.log2(bpp / 0.1)


def _point(codec: str, param: str, value: float, bpp: float, psnr: float) -> dict:
    quality = {key: psnr for key in QUALITY_KEYS}
    quality["ms-ssim-rgb"] = 1.0 - 10 ** (-psnr / 20.0)  # rises with quality, stays below 1
    return {
        "codec": codec,
        "param": param,
        "value": value,
        "bytes": round(bpp * 1000),
        "bpp": bpp,
        **quality,
        "encode_s_per_frame": 0.1,
        "decode_s_per_frame": 0.1,
        "encode_peak_rss_mib": 50.0,
        "decode_peak_rss_mib": 40.0,
        "frames": [],
    }


def _x265(qp: int, bpp_scale: float = 1.0) -> dict:
    bpp = 0.1 * 2 ** ((27 - qp) / 5)  # QP 27 -> 0.1 bpp, each +5 QP halves the rate
    return _point("x265", "qp", qp, bpp * bpp_scale, _psnr(bpp))


def _canfvc(lmbda: float) -> dict:
    bpp = 0.1 * 2 ** (math.log2(lmbda / 1024))  # lambda 1024 reaches x265 QP 27's quality
    return _point("canfvc", "lambda", lmbda, bpp * CANFVC_RATE_SCALE, _psnr(bpp))


def _sequence(codecs: dict, skipped: dict | None = None, source: str = "clip.mp4") -> dict:
    return {
        "source": source,
        "start": 0,
        "frames": 8,
        "width": 208,
        "height": 176,
        "fps": "25",
        "gop": 32,
        "bit_depth": 8,
        "codecs": codecs,
        "skipped": skipped or {},
    }


def _run(sequences: dict, machine: dict, canfvc: dict, anchors: dict | None = None) -> dict:
    return {
        "version": 1,
        "config": "dev",
        "date": "2026-11-23T00:00:00+00:00",
        "machine": machine,
        "ffmpeg": "ffmpeg test" if anchors else None,
        "anchors": anchors or {},
        "canfvc": canfvc,
        "sequences": sequences,
    }


@pytest.fixture
def runs() -> list[dict]:
    anchors_low = _run(
        {
            "a": _sequence(
                {"x265": [_x265(q, 1.0 if q != 37 else STALE_SCALE) for q in (22, 27, 32, 37)]},
                skipped={"canfvc": "model not found"},
            ),
            "b": _sequence({"x265": [_x265(q) for q in (22, 27, 32, 37)]}),
        },
        CPU,
        {"status": "skipped", "reason": "model not found"},
        anchors={"x265": "x265 veryslow"},
    )
    # Re-runs QP 37 (its point must replace the first run's stale one) and adds coarser QPs.
    anchors_high = _run(
        {"a": _sequence({"x265": [_x265(q) for q in (37, 42, 47)]})},
        CPU,
        {"status": "not run"},
        anchors={"x265": "x265 veryslow"},
    )
    gpu = [
        _run({"a": _sequence({"canfvc": [_canfvc(lm)]}, source="a.y4m")}, GPU, dict(OK))
        for lm in (256, 512, 1024)
    ]
    gpu.append(_run({"b": _sequence({"canfvc": [_canfvc(2048)]}, source="b.y4m")}, GPU, dict(OK)))
    return [anchors_low, anchors_high, *gpu]


def test_union_dedupe_and_provenance(runs):
    merged = merge_results(runs, [f"run{i}" for i in range(len(runs))])
    a, b = merged["sequences"]["a"], merged["sequences"]["b"]
    assert [p["value"] for p in a["codecs"]["x265"]] == [22, 27, 32, 37, 42, 47]
    assert [p["value"] for p in a["codecs"]["canfvc"]] == [256, 512, 1024]
    assert [p["value"] for p in b["codecs"]["x265"]] == [22, 27, 32, 37]
    qp37 = next(p for p in a["codecs"]["x265"] if p["value"] == 37)
    assert qp37["bpp"] == pytest.approx(_x265(37)["bpp"])  # the later run's point
    assert a["skipped"] == {}  # canfvc was skipped in one run but coded in others
    assert a["source"] == "clip.mp4"  # the first run's record describes the sequence

    first, second = merged["runs"][0], merged["runs"][1]
    assert first["points"]["a"]["x265"]["values"] == [22, 27, 32]
    assert second["points"]["a"]["x265"]["values"] == [37, 42, 47]
    assert merged["runs"][2]["machine"]["cuda"] == "H100"
    assert merged["runs"][2]["sources"]["a"]["source"] == "a.y4m"
    assert merged["canfvc"] == {"status": "ok", "model_id": "abc123"}
    assert merged["anchors"] == {"x265": "x265 veryslow"}


def test_bd_rates_are_recomputed(runs):
    bd = merge_results(runs)["bd_rate"]
    for metric in ("psnr-yuv", "psnr-rgb"):
        row = bd[metric]["canfvc"]
        assert row["a"] == pytest.approx((CANFVC_RATE_SCALE - 1) * 100, abs=0.5)
        assert "usable points" in row["b"]  # one canfvc point on b: no curve
        assert row["average"].startswith("n/a")


def test_different_pictures_or_models_refuse(runs):
    runs[1]["sequences"]["a"]["frames"] = 16
    with pytest.raises(InputError, match="frames"):
        merge_results(runs)
    runs[1]["sequences"]["a"]["frames"] = 8
    runs[-1]["canfvc"]["model_id"] = "other"
    with pytest.raises(InputError, match="different canfvc models"):
        merge_results(runs)
    runs[-1]["canfvc"]["model_id"] = runs[-2]["canfvc"]["model_id"]
    runs[-1]["canfvc"]["refine"] = 12
    with pytest.raises(InputError, match="different steps"):
        merge_results(runs)
    for run in runs:
        run["canfvc"]["refine"] = 12
    assert merge_results(runs)["canfvc"]["refine"] == 12
    runs[-1]["canfvc"]["refine_inter"] = 0
    with pytest.raises(InputError, match=r"\(--refine 12, --refine 12 --refine-inter 0\)"):
        merge_results(runs)
    with pytest.raises(InputError, match="nothing to merge"):
        merge_results([])


def test_runs_of_different_intra_coders_refuse(runs):
    runs[-1]["canfvc"]["intra_coder"] = "hevc"
    with pytest.raises(InputError, match=r"different intra coders \(anfic, hevc\)"):
        merge_results(runs)
    for run in runs:
        run["canfvc"]["intra_coder"] = "hevc"
    assert merge_results(runs)["canfvc"]["intra_coder"] == "hevc"
    for run in runs:
        run["canfvc"]["intra_coder"] = "anfic"  # as the default: not recorded
    assert "intra_coder" not in merge_results(runs)["canfvc"]


def test_files_in_report_out(tmp_path, runs):
    paths = []
    for index, run in enumerate(runs):
        path = tmp_path / f"run{index}" / "results.json"
        path.parent.mkdir()
        path.write_text(json.dumps(run))
        paths.append(path)
    out = tmp_path / "merged"
    merge_files(paths, out)
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["sequences"]["a"]["codecs"]["x265"]) == 6
    summary = (out / "summary.md").read_text()
    assert "| canfvc | psnr-rgb | +100.0% |" in summary
    assert "## Where each point was measured" in summary
    assert "GPU: H100" in summary and "a (a.y4m from frame 0): canfvc lambda 256" in summary
    assert (out / "plots" / "a_psnr-rgb.png").stat().st_size > 0
    assert len((out / "csv" / "a.csv").read_text().splitlines()) == 1 + 6 + 3


def test_command_line_reports_bad_input(tmp_path):
    bad = tmp_path / "results.json"
    bad.write_text("{}")
    result = CliRunner().invoke(main, ["--out", str(tmp_path / "out"), str(bad)])
    assert result.exit_code == 1
    assert "not an evaluation results.json" in result.output
