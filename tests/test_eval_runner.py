"""End to end on two small real frames: x265/x264 through ffmpeg, canfvc through a stand-in CLI."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from canfvc_codec.defaults import INTRA_LAMBDA_FACTOR
from canfvc_codec.eval.config import load_config
from canfvc_codec.eval.refine_setting import RefineSetting
from canfvc_codec.eval.report import summary_markdown, write_report
from canfvc_codec.eval.runner import (
    CANFVC,
    CanfvcCommand,
    CanfvcUnavailable,
    EvalOptions,
    canfvc_threads,
    finalize_canfvc_status,
    run_evaluation,
)

WIDTH, HEIGHT = 208, 176  # small, yet above the 161 pixels five MS-SSIM scales need
FRAMES = 2
QPS = (22, 30, 37)

# A stand-in for `python -m canfvc_codec`: "encodes" by copying the Y4M (so the rate is known and
# the reconstruction exact), "decodes" by stripping the Y4M headers to raw 4:2:0, and describes a
# stream as an I-frame followed by P-frames; beside each stream it leaves the --refine and
# --intra-coder options it was given. With $FAKE_BARRIER = N, each encode waits until N
# encodes have started (or fails after a while): proof that N run at once. $FAKE_FAIL_ENCODE
# makes every encode fail.
FAKE_CLI = """#!{python}
import json
import os
import sys
import time
args = sys.argv[1:]
assert args[:2] == ["-m", "canfvc_codec"], args
command, rest = args[2], args[3:]
if "--help" in rest:
    sys.exit(0)
source = rest[0]
data = open(source, "rb").read()
output = rest[rest.index("-o") + 1] if "-o" in rest else None
if command == "info":
    sizes = [len(frame) for frame in data.split(b"FRAME\\n")[1:]]
    print(json.dumps({{"frames": [{{"type": "P" if i else "I", "bytes": size}}
                                  for i, size in enumerate(sizes)]}}))
elif command == "encode":
    if os.environ.get("FAKE_FAIL_ENCODE"):
        sys.exit("encode refused")
    barrier = int(os.environ.get("FAKE_BARRIER", "0"))
    if barrier:
        folder = os.path.dirname(output)
        open(output + ".started", "w").close()
        deadline = time.monotonic() + 60
        while sum(n.endswith(".started") for n in os.listdir(folder)) < barrier:
            if time.monotonic() > deadline:
                sys.exit("the other encodes never started")
            time.sleep(0.05)
    open(output, "wb").write(data)
    if "--refine" in rest:
        open(output + ".refine", "w").write(" ".join(rest[rest.index("--refine") :]))
    if "--intra-coder" in rest:
        open(output + ".intra", "w").write(rest[rest.index("--intra-coder") + 1])
elif command == "decode":
    header, _, body = data.partition(b"\\n")
    frames = body.split(b"FRAME\\n")[1:]
    open(output, "wb").write(b"".join(frames))
else:
    sys.exit(1)
