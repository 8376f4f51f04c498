"""The forward-pass RD estimate agrees with real coding of the same frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from canfvc_codec.eval.config import load_config
from canfvc_codec.lab import estimate

WIDTH, HEIGHT = 192, 128
FRAMES = 3
LAMBDA = 1024.0
MODEL = "random-tiny"
# A frame record holds framing beside its entropy-coded sub-streams (docs/bitstream.md), and each
# sub-stream lengths, the range coder's final words and any escapes.
RECORD_OVERHEAD_BYTES = 16
SUBSTREAM_OVERHEAD_BYTES = 12
SUBSTREAMS = {"I": 2, "P": 4}


@pytest.fixture
def clip_config(tmp_path, yuv_frames) -> Path:
    frames = yuv_frames(start=40, count=FRAMES, width=WIDTH, height=HEIGHT)
    (tmp_path / "clip.yuv").write_bytes(b"".join(p.tobytes() for f in frames for p in f))
    config = tmp_path / "clip.json"
    sequence = {
        "name": "clip",
        "path": "clip.yuv",
        "size": f"{WIDTH}x{HEIGHT}",
        "fps": 25,
        "frames": FRAMES,
    }
    config.write_text(json.dumps({"name": "t", "gop": 2, "sequences": [sequence]}))
    return config


def test_estimate_matches_the_coded_stream(tmp_path, clip_config, capsys) -> None:
    from canfvc_codec.codec import encode_video
    from canfvc_codec.encoder.options import EncodeOptions
    from canfvc_codec.eval.metrics import frame_metrics
    from canfvc_codec.io import open_reader, open_writer

    spec = load_config(clip_config).sequences[0]
    record = estimate.run(
        clip_config, MODEL, (LAMBDA,), [], log=lambda m: None, adaptive_intra=False
    )
    (point,) = record["sequences"]["clip"]["codecs"][estimate.ESTIMATE]
    rows = point["frames"]
    assert [r["type"] for r in rows] == ["I", "P", "I"]  # GOP 2

    options = EncodeOptions(
        lmbda=LAMBDA, gop=spec.gop, adaptive_intra=False, model=MODEL, device="cpu"
    )
    recon_path = str(tmp_path / "recon.y4m")
    with open_reader(str(spec.path), size=spec.size, fps=spec.fps) as reader:
        info = reader.info
        with open(tmp_path / "clip.cvc", "wb") as out, open_writer(recon_path, info) as recon:
            coded = encode_video(reader, out, options, recon=recon, progress=False)
    with (
        open_reader(str(spec.path), size=spec.size, fps=spec.fps) as source,
        open_reader(recon_path) as decoded,
    ):
        real_quality = [frame_metrics(a, b, info) for a, b in zip(source, decoded, strict=True)]
    # The estimate runs the motion coders at the λ the encoder writes in the header.
    assert point["motion_lambda"] == coded["motion_lambda"] < LAMBDA
    pixels = WIDTH * HEIGHT
    for row, real, quality in zip(rows, coded["per_frame"], real_quality, strict=True):
        assert row["type"] == real["type"]
        real_bits = 8 * real["bytes"]
        estimated_bits = row["bpp"] * pixels
        overhead = RECORD_OVERHEAD_BYTES + SUBSTREAM_OVERHEAD_BYTES * SUBSTREAMS[row["type"]]
        assert real_bits - 8 * overhead <= estimated_bits * 1.05 + 64
        assert estimated_bits <= real_bits * 1.05 + 64
        for key in ("psnr-rgb", "psnr-yuv"):
            assert row[key] == pytest.approx(quality[key], abs=0.05), key
    assert point["bpp"] == pytest.approx(sum(r["bpp"] for r in rows) / FRAMES)
    assert point["bpp-I"] > 0 and point["bpp-P"] > 0
    assert record["bd_rate"]["psnr-rgb"][estimate.ESTIMATE]["clip"].startswith("n/a")


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_goes_to_stderr_unless_quiet(tmp_path, clip_config, capsys, quiet) -> None:
    out = tmp_path / "estimate.json"
    args = ["--config", str(clip_config), "--model", MODEL, "--lambdas", "512", "--out", str(out)]
    estimate.main(args + (["--quiet"] if quiet else []))
    captured = capsys.readouterr()
    assert f"{FRAMES}/{FRAMES}" not in captured.out  # stdout has the summary lines only
    assert (f"{FRAMES}/{FRAMES}" in captured.err) != quiet
    assert json.loads(out.read_text())["sequences"]["clip"]["frames"] == FRAMES


def test_estimate_chooses_frame_types_as_the_encoder_does(clip_config, monkeypatch):
    """Both sides under one cost that prefers fewer, then more bits: the estimate's frame types
    are the encoder's each time, and the two preferences choose differently at frame 1."""
    import io

    from canfvc_codec import codec
    from canfvc_codec.encoder import gop
    from canfvc_codec.io import open_reader

    spec = load_config(clip_config).sequences[0]
    options = codec.EncodeOptions(lmbda=LAMBDA, gop=spec.gop, model=MODEL, device="cpu")
    choices = set()
    for sign in (1.0, -1.0):

        def by_bits(bits, x, x_hat, lmbda, size, sign=sign) -> float:
            return sign * bits

        monkeypatch.setattr(gop, "frame_cost", by_bits)
        monkeypatch.setattr(estimate, "frame_cost", by_bits)
        record = estimate.run(clip_config, MODEL, (LAMBDA,), [], log=lambda m: None)
        (point,) = record["sequences"]["clip"]["codecs"][estimate.ESTIMATE]
        with open_reader(str(spec.path), size=spec.size, fps=spec.fps) as reader:
            coded = codec.encode_video(reader, io.BytesIO(), options, progress=False)
        estimated = [r["type"] for r in point["frames"]]
        assert estimated[1:] == [f["type"] for f in coded["per_frame"]][1:]
        choices.add(estimated[1])
    assert choices == {"I", "P"}