"""

BROKEN_CLI = """#!/bin/sh
echo "No module named canfvc_codec.cli" >&2
exit 1
"""


def _script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def tiny_config(tmp_path, yuv_frames) -> Path:
    frames = yuv_frames(count=FRAMES, width=WIDTH, height=HEIGHT)
    raw = tmp_path / "tiny.yuv"
    raw.write_bytes(b"".join(p.tobytes() for frame in frames for p in frame))
    config = tmp_path / "tiny.json"
    config.write_text(
        json.dumps(
            {
                "name": "tiny",
                "gop": 32,
                "sequences": [
                    {
                        "name": "tiny",
                        "path": "tiny.yuv",
                        "size": f"{WIDTH}x{HEIGHT}",
                        "fps": 25,
                        "frames": FRAMES,
                    }
                ],
            }
        )
    )
    return config


def test_anchors_and_canfvc_end_to_end(tmp_path, tiny_config):
    fake = _script(tmp_path / "fake_python", FAKE_CLI.format(python=sys.executable))
    options = EvalOptions(lambdas=(256, 512, 1024), qps=QPS, anchors=("x265", "x264"), python=fake)
    work = tmp_path / "work"
    out = tmp_path / "out"
    results = run_evaluation(
        load_config(tiny_config), out, options, work_dir=work, log=lambda m: None
    )
    seq = results["sequences"]["tiny"]
    assert set(seq["codecs"]) == {"x265", "x264", CANFVC} and not seq["skipped"]

    x265 = seq["codecs"]["x265"]
    assert [p["value"] for p in x265] == list(QPS)
    for point in x265:
        stream = work / "tiny" / f"x265_qp{point['value']}.hevc"
        assert point["bpp"] == pytest.approx(stream.stat().st_size * 8 / (WIDTH * HEIGHT * FRAMES))
        assert len(point["frames"]) == FRAMES
        assert sum(f["bytes"] for f in point["frames"]) == stream.stat().st_size
        assert 0.5 < point["ms-ssim-rgb"] < 1.0 and 20 < point["psnr-rgb"] < 60
    # Coarser quantisation: fewer bits, lower quality.
    assert x265[0]["bpp"] > x265[1]["bpp"] > x265[2]["bpp"]
    assert x265[0]["psnr-yuv"] > x265[1]["psnr-yuv"] > x265[2]["psnr-yuv"]

    # The stand-in is lossless: capped PSNR, MS-SSIM 1, and the Y4M's size as the rate.
    for point in seq["codecs"][CANFVC]:
        assert point["psnr-rgb"] == 100.0 and point["ms-ssim-rgb"] == pytest.approx(1.0)
        y4m_bytes = (work / "tiny" / "reference.y4m").stat().st_size
        assert point["bytes"] == y4m_bytes
        assert [f["type"] for f in point["frames"]] == ["I", "P"]  # from canfvc info

    bd = results["bd_rate"]["psnr-yuv"]
    assert isinstance(bd["x264"]["tiny"], float) and isinstance(bd["x264"]["average"], float)
    assert bd[CANFVC]["tiny"].startswith("n/a")  # a flat 100 dB line shares no range with x265

    paths = write_report(results, out)
    saved = json.loads(paths["results"].read_text())
    assert saved["sequences"]["tiny"]["codecs"]["x265"][0]["bpp"] == x265[0]["bpp"]
    compressai = json.loads((out / "compressai" / "tiny" / "x265.json").read_text())
    assert compressai["name"] == "x265" and len(compressai["results"]["bpp"]) == len(QPS)
    rows = (out / "csv" / "tiny.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(QPS) + 3
    assert (out / "plots" / "tiny_psnr-rgb.png").stat().st_size > 0
    summary = paths["summary"].read_text()
    assert "| x264 | psnr-yuv |" in summary and "qp 22" in summary
    # canfvc's rows count the I-frames and weigh P-frames against them; the anchors' are blank.
    rows = {
        line.split(" | ")[1]: line.split(" | ") for line in summary.splitlines() if "| " in line
    }
    # Equal frames: a P-frame as dear as the I-frame, which takes half of the two frames' bits.
    assert rows["lambda 256"][7:10] == ["1", "50 %", "1.00"]
    assert rows["qp 22"][7:10] == ["", "", ""]


def test_jobs_code_rate_points_at_once_and_keep_their_order(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setenv("FAKE_BARRIER", "3")
    fake = _script(tmp_path / "fake_python", FAKE_CLI.format(python=sys.executable))
    options = EvalOptions(lambdas=(1024, 256, 512), anchors=(), python=fake, jobs=3)
    results = run_evaluation(
        load_config(tiny_config), tmp_path / "out", options, log=lambda m: None
    )
    points = results["sequences"]["tiny"]["codecs"][CANFVC]
    assert [p["value"] for p in points] == [1024, 256, 512]
    assert results["canfvc_jobs"]["jobs"] == 3
    assert "3 rate points at once" in summary_markdown(results)


@pytest.fixture
def evaluate_in_work(tmp_path, tiny_config):
    """``run_evaluation`` of λ 256 and 512 by the stand-in canfvc, always in ``tmp_path/work``."""
    fake = _script(tmp_path / "fake_python", FAKE_CLI.format(python=sys.executable))
    work = tmp_path / "work"
    config = load_config(tiny_config)

    def evaluate(**changes) -> dict:
        options = EvalOptions(lambdas=(256, 512), anchors=(), python=fake, **changes)
        return run_evaluation(config, tmp_path / "out", options, work_dir=work, log=lambda m: None)

    return evaluate


def test_resume_reuses_the_points_a_run_finished(tmp_path, evaluate_in_work, monkeypatch):
    evaluate, work = evaluate_in_work, tmp_path / "work"
    first = evaluate()["sequences"]["tiny"]["codecs"][CANFVC]
    monkeypatch.setenv("FAKE_FAIL_ENCODE", "1")  # from here on nothing can be coded again
    resumed = evaluate(resume=True)["sequences"]["tiny"]
    assert resumed["codecs"][CANFVC] == first
    # For other frames of the sequence, or without --resume, the points are coded again.
    assert (
        "encode refused"
        in evaluate(resume=True, max_frames=1)["sequences"]["tiny"]["skipped"][CANFVC]
    )
    assert "encode refused" in evaluate()["sequences"]["tiny"]["skipped"][CANFVC]
    assert not (work / "tiny" / "canfvc_lambda256.point.json").exists()  # dropped when recoded


@pytest.mark.parametrize(
    "field",
    [
        "intra_choice",  # saved before the choice existed: coded with "frame"
        "intra_lambda_factor",  # saved before the I-frames' λ existed: I-frames at λ
    ],
)
def test_points_saved_with_another_intra_choice_are_coded_again(
    tmp_path, evaluate_in_work, monkeypatch, field
):
    evaluate, work = evaluate_in_work, tmp_path / "work"
    evaluate()
    saved = work / "tiny" / "canfvc_lambda256.point.json"
    record = json.loads(saved.read_text())
    assert record["intra_choice"] == "run"
    assert record["intra_lambda_factor"] == INTRA_LAMBDA_FACTOR
    del record[field]
    saved.write_text(json.dumps(record))
    monkeypatch.setenv("FAKE_FAIL_ENCODE", "1")
    resumed = evaluate(resume=True)["sequences"]["tiny"]
    assert "encode refused" in resumed["skipped"][CANFVC]  # λ 256 not reused: coded, refused


def test_refined_points_are_coded_with_refine_and_kept_apart(
    tmp_path, evaluate_in_work, monkeypatch
):
    evaluate, work = evaluate_in_work, tmp_path / "work"
    default = evaluate()["canfvc"]
    assert "refine" not in default and default["intra_choice"] == "run"  # the encoder's default
    assert not list((work / "tiny").glob("*.refine"))
    refined = evaluate(refine=RefineSetting(4))
    assert refined["canfvc"]["refine"] == 4 and "refine_inter" not in refined["canfvc"]
    assert (work / "tiny" / "canfvc_lambda256_refine4.cvc.refine").read_text() == "--refine 4"
    assert "encoded with --refine 4" in summary_markdown(refined)
    intra_only = evaluate(refine=RefineSetting(12, 0))
    assert intra_only["canfvc"]["refine_inter"] == 0
    flags = (work / "tiny" / "canfvc_lambda256_refine12_refineinter0.cvc.refine").read_text()
    assert flags == "--refine 12 --refine-inter 0"
    assert "encoded with --refine 12 --refine-inter 0" in summary_markdown(intra_only)
    # The default's saved points are not refined ones: --resume codes them again.
    monkeypatch.setenv("FAKE_FAIL_ENCODE", "1")
    for other in (RefineSetting(2), RefineSetting(12, 4)):
        skipped = evaluate(resume=True, refine=other)["sequences"]["tiny"]["skipped"]
        assert "encode refused" in skipped[CANFVC]
    for kept in (RefineSetting(4), RefineSetting(4, 4), RefineSetting(12, 0)):
        assert evaluate(resume=True, refine=kept)["sequences"]["tiny"]["codecs"][CANFVC]


def test_hevc_intra_points_are_coded_with_the_intra_coder_and_kept_apart(
    tmp_path, evaluate_in_work, monkeypatch
):
    evaluate, work = evaluate_in_work, tmp_path / "work"
    default = evaluate()
    assert "intra_coder" not in default["canfvc"]  # records before the option read the same
    assert (work / "tiny" / "canfvc_lambda256.cvc.intra").read_text() == "anfic"
    hevc = evaluate(intra_coder="hevc")
    assert hevc["canfvc"]["intra_coder"] == "hevc"
    assert (work / "tiny" / "canfvc_lambda256_hevc.cvc.intra").read_text() == "hevc"
    saved = json.loads((work / "tiny" / "canfvc_lambda256_hevc.point.json").read_text())
    assert saved["intra_coder"] == "hevc"
    assert ", hevc I-frames" in summary_markdown(hevc)
    # Each intra coder's saved points are its own: --resume reuses them, never the other's.
    monkeypatch.setenv("FAKE_FAIL_ENCODE", "1")
    for intra_coder in ("anfic", "hevc"):
        resumed = evaluate(resume=True, intra_coder=intra_coder)["sequences"]["tiny"]
        assert len(resumed["codecs"][CANFVC]) == 2
    (work / "tiny" / "canfvc_lambda256_hevc.point.json").write_text(
        (work / "tiny" / "canfvc_lambda256.point.json").read_text()  # an ANFIC point
    )
    skipped = evaluate(resume=True, intra_coder="hevc")["sequences"]["tiny"]["skipped"]
    assert "encode refused" in skipped[CANFVC]


@pytest.mark.parametrize(
    ("setting", "flags", "stem", "record"),
    [
        (RefineSetting(), [], "", {}),
        (RefineSetting(4), ["--refine", "4"], "_refine4", {"refine": 4}),
        (RefineSetting(4, 4), ["--refine", "4"], "_refine4", {"refine": 4}),
        (
            RefineSetting(12, 0),
            ["--refine", "12", "--refine-inter", "0"],
            "_refine12_refineinter0",
            {"refine": 12, "refine_inter": 0},
        ),
        (RefineSetting(0, 2), ["--refine-inter", "2"], "_refineinter2", {"refine_inter": 2}),
    ],
)
def test_each_refinement_setting_has_one_spelling(setting, flags, stem, record):
    assert setting.flags() == flags and str(setting) == " ".join(flags)
    assert setting.stem() == stem and setting.record() == record
    assert RefineSetting.from_record({"status": "ok", **record}) == setting


@pytest.mark.parametrize(
    ("threads", "jobs", "cpu_count", "expected"),
    [(None, 1, 8, None), (None, 2, 8, 4), (None, 4, 2, 1), (3, 2, 8, 3), (None, 3, None, 1)],
)
def test_jobs_share_the_cores_unless_threads_are_given(threads, jobs, cpu_count, expected):
    assert canfvc_threads(EvalOptions(threads=threads, jobs=jobs), cpu_count) == expected


def test_canfvc_commands_carry_the_evaluations_options():
    command = CanfvcCommand("python", model="lite", device="cpu", threads=1)
    assert command._common() == ["--model", "lite", "--device", "cpu", "--threads", "1"]
    assert CanfvcCommand("python")._common() == []


def test_missing_canfvc_is_skipped_with_a_reason(tmp_path, tiny_config):
    broken = _script(tmp_path / "broken_python", BROKEN_CLI)
    with pytest.raises(CanfvcUnavailable, match="No module named"):
        CanfvcCommand(broken).check()
    options = EvalOptions(qps=QPS[:1], anchors=("x265",), python=broken)
    results = run_evaluation(
        load_config(tiny_config), tmp_path / "out", options, log=lambda m: None
    )
    assert results["canfvc"]["status"] == "skipped"
    seq = results["sequences"]["tiny"]
    assert list(seq["codecs"]) == ["x265"] and "No module named" in seq["skipped"][CANFVC]
    assert not any(p.name.startswith(".work-") for p in (tmp_path / "out").iterdir())
    assert os.path.isdir(tmp_path / "out")


def test_canfvc_without_results_anywhere_counts_as_skipped():
    results = {
        "canfvc": {"status": "ok"},
        "sequences": {"a": {"codecs": {"x265": []}, "skipped": {CANFVC: "model not found"}}},
    }
    finalize_canfvc_status(results)
    assert results["canfvc"] == {"status": "skipped", "reason": "model not found"}
    results["canfvc"] = {"status": "ok"}
    results["sequences"]["b"] = {"codecs": {CANFVC: []}, "skipped": {}}
    finalize_canfvc_status(results)
    assert results["canfvc"]["status"] == "ok"