def test_anchor_points_are_cut_to_the_estimated_frames() -> None:
    rows = [
        {"frame": k, "bytes": 100 * (k + 1), "bpp": 0.1 * (k + 1)}
        | {key: 30.0 + k for key in estimate.QUALITY_KEYS}
        for k in range(4)
    ]
    point = {"codec": "x265", "value": 22, "bytes": 1000, "bpp": 0.25, "frames": rows}
    short = estimate.first_frames(point, 2)
    assert short["bytes"] == 300 and short["bpp"] == pytest.approx(0.15)
    assert short["psnr-rgb"] == pytest.approx(30.5) and len(short["frames"]) == 2
    assert short["value"] == 22 and point["bytes"] == 1000  # the original is left as it was
    assert estimate.first_frames(point, 4) is point


def test_anchor_points_keep_one_point_per_qp(tmp_path) -> None:
    def results(qps: list[int]) -> Path:
        path = tmp_path / f"anchors_{qps[0]}.json"
        points = [{"value": qp, "bpp": 1.0 / qp, "frames": []} for qp in qps]
        path.write_text(json.dumps({"sequences": {"clip": {"codecs": {"x265": points}}}}))
        return path

    found = estimate.anchor_points([results([22, 27, 37]), results([37, 42])])
    assert [p["value"] for p in found["clip"]] == [22, 27, 37, 42]


def _curve_point(codec: str, value: float, bpp: float, psnr: float) -> dict:
    metrics = {"psnr-rgb": psnr, "psnr-yuv": psnr + 4.0, "ms-ssim-rgb": 1.0 - 0.1 / psnr}
    return {"codec": codec, "value": value, "bpp": bpp, "frames": []} | metrics


def _estimate_record(
    tmp_path: Path, name: str, lambdas: list[float], frames: int = 4, **changes
) -> Path:
    """An estimate record of one sequence at ``lambdas``, x265 beside it, as run() writes one."""
    points = [_curve_point(estimate.ESTIMATE, v, v / 4096, 25 + v / 256) for v in lambdas]
    x265 = [
        _curve_point("x265", qp, 2.0 ** ((30 - qp) / 5), 45 - qp / 2) for qp in (22, 27, 32, 37)
    ]
    codecs = {estimate.ESTIMATE: points, "x265": x265}
    record = {
        "kind": "estimate",
        "config": "dev",
        "adaptive_intra": True,
        "motion_search": "dis",
        "motion_lambda_share": 0.125,
        "model_id": "00",
        "sequences": {"clip": {"start": 10, "frames": frames, "gop": 32, "codecs": codecs}},
    } | changes
    path = tmp_path / name
    path.write_text(json.dumps(record))
    return path


def test_estimates_of_single_lambdas_merge_into_one_curve(tmp_path) -> None:
    parts = [
        _estimate_record(tmp_path, "a.json", [2048.0, 256.0]),
        _estimate_record(tmp_path, "b.json", [512.0, 256.0]),
        _estimate_record(tmp_path, "c.json", [1024.0]),
    ]
    out = tmp_path / "merged.json"
    estimate.main(["--merge", *map(str, parts), "--out", str(out)])
    merged = json.loads(out.read_text())
    points = merged["sequences"]["clip"]["codecs"][estimate.ESTIMATE]
    assert [p["value"] for p in points] == [256.0, 512.0, 1024.0, 2048.0]
    assert len(merged["sequences"]["clip"]["codecs"]["x265"]) == 4
    assert merged["model_id"] == "00" and merged["sequences"]["clip"]["frames"] == 4
    # Four points make a curve: BD-rate is a number where a single λ gave none.
    bd = merged["bd_rate"]["psnr-rgb"][estimate.ESTIMATE]["clip"]
    assert isinstance(bd, float), bd


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model_id": "01"}, "different model_id"),
        ({"motion_lambda_share": 1.0}, "different motion_lambda_share"),
        # A record without the field was made with the only choice there was: "frame".
        ({"intra_choice": "run"}, "different intra_choice: 'frame' and 'run'"),
        ({"frames": 8}, "different frames of clip"),
    ],
)
def test_estimates_of_different_encoders_do_not_merge(tmp_path, capsys, changes, message) -> None:
    parts = [
        _estimate_record(tmp_path, "a.json", [256.0]),
        _estimate_record(tmp_path, "b.json", [512.0], **changes),
    ]
    out = tmp_path / "merged.json"
    with pytest.raises(SystemExit) as exit_info:
        estimate.main(["--merge", *map(str, parts), "--out", str(out)])
    assert message in str(exit_info.value.code)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["--config", "missing.json"], 1, "does not exist"),
        (["--config", "clip.json", "--model", "nosuch"], 1, "not found"),
        (["--config", "clip.json", "--lambdas", "x"], 2, "--lambdas"),
        (["--lambdas", "256"], 2, "give --config"),
        (["--config", "clip.json", "--merge", "clip.json"], 2, "not both"),
        (["--merge", "missing.json"], 1, "cannot read"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, clip_config, capsys, args, status, message):
    args = [str(tmp_path / a) if a.endswith(".json") else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        estimate.main([*args, "--out", str(tmp_path / "out.json")])
    code = exit_info.value.code
    assert (code if isinstance(code, int) else 1) == status
    error = (capsys.readouterr().err + (code if isinstance(code, str) else "")).strip()
    # One error line, last (argparse puts its usage above a usage error).
    assert message in error.splitlines()[-1] and "Traceback" not in error
    assert not (tmp_path / "out.json").exists()


def test_the_anchors_points_are_kept_beside_the_estimate(tmp_path, clip_config) -> None:
    """x265 points of the anchors file come back under the x265 label, cut to the estimate's
    frames, beside the estimate's own points."""
    from canfvc_codec.eval import anchors

    row = {"frame": 0, "type": "I", "bytes": 100, "bpp": 0.1, "psnr-rgb": 30.0}
    metrics = {
        key: 30.0 for key in ("psnr-rgb", "ms-ssim-rgb", "psnr-yuv", "psnr-y", "psnr-u", "psnr-v")
    }
    point = {
        "codec": anchors.REFERENCE_ANCHOR,
        "param": "qp",
        "value": 37,
        "bytes": 100 * FRAMES,
        "bpp": 0.1,
        "frames": [{**row, **metrics, "frame": k} for k in range(FRAMES)],
        **metrics,
    }
    anchor_file = tmp_path / "anchors.json"
    sequences = {"clip": {"codecs": {anchors.REFERENCE_ANCHOR: [point]}}}
    anchor_file.write_text(json.dumps({"sequences": sequences}))
    record = estimate.run(
        clip_config, MODEL, (LAMBDA,), [anchor_file], log=lambda m: None, adaptive_intra=False
    )
    codecs = record["sequences"]["clip"]["codecs"]
    assert codecs[anchors.REFERENCE_ANCHOR] == [point]
    assert [p["value"] for p in codecs[estimate.ESTIMATE]] == [LAMBDA]
